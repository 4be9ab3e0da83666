"""final_app.artifact.save_model: the schema it infers, what it refuses, and models no example uses,
served by the Procfile's own command with MODEL_DIR, answering exactly as the models do.
"""
import datetime
import hashlib
import json
import os
import pathlib
import re
import sys

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from sklearn.svm import SVC

from conftest import assert_same_answers
from final_app.artifact import (GRAPH_FILE, METADATA_FILE, MODEL_FILE, ModelError, check_versions, default_bounds,
                                load_model_and_metadata, save_model)
from lesson_helpers import running
from test_examples import bad_value_cases, validator_for
from tests.model_parts import DateParts, RefusesMissingLater  # importable from the top folder, as a model's code must be

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUNICORN = str(pathlib.Path(sys.executable).parent / "gunicorn")
SEED = 0


# --- three models no example uses ------------------------------------------------------------------

def customers():
    """A made-up table: text, a category, numbers with gaps, a boolean and an integer count."""
    rng = np.random.default_rng(SEED)
    size = 400
    frame = pd.DataFrame({
        "plan": rng.choice(["basic", "plus", "pro"], size),
        "region": pd.Categorical(rng.choice(["north", "south", "east"], size)),
        "monthly_fee": rng.uniform(5, 80, size).round(2),
        "support_calls": rng.integers(0, 12, size),
        "has_discount": rng.choice([True, False], size),
    })
    frame.loc[rng.choice(size, 40, replace=False), "monthly_fee"] = np.nan
    frame.loc[rng.choice(size, 30, replace=False), "plan"] = np.nan
    churned = (frame["support_calls"] + rng.normal(0, 2, size) > 6).map({True: "left", False: "stayed"})
    return frame, churned


def churn_pipeline():
    """A DataFrame pipeline: fill and one-hot the text and category, fill the numbers, a classifier."""
    text = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    columns = ColumnTransformer([("text", text, ["plan", "region"]),
                                 ("numbers", SimpleImputer(strategy="median"),
                                  ["monthly_fee", "support_calls", "has_discount"])])
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


def diabetes_frame():
    """scikit-learn's diabetes table with sex and an age band as pandas categories."""
    data = load_diabetes(as_frame=True, scaled=False)
    frame = data.frame.drop(columns="target")
    frame["sex"] = frame["sex"].map({1.0: "one", 2.0: "two"}).astype("category")
    frame["age_band"] = pd.cut(frame.pop("age"), [0, 40, 60, 100], labels=["young", "middle", "older"])
    return frame, data.target


def diabetes_regressor():
    """A regressor on category columns: one-hot the categories, a ridge regression on the rest."""
    columns = ColumnTransformer([("categories", OneHotEncoder(), ["sex", "age_band"])], remainder="passthrough")
    return make_pipeline(columns, Ridge(alpha=1.0))


WINE = load_wine()
WINE_NAMES = [name.replace("/", "_") for name in WINE.feature_names]


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    """{name: (model folder, model, X as trained, metadata)} for three models, each saved with save_model."""
    folders = {}
    X, y = customers()
    model = churn_pipeline().fit(X, y)
    folders["churn"] = (model, X, save_model(model, X, tmp_path_factory.mktemp("churn") / "model",
                                            name="churn", target="outcome"))
    X, y = diabetes_frame()
    model = diabetes_regressor().fit(X, y)
    folders["diabetes"] = (model, X, save_model(model, X, tmp_path_factory.mktemp("diabetes") / "model",
                                               name="diabetes-ridge", target="progression"))
    model = RandomForestClassifier(n_estimators=20, random_state=SEED).fit(WINE.data, WINE.target)
    folders["wine"] = (model, WINE.data, save_model(model, WINE.data, tmp_path_factory.mktemp("wine") / "model",
                                                    feature_names=WINE_NAMES, name="wine-forest"))
    return {name: (pathlib.Path(tmp_path_factory.getbasetemp()) / found_folder(tmp_path_factory, name), *rest)
            for name, rest in folders.items()}


def found_folder(tmp_path_factory, name):
    """The model folder save_model wrote for name (under the numbered temporary folder)."""
    base = pathlib.Path(tmp_path_factory.getbasetemp())
    return next(base.glob(f"{name}*/model")).relative_to(base)


def features_of(metadata):
    """{name: feature} from metadata."""
    return {feature["name"]: feature for feature in metadata["features"]}


