"""final_app.artifact.save_model: the schema it infers, what it refuses, and models no example uses,
served by the Procfile's own command with MODEL_DIR, answering exactly as the models do.
"""
import json
import os
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.svm import SVC

from final_app.artifact import (METADATA_FILE, MODEL_FILE, ModelError, check_versions, default_bounds,
                                load_model_and_metadata, save_model)
from lesson_helpers import running
from test_examples import bad_value_cases

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
                            pd.DataFrame({"a": [{"x": 1}, {"y": 2}]}), tmp), "cannot tell what type"),
])
def test_save_model_refuses_what_it_cannot_serve(tmp_path, make_call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("=", "=")):
        make_call(tmp_path)
    assert not (tmp_path / MODEL_FILE).exists()


def test_files_are_written_into_a_new_folder_and_load_back(tmp_path):
    folder = tmp_path / "deep" / "new"
    model = LinearRegression().fit(WINE.data, WINE.target)
    metadata = save_model(model, WINE.data, folder, feature_names=WINE_NAMES, name="My Model!")
    assert sorted(path.name for path in folder.iterdir()) == [MODEL_FILE, METADATA_FILE]  # no temporary files
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
    for response in (arrays, objects):
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        if metadata["task"] == "regression":
            assert [p["value"] for p in predictions] == model.predict(sample).tolist()
        else:
            assert [p["label"] for p in predictions] == model.predict(sample).tolist()
            assert [list(p["probabilities"].values()) for p in predictions] == model.predict_proba(sample).tolist()
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
