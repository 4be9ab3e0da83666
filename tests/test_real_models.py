"""Real models, saved with final_app.artifact.save_model and served as on a dyno: dates, free text,
a category of 150 values, the tutorial's breast-cancer model, and what save_model must refuse.

Each saved model is built once (module-scoped fixtures) and served at most once by the Procfile's
own command with MODEL_DIR set and the environment a classic Heroku dyno has (tools/dyno.py).
Answers are compared with the model's own, computed here by the model load_model() reads back:
labels identical, numbers within a relative 1e-9 (1e-12 near zero), the tolerance save_model states.
The fuzzing runs in-process with the Flask test client: same code, no server, much faster.
"""
import collections
import contextlib
import datetime

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from conftest import ROOT, fuzz_settings
from final_app.app import create_app
from final_app.artifact import MODEL_FILE, load_model, save_model
from lesson_helpers import running
from model_code.listings import date_parts
# The Procfile's web command, and a classic web dyno's environment (tools/dyno.py) with this virtualenv's
# programs first on PATH, as test_deploy.py runs it (test_artifact.py's procfile_command is the same
# command, but importing that module loads every example model: about 1.7 s of CPU more).
from test_deploy import ENV as DYNO_ENV, web_command

SEED = 0
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12
MAX_MESSAGE = 300
WORDS = ("sunny quiet balcony garden renovated noisy small cosy spacious view bright dark modern old "
         "charming central parking lift terrace cellar attic kitchen bathroom shower bath fireplace "
         "wooden tiled new roof windows heating").split()


# --- the data: seeded, synthetic, offline -------------------------------------------------------

def listings():
    """Flat prices: the day a flat was listed (a date) and its area, with a weekly and a yearly pattern."""
    rng = np.random.default_rng(SEED)
    size = 300
    listed_on = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, size), unit="D")
    frame = pd.DataFrame({"listed_on": listed_on, "area": rng.uniform(20, 200, size).round(1)})
    price = (3000 * frame["area"] + 8000 * frame["listed_on"].dt.day_of_week + 2000 * frame["listed_on"].dt.month
             + rng.normal(0, 5000, size))
    return frame, price


def listings_pipeline(helper=date_parts):
    """Year, month and weekday of the date (through helper), the area as it is, then a ridge regression."""
    columns = ColumnTransformer([("dates", FunctionTransformer(helper), ["listed_on"]),
                                 ("area", "passthrough", ["area"])])
    return make_pipeline(columns, Ridge(alpha=1.0))


def homes():
    """Free-text descriptions and a neighbourhood out of 150 (each seen 4 times); "cheap" or "pricey"."""
    rng = np.random.default_rng(SEED)
    size = 600
    descriptions = [" ".join(rng.choice(WORDS, rng.integers(6, 13))) for _ in range(size)]
    places = rng.permutation(np.arange(size) % 150)
    frame = pd.DataFrame({"description": descriptions,
                          "neighbourhood": [f"district-{place:03d}" for place in places]})
    good = frame["description"].str.count("spacious|view|renovated|terrace") + places % 3 + rng.normal(0, 1, size)
    return frame, np.where(good > 2.5, "pricey", "cheap")


def homes_pipeline():
    """Tf-idf of the description, one-hot of the neighbourhood (unknown ones ignored), a logistic regression."""
    columns = ColumnTransformer([("words", TfidfVectorizer(), "description"),
                                 ("place", OneHotEncoder(handle_unknown="ignore"), ["neighbourhood"])])
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


def trips():
    """Train fares: a departure in Paris time (tz-aware), the booking date, a naive return time, a distance."""
    rng = np.random.default_rng(SEED)
    size = 300
    departure = pd.Timestamp("2023-01-01", tz="Europe/Paris") + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, size),
                                                                                 unit="min")
    frame = pd.DataFrame({
        "departure": departure,
        "booked_on": pd.Timestamp("2022-12-01") + pd.to_timedelta(rng.integers(0, 380, size), unit="D"),
        "returned_at": pd.Timestamp("2023-01-02 08:00") + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, size),
                                                                          unit="min"),
        "distance": rng.uniform(10, 900, size).round(1),
    })
    fare = 0.1 * frame["distance"] + 9 * frame["departure"].dt.day_of_week + rng.normal(0, 3, size)
    return frame, fare