def test_schema_of_a_table_with_every_kind_of_column(unseen):
    _folder, _model, X, metadata = unseen["churn"]
    features = features_of(metadata)
    assert [feature["name"] for feature in metadata["features"]] == list(X.columns)
    assert features["plan"]["type"] == "category" and features["plan"]["values"] == ["basic", "plus", "pro"]
    assert features["plan"]["nullable"] is True
    assert features["region"]["dtype"] == "category" and features["region"]["nullable"] is False
    assert features["monthly_fee"]["type"] == "number" and features["monthly_fee"]["nullable"] is True
    assert features["support_calls"]["type"] == "integer"
    assert (features["support_calls"]["min"], features["support_calls"]["max"]) == (0, 22)
    assert features["has_discount"]["type"] == "boolean"
    assert metadata["classes"] == ["left", "stayed"] and metadata["probabilities"] is True
    assert metadata["input"] == "dataframe" and "pandas" in metadata["versions"]


def test_schema_of_a_numpy_array_with_feature_names(unseen):
    _folder, model, _X, metadata = unseen["wine"]
    assert metadata["input"] == "array" and metadata["array_dtype"] == "float64"
    assert [feature["name"] for feature in metadata["features"]] == WINE_NAMES
    assert all(feature["type"] == "number" and not feature["nullable"] for feature in metadata["features"])
    assert metadata["classes"] == model.classes_.tolist() == [0, 1, 2]
    assert "pandas" not in metadata["versions"]


def test_schema_of_a_regressor(unseen):
    _folder, _model, _X, metadata = unseen["diabetes"]
    assert metadata["task"] == "regression" and "classes" not in metadata
    assert features_of(metadata)["age_band"]["values"] == ["young", "middle", "older"]
    assert features_of(metadata)["age_band"]["ordered"] is True


@pytest.mark.parametrize("low, high, integer, expected", [
    (4.3, 7.9, False, (0.7, 11.5)),       # widened by the width (3.6), out to a tenth of 1
    (32.1, 59.6, False, (4.0, 88.0)),
    (2700, 6300, False, (0, 9900)),       # never below 0 when training never was
    (-3.0, 2.0, False, (-8.0, 7.0)),      # negative in training: negative allowed
    (0, 11, True, (0, 22)),
    (5.0, 5.0, False, (0, 10.0)),         # one value seen: its own size either side
])
def test_default_bounds(low, high, integer, expected):
    assert default_bounds(low, high, integer) == expected


def test_bounds_and_units_override(tmp_path):
    model = LinearRegression().fit(WINE.data[:, :2], WINE.data[:, 2])
    metadata = save_model(model, WINE.data[:, :2], tmp_path, feature_names=["a", "b"],
                          bounds={"a": (0, 100)}, units={"b": "mg"})
    a, b = metadata["features"]
    assert (a["min"], a["max"]) == (0, 100) and "unit" not in a
    assert b["unit"] == "mg"


def test_nullable_only_where_the_model_really_predicts_with_it_missing(tmp_path):
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0] * 5, "b": [np.nan, 2.0, 1.0, 0.5] * 5})
    y = [0, 1, 0, 1] * 5
    model = make_pipeline(RefusesMissingLater(), LogisticRegression()).fit(X, y)
    a, b = save_model(model, X, tmp_path)["features"]
    assert a["nullable"] is False  # missing in training, but this model cannot predict without it
    assert b["nullable"] is True


def test_a_model_without_predict_proba_answers_labels_only(tmp_path):
    model = SVC().fit(WINE.data, WINE.target)
    metadata = save_model(model, WINE.data, tmp_path, feature_names=WINE_NAMES)
    assert metadata["probabilities"] is False
    from final_app.app import create_app

    response = create_app({"MODEL_DIR": str(tmp_path)}).test_client().post(
        "/predict", json={"instances": WINE.data[:5].tolist()})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == [{"label": label} for label in model.predict(WINE.data[:5]).tolist()]


