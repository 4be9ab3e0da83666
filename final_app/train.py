"""Train the iris classifier and save it with its metadata (final_app.artifact): python -m final_app.train

The seed is fixed, so re-running gives a model with the same predictions.
"""
import argparse
import math

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from final_app.artifact import MODEL_DIR, save_model

SEED = 42
FEATURE_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# The largest plausible value is twice the largest one in the data set: that leaves room for big
# flowers but rejects millimetres typed as centimetres (ten times too big).
UPPER_BOUND_FACTOR = 2


def load_data():
    """Return (X, y) as numpy arrays: X numbers in FEATURE_NAMES order, y the species' names."""
    iris = load_iris()
    return iris.data, iris.target_names[iris.target]


def make_model():
    """Return an untrained pipeline: scale the features, then a logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))


def feature_bounds(X):
    """Return {feature name: (0, an upper bound)} for save_model's bounds=."""
    return {name: (0, math.ceil(UPPER_BOUND_FACTOR * column_max))
            for name, column_max in zip(FEATURE_NAMES, X.max(axis=0).tolist())}


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
    """Train, then save the model and its metadata into model_dir; return the metadata."""
    X, y = load_data()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=SEED)
    model, metrics = evaluate(X_train, X_test, y_train, y_test)
    return save_model(
        model, X, model_dir or MODEL_DIR, feature_names=FEATURE_NAMES, name="iris-logreg",
        title="Iris species classifier",
        description="Measure an iris flower, enter the four sizes in centimetres, and the model "
                    "predicts its species.",
        target="species", metrics=metrics, bounds=feature_bounds(X),
        units=dict.fromkeys(FEATURE_NAMES, "cm"),
        # The iris data is public: its first flower makes a familiar example (by default save_model
        # makes one up from the medians, so that no real row of your data is published).
        example=[float(value) for value in X[0]])


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