def trips_pipeline():
    """Year, month and weekday of each date and time (in the column's own timezone), the distance, a ridge."""
    columns = ColumnTransformer([("times", FunctionTransformer(date_parts), ["departure", "booked_on", "returned_at"]),
                                 ("distance", "passthrough", ["distance"])])
    return make_pipeline(columns, Ridge(alpha=1.0))


def mixed():
    """A little of everything, for the bounds= table: a date, a number, a boolean, free text, a category."""
    rng = np.random.default_rng(SEED)
    size = 200
    frame = pd.DataFrame({
        "listed_on": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, size), unit="D"),
        "area": rng.uniform(20, 200, size).round(1),
        "garden": rng.choice([True, False], size),
        "note": [" ".join(rng.choice(WORDS, 8)) for _ in range(size)],
        "district": rng.choice(["north", "south", "east", "west"], size),
    })
    price = 3000 * frame["area"] + 20000 * frame["garden"] + rng.normal(0, 5000, size)
    columns = ColumnTransformer([("dates", FunctionTransformer(date_parts), ["listed_on"]),
                                 ("note", TfidfVectorizer(), "note"),
                                 ("district", OneHotEncoder(handle_unknown="ignore"), ["district"]),
                                 ("rest", "passthrough", ["area", "garden"])])
    return make_pipeline(columns, Ridge(alpha=1.0)).fit(frame, price), frame


def breast_cancer_split():
    """The classic tutorial: the breast-cancer DataFrame, split by train_test_split with a fixed seed."""
    data = load_breast_cancer(as_frame=True)
    return train_test_split(data.data, data.target, random_state=SEED)


def weekday_and_month(frame):
    """A helper written in the test module, as a learner writes one in a notebook cell."""
    return date_parts(frame)


# --- saving, serving, and the model's own answers ------------------------------------------------

class Saved:
    """A model saved with save_model: its folder, the training X, the metadata, the model read back."""

    def __init__(self, folder, X, metadata):
        self.folder = folder
        self.X = X
        self.metadata = metadata
        self.model = load_model(folder)  # the model the app serves, read back through its checks
        self.names = [feature["name"] for feature in metadata["features"]]
        self.features = {feature["name"]: feature for feature in metadata["features"]}
        self.client = create_app({"MODEL_DIR": str(folder)}).test_client()

    def frame(self, rows):
        """Return rows (lists of JSON values, dates as ISO text) as a DataFrame with the training dtypes."""
        return pd.DataFrame({name: column_like(self.X[name], [row[index] for row in rows])
                             for index, name in enumerate(self.X.columns)})

    def own_answers(self, rows):
        """Return what the model itself says for rows: (labels, probabilities) or (values, None)."""
        X = self.frame(rows) if isinstance(self.X, pd.DataFrame) else np.array(rows, dtype=float)
        if self.metadata["task"] == "regression":
            return self.model.predict(X), None
        return self.model.predict(X), self.model.predict_proba(X)


def column_like(training, values):
    """One column of values with the training column's dtype (its unit and timezone for dates and times)."""
    if training.dtype.kind == "M":
        zone = training.dt.tz
        stamps = [pd.Timestamp(value) for value in values]
        if zone is not None:
            stamps = [stamp.tz_convert(zone) for stamp in stamps]  # the same instant, in the column's zone
        return pd.Series(stamps, dtype=object).astype(training.dtype)
    return pd.Series(values, dtype=training.dtype)


def assert_the_models_own_answers(saved, response, rows):
    """The response is a 200 whose predictions are the model's own: labels equal, numbers within tolerance."""
    assert response.status_code == 200, response.text
    predictions = response_json(response)["predictions"]
    assert len(predictions) == len(rows)
    answers, probabilities = saved.own_answers(rows)
    if saved.metadata["task"] == "regression":
        np.testing.assert_allclose([p["value"] for p in predictions], answers,
                                   rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)
        return
    assert [p["label"] for p in predictions] == answers.tolist()
    np.testing.assert_allclose([list(p["probabilities"].values()) for p in predictions], probabilities,
                               rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)