@pytest.mark.parametrize("make_call, message", [
    (lambda tmp: save_model(KMeans(n_clusters=2, n_init=1).fit(WINE.data), WINE.data, tmp,
                            feature_names=WINE_NAMES), "neither a classifier nor a regressor"),
    (lambda tmp: save_model(LinearRegression().fit(WINE.data, WINE.target), WINE.data, tmp),
     "pass feature_names="),
    (lambda tmp: save_model(LinearRegression().fit(WINE.data, WINE.target), WINE.data, tmp,
                            feature_names=WINE_NAMES, bounds={"colour": (0, 1)}), "colour"),
    (lambda tmp: save_model(LinearRegression().fit(pd.DataFrame({"a": [1.0, 2.0]}), [1, 2]),
                            pd.DataFrame({"b": [1.0, 2.0]}), tmp), "fitted on columns ['a']"),
    (lambda tmp: save_model(LinearRegression().fit([[1.0], [2.0]], [1, 2]),
                            pd.DataFrame({"a": [{"x": 1}, {"y": 2}]}), tmp), "column 'a' holds values of type dict"),
])
def test_save_model_refuses_what_it_cannot_serve(tmp_path, make_call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("=", "=")):
        make_call(tmp_path)
    assert not (tmp_path / MODEL_FILE).exists()


def test_files_are_written_into_a_new_folder_and_load_back(tmp_path):
    folder = tmp_path / "deep" / "new"
    model = LinearRegression().fit(WINE.data, WINE.target)
    metadata = save_model(model, WINE.data, folder, feature_names=WINE_NAMES, name="My Model!")
    assert sorted(path.name for path in folder.iterdir()) == [MODEL_FILE, METADATA_FILE, GRAPH_FILE]  # no temporary files
    assert metadata["engine"]["name"] == "onnx"
    loaded, read = load_model_and_metadata(folder)
    assert read == metadata == json.loads((folder / METADATA_FILE).read_text())
    assert metadata["model_version"].startswith("my-model-")
    assert loaded.predict(WINE.data).tolist() == model.predict(WINE.data).tolist()


def test_a_data_frame_model_refuses_to_load_without_its_pandas_version(unseen):
    folder, _model, _X, metadata = unseen["churn"]
    found = dict(metadata["versions"], pandas="not installed")
    with pytest.raises(ModelError, match=f"pandas version expected {pd.__version__}, found not installed"):
        check_versions(metadata, folder / METADATA_FILE, found)


# --- served by the Procfile's command, as on a dyno ----------------------------------------------------

def procfile_command():
    """The Procfile's web command, with this environment's gunicorn."""
    web = (ROOT / "Procfile").read_text().split("web:", 1)[1].split()
    assert web[0] == "gunicorn"
    return [GUNICORN, *web[1:]]


