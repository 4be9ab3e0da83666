"""Estimators of the tests' own that saved models use: importable from the repository's top folder
(as tests.model_parts), as save_model requires of any code a model needs.
"""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class RefusesMissingLater(BaseEstimator, TransformerMixin):
    """Passes rows through; after fitting, refuses a row with a missing value in its first column."""

    def fit(self, X, y=None):
        return self

    def fit_transform(self, X, y=None, **fit_params):
        return np.nan_to_num(np.asarray(X, dtype=float))

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        if np.isnan(X[:, 0]).any():
            raise ValueError("a missing value in the first column")
        return np.nan_to_num(X)


class DateParts(BaseEstimator, TransformerMixin):
    """Turns each column of dates (or date-times) into its year and month."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.column_stack([part for name in X.columns for part in (X[name].dt.year, X[name].dt.month)])
