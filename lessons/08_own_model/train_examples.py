"""Lesson 08: three models, each trained from a pandas DataFrame and saved with final_app's
save_model, ready for final_app to serve with MODEL_DIR.

- penguins: which species a penguin is (a classifier), from its island, sex and four sizes. The
  table has missing values; a Pipeline with a ColumnTransformer fills them and one-hot encodes
  the text columns.
- penguin_mass: a penguin's body mass in grams (a regressor), from pandas category columns and
  sizes, with a model that takes missing values and categories as they are.
- flat_prices: the asking price of a flat (a regressor), from a made-up table of listings with
  a date, a neighbourhood among 150, the size, the number of rooms and the ad's free text. Its
  pipeline turns the date into numbers with date_parts, a function of model_code/listings.py at
  the top of the repository, where the app finds it when it loads the model.

Run it from this folder to re-train all three into models/ (the seeds and the thread counts are
fixed: the same models, byte for byte, each time; another CPU's maths library may still round
the last bit of a number differently, and so give another file):

    python train_examples.py
"""
import pathlib
import sys

import numpy as np
import pandas as pd
from palmerpenguins import load_penguins  # the data set ships with the package: no download
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits  # installed with scikit-learn

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the repository's top folder, where final_app is
from final_app.artifact import save_model  # noqa: E402
from model_code.listings import date_parts, words  # noqa: E402  (a module the app can import too)

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


# The made-up flat listings: word lists to build neighbourhood names and the ads' descriptions.
FIRST_WORDS = ["North", "South", "East", "West", "Old", "New", "Upper", "Lower", "Little", "Great",
               "Saint", "Kings", "Queens", "Market", "Mill"]
LAST_WORDS = ["Hill", "Park", "Green", "Bridge", "Gate", "Field", "Wood", "Harbour", "Cross", "Common"]
NEIGHBOURHOODS = [f"{first} {last}" for first in FIRST_WORDS for last in LAST_WORDS]  # 150 names
LOOKS = ["Bright", "Quiet", "Spacious", "Cosy", "Modern", "Charming", "Sunny", "Elegant", "Compact", "Airy"]
# What each phrase of an ad adds to the price, in euros.
CONDITIONS = {"renovated": 20000, "newly painted": 5000, "in need of work": -30000, "well kept": 0,
              "original": -10000, "fully refurbished": 30000}
EXTRAS = {"a balcony": 8000, "a garden view": 3000, "a lift": 6000, "high ceilings": 4000,
          "a new kitchen": 10000, "a fireplace": 2000, "parking": 12000, "a shared garden": 5000,
          "wooden floors": 3000, "a roof terrace": 15000}
PLACES = ["close to the station", "near the park", "by the river", "on a quiet street", "above a bakery",
          "next to the school", "in a listed building", "near shops and cafes", "with views over the city",
          "a short walk from the market"]
FIRST_DAY = pd.Timestamp("2021-01-01")
LISTING_DAYS = 4 * 365  # four years of listings


def listings_table(rows=2000, seed=SEED):
    """Return a made-up table of flats for sale, with their asking price in euros, from a fixed seed."""
    random = np.random.default_rng(seed)
    neighbourhood_premium = dict(zip(NEIGHBOURHOODS, random.normal(0, 30000, len(NEIGHBOURHOODS)).round(-3)))
    listed_on = FIRST_DAY + pd.to_timedelta(random.integers(0, LISTING_DAYS, rows), unit="D")
    neighbourhood = random.choice(NEIGHBOURHOODS, rows)
    rooms = random.integers(1, 6, rows)
    area_m2 = (rooms * 18 + random.normal(12, 6, rows)).round(1)
    condition = random.choice(list(CONDITIONS), rows)
    extras = [random.choice(list(EXTRAS), 2, replace=False) for _ in range(rows)]
    description = [f"{random.choice(LOOKS)} flat, {state}, with {first} and {second}, {random.choice(PLACES)}."
                   for state, (first, second) in zip(condition, extras)]
    price = (60000 + 3000 * area_m2 + 15000 * rooms
             + 8000 * (listed_on - FIRST_DAY).days.to_numpy() / 365  # prices rise over the years
             + np.array([neighbourhood_premium[name] for name in neighbourhood])
             + np.array([CONDITIONS[state] for state in condition])
             + np.array([EXTRAS[first] + EXTRAS[second] for first, second in extras])
             + random.normal(0, 10000, rows))
    return pd.DataFrame({"listed_on": listed_on, "neighbourhood": neighbourhood, "area_m2": area_m2,
                         "rooms": rooms, "description": description, "price": price.round(-3)})


def listings_data():
    """Return (X_train, X_test, y_train, y_test): 3/4 of the listings to train on, 1/4 held out."""
    listings = listings_table()
    X = listings.drop(columns="price")
    return train_test_split(X, listings["price"], test_size=0.25, random_state=SEED)


def flat_price_model():
    """Return an untrained pipeline: the date as numbers, the ad's words, the neighbourhood, the sizes.

    Two steps call functions of model_code/listings.py: the app imports that module again when it
    loads the model, so it lives at the top of the repository, not here in lessons/.
    """
    columns = ColumnTransformer([
        ("date", make_pipeline(FunctionTransformer(date_parts), StandardScaler()), ["listed_on"]),
        # analyzer=words: with its own word splitting, the vectorizer would keep in the model where
        # its stop-word list sat in memory, which differs in every process, and so would the file.
        ("words", TfidfVectorizer(analyzer=words, max_features=200), "description"),  # a column, not a list
        ("neighbourhood", OneHotEncoder(handle_unknown="ignore"), ["neighbourhood"]),
        ("sizes", StandardScaler(), ["area_m2", "rooms"]),
    ])
    return make_pipeline(columns, Ridge(alpha=1.0))


def train_flat_prices(model_dir):
    """Train the flat-price regressor on 3/4 of the listings, save it into model_dir; return its metadata."""
    X_train, X_test, y_train, y_test = listings_data()
    # One thread, as for the body mass: the same sums split over more threads can round
    # differently, and then the file differs.
    with threadpool_limits(limits=1):
        model = flat_price_model().fit(X_train, y_train)
    return save_model(model, X_train, model_dir, name="flat-prices-ridge", title="Flat prices",
                      description="When a flat was listed, where, how big, and the words of its ad: "
                                  "the model estimates its asking price. The listings are made up.",
                      target="price (EUR)", units={"area_m2": "m²"},
                      metrics={"holdout_r2": round(float(model.score(X_test, y_test)), 4),
                               "train_rows": len(X_train), "holdout_rows": len(X_test)})


def main(models=MODELS):
    """Train the three models into models/penguins, models/penguin_mass and models/flat_prices."""
    for folder, train in (("penguins", train_species), ("penguin_mass", train_mass),
                          ("flat_prices", train_flat_prices)):
        metadata = train(pathlib.Path(models) / folder)
        print(f"saved {metadata['model_version']} into {folder}/: {metadata['metrics']}")


if __name__ == "__main__":
    main()