def response_json(response):
    """The JSON body of a requests or a Flask test-client response."""
    return response.json() if hasattr(response, "ok") else response.get_json()


def assert_refused_naming(response, field):
    """The response is a 400 with a JSON message of at most 300 characters that names instances[0].field."""
    assert response.status_code == 400, (field, response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    message = response_json(response)["error"]["message"]
    assert len(message) <= MAX_MESSAGE, (len(message), message)
    assert message.startswith(f"instances[0].{field} "), message
    return message


def row_with(saved, field, value):
    """The metadata's example row as an object, with one field changed."""
    return dict(zip(saved.names, saved.metadata["example"]), **{field: value})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: Saved} for the four models save_model accepts, each fitted and saved once."""
    found = {}
    X, y = listings()
    # bounds= takes dates as date objects or as ISO text
    bounds = {"listed_on": (datetime.date(2020, 1, 1), "2026-12-31")}
    folder = tmp_path_factory.mktemp("listings") / "model"
    found["listings"] = Saved(folder, X, save_model(listings_pipeline().fit(X, y), X, folder, name="listings",
                                                    target="price", bounds=bounds))
    X, y = homes()
    folder = tmp_path_factory.mktemp("homes") / "model"
    found["homes"] = Saved(folder, X, save_model(homes_pipeline().fit(X, y), X, folder, name="homes"))
    X_train, _X_test, y_train, _y_test = breast_cancer_split()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    folder = tmp_path_factory.mktemp("cancer") / "model"
    found["cancer"] = Saved(folder, X_train, save_model(model, X_train, folder, name="breast-cancer"))
    X, y = trips()
    folder = tmp_path_factory.mktemp("trips") / "model"
    found["trips"] = Saved(folder, X, save_model(trips_pipeline().fit(X, y), X, folder, name="trips", target="fare"))
    return found


@pytest.fixture(scope="module")
def served(saved):
    """url_of(name): the base URL of the Procfile's command serving that model, started on first use.

    One server per model for the whole module, each with MODEL_DIR and a classic dyno's environment
    (WEB_CONCURRENCY, GUNICORN_CMD_ARGS, FORWARDED_ALLOW_IPS, DYNO), on a free loopback port; all
    of them are stopped when the module ends, whatever happened.
    """
    urls = {}
    with contextlib.ExitStack() as servers:
        def url_of(name):
            if name not in urls:
                env = dict(DYNO_ENV, MODEL_DIR=str(saved[name].folder))
                urls[name], _process = servers.enter_context(
                    running(web_command(), cwd=ROOT, env=env, ready_path="/health"))
            return urls[name]

        yield url_of


def post(url, rows):
    """POST rows to url's /predict."""
    return requests.post(f"{url}/predict", json={"instances": rows}, timeout=30)


# --- 1. what save_model writes --------------------------------------------------------------------

def test_a_date_column_is_a_date_with_the_bounds_given_as_date_objects_or_text(saved):
    listing = saved["listings"]
    listed_on, area = listing.metadata["features"]
    assert listed_on == {**listed_on, "name": "listed_on", "type": "date", "min": "2020-01-01",
                         "max": "2026-12-31", "timezone": None, "nullable": False}
    assert area["type"] == "number"
    assert listing.metadata["modules"] == ["model_code.listings"]  # the helper's module, found and checked


def test_dates_and_times_ranges_are_the_training_range_widened_by_its_width(saved):
    trip = saved["trips"]
    features, X = trip.features, trip.X
    departure, booked_on, returned_at = features["departure"], features["booked_on"], features["returned_at"]
    assert (departure["type"], departure["timezone"]) == ("datetime", "Europe/Paris")
    assert (booked_on["type"], booked_on["timezone"]) == ("date", None)
    assert (returned_at["type"], returned_at["timezone"]) == ("datetime", None)
    # a date: exactly YYYY-MM-DD, the training range widened by its width on each side
    low, high = X["booked_on"].min(), X["booked_on"].max()
    assert booked_on["min"] == (low - (high - low)).strftime("%Y-%m-%d")
    assert booked_on["max"] == (high + (high - low)).strftime("%Y-%m-%d")
    # a date-time: ISO text, with an offset only for the tz-aware column; out to whole days at most
    for name, feature in (("departure", departure), ("returned_at", returned_at)):
        low, high = X[name].min(), X[name].max()
        first, last = pd.Timestamp(feature["min"]), pd.Timestamp(feature["max"])
        assert (first.tzinfo is not None) is (name == "departure"), feature
        assert low - (high - low) - pd.Timedelta(days=1) <= first <= low - (high - low), (name, feature)
        assert high + (high - low) <= last <= high + (high - low) + pd.Timedelta(days=1), (name, feature)


