"""Lesson 08: two models of the Palmer penguins, each trained from a pandas DataFrame and saved
with final_app's save_model, ready for final_app to serve with MODEL_DIR.

- penguins: which species a penguin is (a classifier), from its island, sex and four sizes. The
  table has missing values; a Pipeline with a ColumnTransformer fills them and one-hot encodes
  the text columns.
- penguin_mass: a penguin's body mass in grams (a regressor), from pandas category columns and
  sizes, with a model that takes missing values and categories as they are.

Run it from this folder to re-train both into models/ (the seed and the thread count are fixed:
the same models, byte for byte, each time and on any machine):

    python train_examples.py
"""
import pathlib
import sys

from palmerpenguins import load_penguins  # the data set ships with the package: no download
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits  # installed with scikit-learn

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository's top folder, where final_app is
from final_app.artifact import save_model  # noqa: E402

MODELS = HERE / "models"
SEED = 42
SIZES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
UNITS = {"bill_length_mm": "mm", "bill_depth_mm": "mm", "flipper_length_mm": "mm", "body_mass_g": "g"}


def penguin_species_model():
    """Return an untrained pipeline: fill and scale the numbers, fill and one-hot encode the text."""
    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    text = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    columns = ColumnTransformer([("numbers", numbers, SIZES + ["body_mass_g"]),
                                 ("text", text, ["island", "sex"])])
    return make_pipeline(columns, LogisticRegression(max_iter=1000, random_state=SEED))


def species_data():
    """Return (X_train, X_test, y_train, y_test): 3/4 of the penguins to train on, 1/4 held out."""
    penguins = load_penguins()
    X = penguins[["island", "sex", *SIZES, "body_mass_g"]]
    y = penguins["species"]
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=SEED)


def train_species(model_dir):
    """Train the species classifier on 3/4 of the penguins, save it into model_dir; return its metadata."""
    X_train, X_test, y_train, y_test = species_data()
    model = penguin_species_model().fit(X_train, y_train)
    return save_model(model, X_train, model_dir, name="penguins-logreg", title="Penguin species",
                      description="Where a penguin lives and how big it is: the model tells "
                                  "which of three species it most likely is.",
                      target="species", units=UNITS,
                      metrics={"holdout_accuracy": round(float(model.score(X_test, y_test)), 4),
                               "train_rows": len(X_train), "holdout_rows": len(X_test)})


def mass_data():
    """Return (X_train, X_test, y_train, y_test) for body mass: the text columns as pandas categories."""
    penguins = load_penguins().dropna(subset=["body_mass_g"])
    X = penguins[["species", "island", "sex", *SIZES]].astype(
        {"species": "category", "island": "category", "sex": "category"})
    y = penguins["body_mass_g"]
    return train_test_split(X, y, test_size=0.25, random_state=SEED)


def penguin_mass_model():
    """Return an untrained regressor that takes missing values and pandas categories as they are."""
    return HistGradientBoostingRegressor(categorical_features="from_dtype", max_iter=100, random_state=SEED)


def train_mass(model_dir):
    """Train the body-mass regressor on 3/4 of the penguins, save it into model_dir; return its metadata."""
    X_train, X_test, y_train, y_test = mass_data()
    # HistGradientBoosting trains on as many OpenMP threads as the machine has cores, and keeps that
    # number in the model: the same model trained on 2 cores and on 8 predicts the same values, but
    # its file, and so its model_version, differ. One thread gives the same file on every machine.
    with threadpool_limits(limits=1, user_api="openmp"):
        model = penguin_mass_model().fit(X_train, y_train)
    return save_model(model, X_train, model_dir, name="penguin-mass-hgb", title="Penguin body mass",
                      description="The species, home and size of a penguin: the model estimates "
                                  "its body mass in grams.",
                      target="body mass (g)", units={name: UNITS[name] for name in SIZES},
                      metrics={"holdout_r2": round(float(model.score(X_test, y_test)), 4),
                               "train_rows": len(X_train), "holdout_rows": len(X_test)})


def main(models=MODELS):
    """Train both models into models/penguins and models/penguin_mass; print a line for each."""
    for folder, train in (("penguins", train_species), ("penguin_mass", train_mass)):
        metadata = train(pathlib.Path(models) / folder)
        print(f"saved {metadata['model_version']} into {folder}/: {metadata['metrics']}")


if __name__ == "__main__":
    main()
