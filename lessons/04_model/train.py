"""Lesson 04: train the iris model, check how good it is, and save it with its metadata.

Run it from this folder to re-train and rewrite model.joblib and model.json:

    python train.py
"""
import hashlib
import json
import os
import platform
from pathlib import Path

import joblib
import numpy
import scipy
import sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
# The order of the columns the model is trained on. Every row sent to it must use this order.
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# One fixed seed for every random choice, so each run gives the same split and the same model.
SEED = 42


def load_data():
    """Return the iris measurements X (150 rows, 4 columns in cm) and species names y."""
    iris = load_iris()
    species = iris.target_names[iris.target]  # 0, 1, 2 -> "setosa", "versicolor", "virginica"
    return iris.data, species


def split(X, y):
    """Keep a quarter of the rows aside for testing, with each species in the same share."""
    return train_test_split(X, y, test_size=0.25, random_state=SEED, stratify=y)


def build_pipeline():
    """Return an untrained model: scale each column, then a logistic regression."""
    return Pipeline([
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(max_iter=1000)),
    ])


def train(X_train, y_train):
    """Fit a new pipeline on the training rows and return it."""
    return build_pipeline().fit(X_train, y_train)


def evaluate(model, X, y, X_test, y_test):
    """Return the accuracy on the held-out rows and a 5-fold cross-validation on all rows."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    scores = cross_val_score(build_pipeline(), X, y, cv=folds)
    return {
        "test_accuracy": round(float(accuracy_score(y_test, model.predict(X_test))), 4),
        "cv_accuracy_mean": round(float(scores.mean()), 4),
        "cv_accuracy_std": round(float(scores.std()), 4),
    }


def plot_confusion_matrix(model, X_test, y_test):
    """Draw which species the model predicts for each true species of the test rows."""
    display = ConfusionMatrixDisplay.from_estimator(model, X_test, y_test, colorbar=False)
    display.ax_.set_title("Held-out rows: true species vs predicted species")
    return display.figure_


def file_sha256(path):
    """Return the sha256 of a file's bytes as 64 hex characters: its fingerprint."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def library_versions():
    """Return the versions of Python and of the libraries the saved model depends on."""
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


def describe(model, metrics, sha256):
    """Return the metadata saved next to the model: what it expects, what it answers, how good it is."""
    return {
        "model_version": "1",
        "features": [{"name": name, "unit": "cm"} for name in FEATURES],
        "classes": [str(name) for name in model.classes_],
        "metrics": metrics,
        "sha256": sha256,
        "versions": library_versions(),
    }


def save(model, metrics, folder=HERE):
    """Write model.joblib and model.json into folder and return the metadata."""
    folder = Path(folder)
    joblib.dump(model, folder / "model.joblib.tmp")
    metadata = describe(model, metrics, file_sha256(folder / "model.joblib.tmp"))
    (folder / "model.json.tmp").write_text(json.dumps(metadata, indent=2) + "\n")
    # Write under temporary names, then rename: an app starting meanwhile never reads half a file.
    os.replace(folder / "model.joblib.tmp", folder / "model.joblib")
    os.replace(folder / "model.json.tmp", folder / "model.json")
    return metadata


def main(folder=HERE):
    """Train, evaluate and save the model; return its metadata."""
    X, y = load_data()
    X_train, X_test, y_train, y_test = split(X, y)
    model = train(X_train, y_train)
    metrics = evaluate(model, X, y, X_test, y_test)
    return save(model, metrics, folder)


if __name__ == "__main__":
    metadata = main()
    print(f"saved model.joblib (sha256 {metadata['sha256']}) and model.json: {metadata['metrics']}")