def test_free_text_has_a_length_and_a_category_keeps_all_150_values(saved):
    home = saved["homes"]
    description, neighbourhood = home.metadata["features"]
    longest = home.X["description"].str.len().max()
    assert description["type"] == "text" and description["max_length"] == max(100, 2 * longest)
    assert neighbourhood["type"] == "category"
    assert neighbourhood["values"] == sorted(home.X["neighbourhood"].unique()) and len(neighbourhood["values"]) == 150
    assert home.metadata["classes"] == ["cheap", "pricey"] and home.metadata["probabilities"] is True


def test_the_tutorial_breast_cancer_model_is_accepted_within_the_stated_tolerance(saved):
    metadata = saved["cancer"].metadata
    assert metadata["task"] == "classification" and metadata["classes"] == [0, 1]
    assert metadata["input"] == "dataframe" and len(metadata["features"]) == 30
    checked = metadata["checked"]
    assert (checked["relative_tolerance"], checked["absolute_tolerance"]) == (RELATIVE_TOLERANCE, ABSOLUTE_TOLERANCE)
    assert checked["rows"] > 0 and checked["largest_difference"] <= ABSOLUTE_TOLERANCE


@pytest.mark.parametrize("name", ["listings", "homes", "cancer", "trips"])
def test_the_example_row_is_made_up_not_a_training_row(saved, name):
    model = saved[name]
    example = model.frame([model.metadata["example"]]).astype(object).iloc[0]
    matches = (model.X.astype(object) == example).all(axis=1)
    assert not matches.any(), model.metadata["example"]
    response = model.client.post("/predict", json={"instances": [model.metadata["example"]]})
    assert_the_models_own_answers(model, response, [model.metadata["example"]])


def test_a_given_example_row_is_the_one_shown(tmp_path):
    X_train, _X_test, y_train, _y_test = breast_cancer_split()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    first = X_train.iloc[0].tolist()
    metadata = save_model(model, X_train, tmp_path, example=first)
    assert metadata["example"] == first


# --- 1d, 1e. what save_model refuses ---------------------------------------------------------------

def notebook_helper(frame):
    """A helper that claims to live in __main__, as one written in a notebook cell does."""
    return date_parts(frame)


notebook_helper.__module__ = "__main__"


@pytest.mark.parametrize("helper", [weekday_and_month, notebook_helper], ids=["in-the-test-module", "in-__main__"])
def test_a_helper_a_fresh_python_cannot_import_is_refused(tmp_path, monkeypatch, helper):
    # In __main__ (a notebook, or `python train.py`), or in a module only this process can import:
    # test_real_models is importable here because pytest put tests/ on sys.path; a fresh Python
    # started at the repository's top folder (gunicorn) has no tests/ on its path.
    monkeypatch.setattr(__import__("__main__"), "notebook_helper", notebook_helper, raising=False)
    X, y = listings()
    model = listings_pipeline(helper).fit(X, y)
    with pytest.raises(ValueError) as refused:
        save_model(model, X, tmp_path / "model")
    message = str(refused.value)
    assert helper.__name__ in message, message
    assert "module file" in message and "repository" in message and "fit" in message, message
    assert not (tmp_path / "model" / MODEL_FILE).exists()


@pytest.fixture(scope="module")
def mixed_model():
    """(model, X) with a date, a number, a boolean, free text and a category."""
    return mixed()


