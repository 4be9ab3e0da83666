"""Train the iris classifier and write the model file and its metadata: python -m final_app.train

The seed is fixed, so re-running gives a model with the same predictions.
"""
import argparse
import json
import math
import pathlib

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from final_app.model import METADATA_FILE, MODEL_DIR, MODEL_FILE, installed_versions, sha256_of

SEED = 42
FEATURE_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASS_NAMES = ["setosa", "versicolor", "virginica"]
# The largest plausible value is twice the largest one in the data set: that leaves room for big
# flowers but rejects millimetres typed as centimetres (ten times too big).
UPPER_BOUND_FACTOR = 2


def load_data():
    """Return (X, y) as numpy arrays: numbers only, columns in FEATURE_NAMES order."""
    X, y = load_iris(return_X_y=True)
    return X, y


def make_model():
    """Return an untrained pipeline: scale the features, then a logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))


def feature_bounds(X):
    """Return the metadata's feature list: name, unit, min 0 and an upper bound per feature."""
    return [
        {"name": name, "unit": "cm", "min": 0, "max": math.ceil(UPPER_BOUND_FACTOR * column_max)}
        for name, column_max in zip(FEATURE_NAMES, X.max(axis=0).tolist())
    ]


def evaluate(X_train, X_test, y_train, y_test):
    """Fit a model on the training rows; return it with its hold-out and cross-validation metrics."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    cv_scores = cross_val_score(make_model(), X_train, y_train, cv=folds)
    model = make_model().fit(X_train, y_train)
    metrics = {
        "holdout_accuracy": round(float(model.score(X_test, y_test)), 4),
        "cv_accuracy_mean": round(float(cv_scores.mean()), 4),
        "cv_accuracy_std": round(float(cv_scores.std()), 4),
        "cv_folds": folds.get_n_splits(),
        "train_rows": len(X_train),
        "holdout_rows": len(X_test),
    }
    return model, metrics


def train(model_dir=None):
    """Train, then write the model file and its metadata into model_dir; return the metadata."""
    model_dir = pathlib.Path(model_dir or MODEL_DIR)
    model_dir.mkdir(parents=True, exist_ok=True)
    X, y = load_data()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=SEED)
    model, metrics = evaluate(X_train, X_test, y_train, y_test)
    model_path = model_dir / MODEL_FILE
    joblib.dump(model, model_path)
    sha256 = sha256_of(model_path.read_bytes())
    metadata = {
        "model_version": f"iris-logreg-{sha256[:12]}",
        "features": feature_bounds(X),
        "classes": CLASS_NAMES,
        "metrics": metrics,
        "sha256": sha256,
        "versions": installed_versions(),
    }
    text = json.dumps(metadata, indent=2) + "\n"
    (model_dir / METADATA_FILE).write_text(text, encoding="utf-8")
    return metadata


def main(argv=None):
    """Parse the command line, train, and print one line saying what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="where to write (default: final_app/model)")
    args = parser.parse_args(argv)
    metadata = train(args.model_dir)
    print(f"trained {metadata['model_version']}: hold-out accuracy "
          f"{metadata['metrics']['holdout_accuracy']}, written to {args.model_dir or MODEL_DIR}")


if __name__ == "__main__":
    main()
