"""predict and predict_proba for the iris model, computed from its fitted numbers without re-checking the input.

For one row, scikit-learn's predict_proba takes about 0.17 ms, and only about 0.005 ms of that is
arithmetic: the rest re-checks the input (type, shape, finite values, feature names, fitted state)
in both steps of the pipeline. By the time final_app calls the model, its own validator has
already checked every row far more strictly (4 numbers, each within its feature's bounds).

So for exactly the model final_app trains, StandardScaler then a multinomial LogisticRegression,
this module does the same numpy operations scikit-learn does, in the same order, on the fitted
arrays. It is only used after it has given bit-for-bit the same probabilities as predict_proba on
the check rows; for any other model, or any difference, the app calls predict_proba as usual.
If you train another kind of model, that is what happens: correct, just without this shortcut.
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from final_app.validation import feature_bounds


def is_scaled_logistic_regression(model):
    """True for Pipeline([StandardScaler (centring and scaling), LogisticRegression over 3+ classes])."""
    if type(model) is not Pipeline or len(model.steps) != 2:
        return False
    scaler, classifier = model[0], model[-1]
    return (type(scaler) is StandardScaler and scaler.with_mean and scaler.with_std
            and type(classifier) is LogisticRegression and len(classifier.classes_) > 2
            and classifier.coef_.dtype == np.float64 and scaler.mean_.dtype == np.float64)


def scaled_logistic_regression(model):
    """Return a function of a float64 array X: (the index of each row's class, predict_proba(X))."""
    scaler, classifier = model[0], model[-1]
    mean, scale = scaler.mean_, scaler.scale_
    coef_t, intercept = classifier.coef_.T, classifier.intercept_

    def predict(X):
        scaled = X - mean  # StandardScaler.transform works on a copy: X itself is left alone
        scaled /= scale
        scores = scaled @ coef_t + intercept  # LogisticRegression.decision_function
        indices = scores.argmax(axis=1)  # LogisticRegression.predict, before the scores change
        scores -= scores.max(axis=1).reshape((-1, 1))  # sklearn.utils.extmath.softmax, in place
        np.exp(scores, out=scores)
        scores /= scores.sum(axis=1).reshape((-1, 1))
        return indices, scores

    return predict


def rows_within_bounds(features, count=64, seed=0):
    """Return count rows spread over each feature's allowed range, plus its two corners (float64)."""
    low, high = feature_bounds(features)
    spread = np.random.default_rng(seed).uniform(low, high, size=(count, len(features)))
    return np.vstack([low, high, spread])


def fast_predict(model, check_rows):
    """Return the faster (class indices, probabilities) for model if identical on check_rows, else None.

    check_rows is a float64 array of real inputs. They are compared one row at a time and all
    together, because numpy may multiply a single row and a batch in different ways.
    """
    if not is_scaled_logistic_regression(model):
        return None
    fast = scaled_logistic_regression(model)
    for X in [check_rows, *check_rows[:, np.newaxis, :]]:
        indices, probabilities = fast(X)
        if not (np.array_equal(model.classes_[indices], model.predict(X))
                and np.array_equal(probabilities, model.predict_proba(X))):
            return None
    return fast


def fast_predict_proba(model, check_rows):
    """Return fast_predict's probabilities alone (for comparing with predict_proba), or None."""
    fast = fast_predict(model, check_rows)
    return None if fast is None else (lambda X: fast(X)[1])