@pytest.mark.parametrize("column, bounds", [
    ("area", (300.0, 20.0)),                                   # min above max
    ("listed_on", ("2024-06-01", "2023-01-01")),               # min above max, dates as text
    ("listed_on", (datetime.date(2024, 6, 1), datetime.date(2023, 1, 1))),  # ... as date objects
    ("area", (1000.0, 2000.0)),                                # excludes the example (and every row)
    ("area", (20.0, 60.0)),                                    # excludes the example, not every row
    ("listed_on", ("2022-01-01", "2022-03-31")),               # excludes the example date
    ("garden", (0, 1)),                                        # a boolean has no range
    ("note", (0, 10)),                                         # nor has free text
    ("district", ("east", "west")),                            # nor has a category
], ids=["number-min-above-max", "date-text-min-above-max", "date-objects-min-above-max",
        "number-excludes-everything", "number-excludes-the-example", "date-excludes-the-example",
        "boolean", "text", "category"])
def test_bounds_that_make_no_sense_are_refused_naming_the_column(tmp_path, mixed_model, column, bounds):
    model, X = mixed_model
    with pytest.raises(ValueError) as refused:
        save_model(model, X, tmp_path, bounds={column: bounds})
    message = str(refused.value)
    assert f"'{column}'" in message or f".{column} " in message, message  # 'area', or instances[0].area
    assert not (tmp_path / MODEL_FILE).exists()


@pytest.mark.parametrize("make_column", [
    lambda size: [[1, 2]] * size,                   # lists
    lambda size: [{"a": 1}] * size,                 # dicts
    lambda size: [b"\x89PNG\r\n"] * size,           # bytes (an image)
], ids=["lists", "dicts", "bytes"])
def test_a_column_the_schema_cannot_express_is_refused_naming_it(tmp_path, make_column):
    X = pd.DataFrame({"area": np.arange(20.0), "photo": make_column(20)})
    model = make_pipeline(ColumnTransformer([("area", "passthrough", ["area"])]), Ridge()).fit(X, np.arange(20.0))
    with pytest.raises(ValueError, match="photo"):
        save_model(model, X, tmp_path)
    assert not (tmp_path / MODEL_FILE).exists()


# --- 2. served by the Procfile's command, as on a dyno --------------------------------------------

NEW_LISTINGS = [["2024-02-29", 75.5], ["2025-07-14", 140.0], ["2021-03-01", 33.3], ["2026-12-31", 199.9],
                ["2020-01-01", 20.0]]
NEW_HOMES = [["a bright loft with a view of the river", "district-007"],
             ["small but renovated, near the station", "district-149"],
             ["café, crèche et métro à deux pas 🚇", "district-000"],
             ["spacious spacious spacious terrace view", "district-074"],
             ["zzzz unknown words only", "district-120"]]
NEW_TRIPS = [  # departure with an offset (Paris, UTC as Z, New York), a booking date, a naive return, a distance
    ["2024-05-05T23:30:00Z", "2024-04-01", "2024-05-06T08:15:00", 350.0],   # Sunday in UTC, Monday in Paris
    ["2024-05-06T01:30:00+02:00", "2024-04-01", "2024-05-06T08:15:00", 350.0],  # the same instant
    ["2024-03-31T01:59:00+01:00", "2023-12-25", "2024-03-31T03:00:00", 12.5],    # just before Paris's DST change
    ["2022-07-01T18:00:00-04:00", "2022-06-30", "2022-07-02T09:00:00", 880.0],
]


def test_new_dates_get_the_models_own_answers_over_http(saved, served):
    listing = saved["listings"]
    assert not listing.X["listed_on"].isin(pd.to_datetime([row[0] for row in NEW_LISTINGS])).any()
    url = served("listings")
    assert_the_models_own_answers(listing, post(url, NEW_LISTINGS), NEW_LISTINGS)
    as_objects = [dict(zip(listing.names, row)) for row in NEW_LISTINGS]
    assert_the_models_own_answers(listing, post(url, as_objects), NEW_LISTINGS)


def test_new_texts_get_the_models_own_answers_over_http(saved, served):
    home = saved["homes"]
    assert not home.X["description"].isin([row[0] for row in NEW_HOMES]).any()
    assert_the_models_own_answers(home, post(served("homes"), NEW_HOMES), NEW_HOMES)