def json_rows(X, names):
    """X's rows as JSON values, null for a missing value."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=names)
    return [[None if pd.isna(value) else (value.item() if hasattr(value, "item") else value) for value in row]
            for row in frame.astype(object).itertuples(index=False)]


@pytest.mark.parametrize("name", ["churn", "diabetes", "wine"])
def test_served_by_gunicorn_with_model_dir(unseen, name):
    folder, model, X, metadata = unseen[name]
    names = [feature["name"] for feature in metadata["features"]]
    rows = json_rows(X, names)[:120]
    env = {"MODEL_DIR": str(folder), "WEB_CONCURRENCY": "1", "PATH": os.environ["PATH"]}
    with running(procfile_command(), cwd=ROOT, env=env, ready_path="/health") as (base_url, _server):
        arrays = requests.post(f"{base_url}/predict", json={"instances": rows}, timeout=30)
        objects = requests.post(f"{base_url}/predict", json={"instances": [dict(zip(names, row)) for row in rows]},
                                timeout=30)
        first = names[0]
        bad = requests.post(f"{base_url}/predict", json={"instances": [dict(zip(names, rows[0]), **{first: "?"})]},
                            timeout=30)
        page = requests.get(f"{base_url}/", timeout=30)
        document = requests.get(f"{base_url}/openapi.json", timeout=30)
    sample = X.iloc[:120] if isinstance(X, pd.DataFrame) else X[:120]
    expected = model.predict(sample), model.predict_proba(sample) if metadata["task"] == "classification" else None
    for response in (arrays, objects):
        assert response.status_code == 200, response.text
        assert_same_answers(response.json()["predictions"], *expected, metadata)
    assert any(None in row for row in rows) is (name == "churn")  # nulls sent where training had gaps
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith(f"instances[0].{first} must be")
    assert page.status_code == 200
    for feature in metadata["features"]:
        if feature["type"] in ("category", "boolean"):
            assert f'<select name="{feature["name"]}"' in page.text
    assert document.status_code == 200 and document.json()["info"]["version"] == metadata["model_version"]


@pytest.mark.parametrize("name", ["churn", "diabetes", "wine"])
def test_every_kind_of_bad_value_is_refused_naming_its_field(unseen, name):
    from final_app.app import create_app

    folder, _model, _X, metadata = unseen[name]
    client = create_app({"MODEL_DIR": str(folder)}).test_client()
    names = [feature["name"] for feature in metadata["features"]]
    for field, value, words in bad_value_cases(metadata):
        row = dict(zip(names, metadata["example"]), **{field: value})
        response = client.post("/predict", json={"instances": [row]})
        assert response.status_code == 400, (field, value)
        message = response.get_json()["error"]["message"]
        assert message.startswith(f"instances[0].{field} ") and words in message, (words, message)


# --- dates, free text, and the code a model needs ---------------------------------------------------

def listings(size=300):
    """A made-up table: a date, a time with a timezone, free text, a few kinds, a repeating code, a number."""
    rng = np.random.default_rng(SEED)
    words = np.array("bright quiet spacious renovated sunny cosy large small flat house garden view".split())
    return pd.DataFrame({
        # from 2020-01-01 to 2022-09-27 (1000 days): the first two rows are the ends
        "listed_on": pd.Timestamp("2020-01-01") + pd.to_timedelta([0, 1000, *rng.integers(1, 1000, size - 2)], unit="D"),
        "seen_at": (pd.Timestamp("2021-03-01") + pd.to_timedelta(rng.integers(0, 10**7, size), unit="s"))
        .tz_localize("Europe/Paris"),
        "description": [" ".join(rng.choice(words, 6)) + f" no. {index}" for index in range(size)],
        "kind": rng.choice(["flat", "house", "studio"], size),
        "code": [f"c{index % 120:03d}" for index in range(size)],
        "area": rng.uniform(20, 200, size).round(1),
    })


def listings_model(frame):
    """A regressor on every kind of column in listings(): dates, text, categories and a number."""
    columns = ColumnTransformer([
        ("dates", DateParts(), ["listed_on", "seen_at"]),
        ("text", TfidfVectorizer(max_features=50), "description"),
        ("kinds", OneHotEncoder(handle_unknown="ignore"), ["kind", "code"]),
        ("area", "passthrough", ["area"]),
    ])
    return make_pipeline(columns, Ridge()).fit(frame, frame["area"] * 30 + frame["listed_on"].dt.month)


@pytest.fixture(scope="module")
def saved_listings(tmp_path_factory):
    """The listings model saved once: (folder, model, frame, metadata)."""
    folder = tmp_path_factory.mktemp("listings")
    frame = listings()
    model = listings_model(frame)
    return folder, model, frame, save_model(model, frame, folder, name="listings")


def test_each_column_gets_its_type(saved_listings):
    _folder, _model, frame, metadata = saved_listings
    types = {feature["name"]: feature["type"] for feature in metadata["features"]}
    assert types == {"listed_on": "date", "seen_at": "datetime", "description": "text", "kind": "category",
                     "code": "category", "area": "number"}
    listed_on, seen_at, description, _kind, code, _area = metadata["features"]
    # 2020-01-01 to 2022-09-27 in training (1000 days): widened by that width on each side.
    assert (listed_on["min"], listed_on["max"]) == ("2017-04-06", "2025-06-23")
    assert listed_on["dtype"] == str(frame["listed_on"].dtype) and listed_on["timezone"] is None
    assert seen_at["timezone"] == "Europe/Paris" and seen_at["dtype"] == "datetime64[us, Europe/Paris]"
    assert seen_at["min"].endswith("T00:00:00+01:00") and seen_at["max"].endswith("T00:00:00+02:00")
    longest = frame["description"].str.len().max()
    assert description["max_length"] == max(100, 2 * longest)
    assert len(code["values"]) == 120  # 120 different values repeat in 300 rows: a category


def test_new_dates_and_texts_get_the_models_own_answers(saved_listings):
    from final_app.app import create_app

    folder, model, frame, metadata = saved_listings
    client = create_app({"MODEL_DIR": str(folder)}).test_client()
    rows = [{"listed_on": "2024-02-29", "seen_at": "2021-06-01T08:30:00+02:00", "description": "never seen before",
             "kind": "house", "code": "c007", "area": 81.5},
            {"listed_on": "2019-12-31", "seen_at": "2021-06-01T06:30:00Z", "description": "",
             "kind": "flat", "code": "c119", "area": 20.0}]
    response = client.post("/predict", json={"instances": rows})
    assert response.status_code == 200, response.get_json()
    expected = pd.DataFrame(rows).astype({"listed_on": "datetime64[us]"})
    expected["seen_at"] = pd.to_datetime(expected["seen_at"], utc=True).dt.tz_convert("Europe/Paris")
    values = [prediction["value"] for prediction in response.get_json()["predictions"]]
    np.testing.assert_allclose(values, model.predict(expected), rtol=1e-9)


BAD_TIMES_AND_TEXTS = [
    ("listed_on", "2024-02-30", "must be a date (YYYY-MM-DD) from 2017-04-06 to 2025-06-23"),
    ("listed_on", "2030-01-01", "from 2017-04-06 to 2025-06-23"),
    ("listed_on", "2024-05-01T10:00:00", "must be a date (YYYY-MM-DD)"),
    ("listed_on", "01/05/2024", "must be a date (YYYY-MM-DD)"),
    ("listed_on", 20240501, "must be a date"),
    ("seen_at", "2021-06-01T08:30:00", "with a UTC offset"),
    ("seen_at", "2021-06-01T25:30:00+02:00", "with a UTC offset"),
    ("seen_at", "2021-06-01T08:30:00+02:00" + "0" * 5000, "with a UTC offset"),
    ("description", 5, "must be text of at most"),
    ("description", "x" * 100_000, "must be text of at most"),
    ("description", None, "must be text of at most"),
    ("code", "c999", 'one of 120 values such as "c000", "c001", "c002" (GET /model lists them all)'),
]


@pytest.mark.parametrize("field, value, words", BAD_TIMES_AND_TEXTS)
def test_bad_dates_and_texts_get_a_short_message_naming_the_field(saved_listings, field, value, words):
    from final_app.app import create_app

    folder, _model, _frame, metadata = saved_listings
    client = create_app({"MODEL_DIR": str(folder)}).test_client()
    row = dict(zip([feature["name"] for feature in metadata["features"]], metadata["example"]), **{field: value})
    response = client.post("/predict", json={"instances": [row]})
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert message.startswith(f"instances[0].{field} must be") and words in message, message
    assert len(message) <= 300, message


def test_text_or_category_follows_the_stated_rule(tmp_path):
    # A text column is a category with at most 50 different values, or when its values repeat
    # (no more different values than half its rows); otherwise it is free text.
    frame = pd.DataFrame({
        "fifty": [f"v{index % 50}" for index in range(60)],
        "fifty_one": [f"v{index % 51}" for index in range(60)],
        "repeating": [f"v{index % 30}" for index in range(60)],
        "unique": [f"sentence number {index}" for index in range(60)],
    })
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LinearRegression()).fit(frame, range(60))
    features = save_model(model, frame, tmp_path)["features"]
    assert [feature["type"] for feature in features] == ["category", "text", "category", "text"]
    assert features[1]["max_length"] == 100  # twice the longest (3 characters), but at least 100
    assert features[3]["max_length"] == 100
    overridden = save_model(model, frame, tmp_path, types={"fifty": "text", "unique": "category"},
                            max_length={"fifty": 7})["features"]
    assert [feature["type"] for feature in overridden] == ["text", "text", "category", "category"]
    assert overridden[0]["max_length"] == 7 and len(overridden[3]["values"]) == 60


SAVE_REFUSALS = {
    "a type the column cannot have": (dict(types={"area": "text"}),
                                      "types= asks for column 'area' to be text, but it holds number values"),
    "an unknown type": (dict(types={"area": "float"}), "types= for 'area': 'float' is not a type"),
    "max_length on a number": (dict(max_length={"area": 10}), "max_length= for 'area': only a text column"),
    "min above max": (dict(bounds={"area": (500, 10)}), "bounds= for 'area': min 500 is above max 10"),
    "bounds leaving out the example": (dict(bounds={"area": (150, 200)}),
                                       "the example row's value 111.2 for 'area'"),
    "bounds on a boolean": (dict(bounds={"garden": (0, 1)}), "bounds= for 'garden': a boolean column has no range"),
    "bounds on text": (dict(bounds={"kind": (0, 1)}), "bounds= for 'kind': a category column has no range"),
    "date bounds that are not dates": (dict(bounds={"listed_on": ("2020-01-01", "soon")}),
                                       "bounds= for 'listed_on': 'soon' is not a date"),
    "date bounds in the wrong order": (dict(bounds={"listed_on": ("2024-01-01", "2020-01-01")}),
                                       "bounds= for 'listed_on': min 2024-01-01 is above max 2020-01-01"),
    "an example of the wrong shape": (dict(example=[1, 2]), "example= has 2 values, the model has 4 features"),
    "an example out of range": (dict(example={"listed_on": "1999-01-01", "kind": "flat", "garden": True,
                                              "area": 50.0}), "the example row's value \"1999-01-01\""),
}


@pytest.mark.parametrize("options, message", SAVE_REFUSALS.values(), ids=SAVE_REFUSALS.keys())
def test_options_that_make_no_sense_are_refused_naming_the_column(tmp_path, options, message):
    frame = listings()[["listed_on", "kind", "area"]].assign(garden=[True, False] * 150)
    frame = frame[["listed_on", "kind", "garden", "area"]]
    columns = ColumnTransformer([("dates", DateParts(), ["listed_on"]), ("kind", OneHotEncoder(), ["kind"])],
                                remainder="passthrough")
    model = make_pipeline(columns, LinearRegression()).fit(frame, frame["area"])
    with pytest.raises(ValueError) as refusal:
        save_model(model, frame, tmp_path, **options)
    assert message in str(refusal.value)
    assert len(str(refusal.value)) <= 300
    assert not (tmp_path / MODEL_FILE).exists()


@pytest.mark.parametrize("column, message", [
    (pd.Series([[1, 2], [3]] * 10), "column 'x' holds values of type list (object)"),
    (pd.Series([{"a": 1}] * 20), "column 'x' holds values of type dict (object)"),
    (pd.Series([b"\x89PNG"] * 20), "column 'x' holds values of type bytes (object)"),
    (pd.Series(pd.to_timedelta(range(20), unit="s")), "column 'x' holds values of type durations"),
    (pd.Series([datetime.date(2024, 1, day) for day in range(1, 21)]), "convert the column with pandas.to_datetime"),
])
def test_columns_the_schema_cannot_express_are_refused_by_name(tmp_path, column, message):
    frame = pd.DataFrame({"x": column, "y": range(20)})
    model = make_pipeline(ColumnTransformer([("y", "passthrough", ["y"])]), LinearRegression()).fit(frame, range(20))
    with pytest.raises(ValueError, match=re.escape(message)):
        save_model(model, frame, tmp_path)


def test_the_example_row_is_made_up_unless_given(tmp_path):
    frame = listings()[["listed_on", "kind", "area"]]
    # The date is dropped: no code of the tests' own, so save_model starts no new Python to load it.
    columns = ColumnTransformer([("dates", "drop", ["listed_on"]), ("kind", OneHotEncoder(), ["kind"])],
                                remainder="passthrough")
    model = make_pipeline(columns, LinearRegression()).fit(frame, frame["area"])
    example = save_model(model, frame, tmp_path)["example"]
    assert example == [frame["listed_on"].sort_values().iloc[150].date().isoformat(),
                       frame["kind"].value_counts().index[0], round(float(frame["area"].median()), 6)]
    rows = [[when.date().isoformat(), kind, area] for when, kind, area in frame.itertuples(index=False)]
    assert example not in rows  # the medians of three columns make no real listing
    given = ["2021-05-01", "flat", 55.5]
    assert save_model(model, frame, tmp_path, example=given)["example"] == given
    assert json.loads((tmp_path / METADATA_FILE).read_text())["example"] == given


def test_the_classic_tutorial_model_is_accepted(tmp_path):
    # A frame straight from train_test_split: its rows in another order and memory layout than the
    # frame the app rebuilds, so probabilities can differ in the last bit (about 1e-16).
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(as_frame=True, return_X_y=True)
    X_train, _X_test, y_train, _y_test = train_test_split(X, y, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    checked = save_model(model, X_train, tmp_path)["checked"]
    assert checked["rows"] == 20 and checked["relative_tolerance"] == 1e-9
    assert checked["largest_difference"] < 1e-12


def test_code_defined_in_the_notebook_is_refused_by_name(tmp_path, monkeypatch):
    def add_one(X):
        return X + 1

    add_one.__module__, add_one.__qualname__ = "__main__", "add_one"  # as if defined in a notebook
    monkeypatch.setattr(sys.modules["__main__"], "add_one", add_one, raising=False)
    model = make_pipeline(FunctionTransformer(add_one), LinearRegression()).fit(WINE.data, WINE.target)
    with pytest.raises(ValueError) as refusal:
        save_model(model, WINE.data, tmp_path, feature_names=WINE_NAMES)
    assert str(refusal.value).startswith("the model needs add_one, defined in the notebook or script that fitted "
                                         "it (__main__), which no other Python process has: move it into a "
                                         "module file inside the repository")
    with pytest.raises(ValueError, match="A lambda, or a function defined inside another function, cannot be"):
        save_model(make_pipeline(FunctionTransformer(lambda X: X), LinearRegression()).fit(WINE.data, WINE.target),
                   WINE.data, tmp_path, feature_names=WINE_NAMES)
    assert not (tmp_path / MODEL_FILE).exists()


def test_code_in_a_module_of_the_repository_is_accepted_and_recorded(saved_listings):
    folder, _model, _frame, metadata = saved_listings
    assert metadata["modules"] == ["tests.model_parts"]
    assert load_model_and_metadata(folder)[1]["modules"] == ["tests.model_parts"]


@pytest.mark.parametrize("old, new, message", [
    (b"tests.model_parts", b"tests.model_gonex",
     "the model needs the module 'tests.model_gonex', which Python cannot import here: put it in the "
     "repository, importable from its top folder where gunicorn starts (for example tests/model_gonex.py)"),
    (b"DateParts", b"DatePartz",
     "the model needs 'DatePartz' from the module 'tests.model_parts', which has none: if DatePartz was "
     "defined in the notebook or script that fitted the model, move it into a module file"),
])
def test_code_missing_at_start_up_is_named_with_where_it_must_live(saved_listings, tmp_path, capsys, old, new, message):
    from final_app import check

    source, *_ = saved_listings
    data = (source / MODEL_FILE).read_bytes().replace(old, new)
    metadata = json.loads((source / METADATA_FILE).read_text())
    metadata["sha256"] = hashlib.sha256(data).hexdigest()
    (tmp_path / MODEL_FILE).write_bytes(data)
    (tmp_path / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=re.escape(message)):
        load_model_and_metadata(tmp_path)
    assert check.main(str(tmp_path)) == 1
    assert message in capsys.readouterr().out


def test_the_document_describes_dates_times_and_text(saved_listings):
    import jsonschema
    from final_app.app import create_app

    folder, _model, frame, metadata = saved_listings
    client = create_app({"MODEL_DIR": str(folder)}).test_client()
    document = client.get("/openapi.json").get_json()
    properties = document["components"]["schemas"]["RowObject"]["properties"]
    assert properties["listed_on"]["format"] == "date"
    assert "from 2017-04-06 to 2025-06-23" in properties["listed_on"]["description"]
    assert properties["seen_at"]["format"] == "date-time"  # RFC 3339: an offset is required, as here
    assert properties["description"] == {"type": "string", "maxLength": metadata["features"][2]["max_length"],
                                         "description": "description"}
    assert len(properties["code"]["enum"]) == 120
    example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    validator = validator_for(document, "PredictRequest")
    validator.format_checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    validator.validate(example)
    assert client.post("/predict", json=example).status_code == 200
    validator_for(document, "ModelMetadata").validate(client.get("/model").get_json())


def test_a_local_date_time_is_described_without_an_offset(tmp_path):
    from final_app.app import create_app

    frame = listings()[["seen_at", "area"]].assign(seen_at=lambda f: f["seen_at"].dt.tz_localize(None))
    model = make_pipeline(ColumnTransformer([("dates", DateParts(), ["seen_at"])], remainder="passthrough"),
                          LinearRegression()).fit(frame, frame["area"])
    feature = save_model(model, frame, tmp_path)["features"][0]
    assert (feature["type"], feature["timezone"]) == ("datetime", None)
    client = create_app({"MODEL_DIR": str(tmp_path)}).test_client()
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["RowObject"]["properties"]["seen_at"]
    assert "format" not in schema and re.fullmatch(schema["pattern"], "2021-06-01T08:30:00")
    assert not re.fullmatch(schema["pattern"], "2021-06-01T08:30:00+02:00")
    row = {"seen_at": "2021-06-01T08:30:00", "area": 50.0}
    assert client.post("/predict", json={"instances": [row]}).status_code == 200
    refused = client.post("/predict", json={"instances": [dict(row, seen_at="2021-06-01T08:30:00Z")]})
    assert refused.status_code == 400
    assert "without a UTC offset" in refused.get_json()["error"]["message"]