def test_the_breast_cancer_test_set_gets_the_models_own_answers_over_http(saved, served):
    cancer = saved["cancer"]
    X_train, X_test, y_train, _y_test = breast_cancer_split()
    response = post(served("cancer"), X_test.to_numpy().tolist())
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    # the model as the learner fitted it, on the learner's own X_test frame
    fitted = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    assert [p["label"] for p in predictions] == fitted.predict(X_test).tolist() == cancer.model.predict(X_test).tolist()
    np.testing.assert_allclose([[p["probabilities"]["0"], p["probabilities"]["1"]] for p in predictions],
                               fitted.predict_proba(X_test), rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE)


def test_an_offset_is_honoured_for_a_tz_aware_column_over_http(saved, served):
    trip = saved["trips"]
    response = post(served("trips"), NEW_TRIPS)
    assert_the_models_own_answers(trip, response, NEW_TRIPS)
    values = [p["value"] for p in response.json()["predictions"]]
    assert values[0] == pytest.approx(values[1], rel=RELATIVE_TOLERANCE)  # the same instant, two spellings
    # and the offset matters: read as Paris wall time, 23:30 on Sunday would be another answer
    wall_time = [["2024-05-05T23:30:00+02:00", *NEW_TRIPS[0][1:]]]
    assert trip.own_answers(wall_time)[0][0] != pytest.approx(values[0], rel=1e-6)


HTTP_REFUSALS = [  # (model, field, value): each refused with a 400 naming instances[0].field
    ("listings", "listed_on", "2024-02-30"),           # no such day
    ("listings", "listed_on", "2024-13-01T25:00"),      # no such month or hour
    ("listings", "listed_on", "1999-12-31"),            # before bounds= (2020-01-01)
    ("listings", "listed_on", "2027-01-01"),            # after bounds= (2026-12-31)
    ("listings", "listed_on", 20240501),                # a number, not ISO text
    ("listings", "listed_on", None),                    # never missing in training
    ("listings", "area", "big"),
    ("homes", "description", "word " * 2000),           # over max_length
    ("homes", "description", 42),
    ("homes", "description", ["a", "list"]),
    ("homes", "neighbourhood", "district-999"),         # never seen
    ("homes", "neighbourhood", None),
    ("cancer", "mean radius", "big"),
    ("cancer", "mean radius", 1e9),
    ("trips", "departure", "2024-05-01T12:30:00"),      # no offset for a tz-aware column
    ("trips", "departure", "2024-05-01"),               # a date alone for a tz-aware date-time
    ("trips", "departure", "1900-01-01T00:00:00+01:00"),  # far before the range
    ("trips", "returned_at", "2024-05-01T12:30:00+02:00"),  # an offset for a naive column
    ("trips", "returned_at", "2024-05-01T12:30:00Z"),
    ("trips", "booked_on", "2024-13-01"),
    ("trips", "booked_on", "yesterday"),
]


@pytest.mark.parametrize("name, field, value", HTTP_REFUSALS,
                         ids=[f"{name}-{field}-{str(value)[:20]}" for name, field, value in HTTP_REFUSALS])
def test_a_bad_value_is_refused_over_http_naming_its_field(saved, served, name, field, value):
    model = saved[name]
    response = post(served(name), [row_with(model, field, value)])
    assert_refused_naming(response, field)


def test_an_unseen_value_of_a_150_value_category_gets_a_short_message_with_the_count(saved, served):
    home = saved["homes"]
    response = post(served("homes"), [row_with(home, "neighbourhood", "district-999")])
    message = assert_refused_naming(response, "neighbourhood")
    assert "150" in message and "/model" in message, message
    shown = [value for value in home.features["neighbourhood"]["values"] if value in message]
    assert 1 <= len(shown) <= 10, message  # a few values, not all 150


# --- 3. fuzzing: any value for a date or a text, in-process --------------------------------------

INVALID_TIMES = ["2024-02-30", "2024-13-01T25:00", "2023-02-29", "2024-00-10", "2024-05-00", "2024-05-01T24:00:01",
                 "2024-05-01T12:60", "2024-05-01T12:30:00+25:00", "2024-05-01T12:30:00+02:00[Europe/Paris]",
                 "0000-01-01", "-2024-05-01", "+002024-05-01", "20240501", "2024-W18-3", "2024-122",
                 "2024-05-01 12:30", "2024-05-01T12:30:00.123456789", "2024-05-01T12:30:00,5", "24-05-01",
                 " 2024-05-01", "2024-05-01\n", "2024-05-01\x00", "\uff12\uff10\uff12\uff14-\uff10\uff15-\uff10\uff11",
                 "NaT", "nan", "now", "today", "", "1677-09-21", "2262-04-12", "9999-12-31T23:59:59.999999+14:00",
                 "0001-01-01T00:00:00-23:59"]
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.integers(min_value=-2 ** 70, max_value=2 ** 70))
other_json = json_scalars | st.lists(json_scalars, max_size=3) | st.dictionaries(st.text(max_size=5), json_scalars,
                                                                                   max_size=3)
huge_texts = st.builds(lambda size, text: (text or "x") * size, st.integers(100, 200_000),
                       st.text(st.characters(max_codepoint=127), max_size=3))
near_iso = st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
                         r"(Z|[+-][0-9]{2}:[0-9]{2})?)?\Z")
offsets = st.builds(datetime.timezone, st.timedeltas(min_value=-datetime.timedelta(hours=23, minutes=59),
                                                     max_value=datetime.timedelta(hours=23, minutes=59)))
# ISO 8601 offsets are whole minutes (Python also writes seconds and fractions: those are odd values)
minute_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes)))
some_zone = st.none() | st.just(datetime.timezone.utc) | offsets
any_time = st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31),
                        timezones=some_zone).map(datetime.datetime.isoformat)
odd_times = any_time | st.dates().map(datetime.date.isoformat) | near_iso | st.sampled_from(INVALID_TIMES)
anything_else = st.text(max_size=30) | other_json | huge_texts
odd_texts = (st.text() | st.sampled_from(["", " ", "\x00", "\ud800", "\u202e", "\u00e9" * 250, "<script>"])
             | other_json | huge_texts)


def times_in_range(feature):
    """ISO texts of dates or date-times a day inside the feature's range, in its own form (offset or none)."""
    low, high = (pd.Timestamp(feature[end]).tz_localize(None) for end in ("min", "max"))
    moments = st.datetimes(min_value=(low + pd.Timedelta(days=1)).to_pydatetime(),
                           max_value=(high - pd.Timedelta(days=1)).to_pydatetime(),
                           timezones=minute_offsets if feature["timezone"] else st.none())
    if feature["type"] == "date":
        return moments.map(lambda moment: moment.date().isoformat())
    return moments.map(datetime.datetime.isoformat)


def fuzzed_values(feature):
    """Values for one feature: about half of the kind it takes, the rest anything a client could send."""
    if feature["type"] in ("date", "datetime"):
        fitting, odd = times_in_range(feature), odd_times
    elif feature["type"] == "text":
        fitting = st.text(max_size=feature["max_length"]) | st.lists(st.sampled_from(WORDS)).map(" ".join)
        odd = odd_texts
    else:
        fitting, odd = st.sampled_from(feature["values"]), odd_texts | st.sampled_from(["district-150", "DISTRICT-000"])
    others = odd | anything_else
    # one choice between the two halves: st.one_of would pick among its (flattened) branches alike
    return st.booleans().flatmap(lambda fits: fitting if fits else others)


FUZZED = [("listings", "listed_on"), ("trips", "departure"), ("trips", "booked_on"), ("trips", "returned_at"),
          ("homes", "description"), ("homes", "neighbourhood")]


@pytest.mark.parametrize("name, field", FUZZED, ids=[f"{name}-{field}" for name, field in FUZZED])
def test_any_date_or_text_value_is_answered_by_the_model_or_refused_never_a_500(saved, name, field):
    model = saved[name]
    index = model.names.index(field)
    statuses = collections.Counter()

    @fuzz_settings(60)
    @given(value=fuzzed_values(model.features[field]))
    def check(value):
        row = row_with(model, field, value)
        response = model.client.post("/predict", json={"instances": [row]})
        statuses[response.status_code] += 1
        assert response.status_code in (200, 400), (value, response.status_code, response.data[:300])
        if response.status_code == 400:
            assert_refused_naming(response, field)
            return
        sent = list(model.metadata["example"])
        sent[index] = value
        assert_the_models_own_answers(model, response, [sent])

    check()
    # both paths were taken: values the model answered, and values refused
    assert statuses[200] >= 5 and statuses[400] >= 5, statuses
