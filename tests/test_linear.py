"""final_app.linear: the fast predict_proba is bit-identical to scikit-learn's, or it is not used.

Small models are trained here on scikit-learn's bundled iris data (no download), to check that
anything other than the shipped kind of model, or any difference in the last bit, means None.
"""
import copy
import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from final_app.app import Predictor, create_app
from final_app.linear import fast_predict, fast_predict_proba, is_scaled_logistic_regression, rows_within_bounds
from final_app.artifact import MODEL_DIR, METADATA_FILE, save_model

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
SPECIES = load_iris().target_names[Y_IRIS]


class SubclassedLogisticRegression(LogisticRegression):
    """A subclass may change any method: the fast path must not assume it behaves like its parent."""


def logistic_regression(**options):
    """A LogisticRegression that converges on iris (a ConvergenceWarning would fail the test)."""
    return LogisticRegression(max_iter=1000, **options)


@pytest.fixture(scope="module")
def check_rows(trained):
    """The check rows the app uses, from the shipped metadata's feature bounds."""
    _, metadata = trained
    return rows_within_bounds(metadata["features"])


@pytest.fixture(scope="module")
def fast(trained, check_rows):
    """The fast predict_proba of the shipped model (the test fails here if it is refused)."""
    model, _ = trained
    function = fast_predict_proba(model, check_rows)
    assert function is not None
    return function


def random_rows_within_bounds(features, count, seed=2024):
    """count rows drawn uniformly between each feature's min and max, as the validator accepts."""
    low = [feature["min"] for feature in features]
    high = [feature["max"] for feature in features]
    return np.random.default_rng(seed).uniform(low, high, size=(count, len(features)))


def assert_identical(a, b):
    """Assert two float arrays have the same shape, dtype and bits (so -0.0 != 0.0, nan == nan)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


def write_model_dir(folder, model):
    """Save model with save_model, as final_app.train does, over the same features and bounds."""
    shipped = json.loads((MODEL_DIR / METADATA_FILE).read_text())
    bounds = {feature["name"]: (feature["min"], feature["max"]) for feature in shipped["features"]}
    save_model(model, X_IRIS, folder, feature_names=list(bounds), name="iris-forest", bounds=bounds)
    return folder


# --- the shipped model --------------------------------------------------------------------------

def test_shipped_model_is_the_kind_the_fast_path_is_for(trained):
    model, _ = trained
    assert is_scaled_logistic_regression(model)


def test_identical_on_all_iris_rows_as_one_batch(trained, fast):
    model, _ = trained
    assert_identical(fast(X_IRIS), model.predict_proba(X_IRIS))


def test_identical_on_each_iris_row_alone(trained, fast):
    model, _ = trained
    for row in X_IRIS:
        assert_identical(fast(row[np.newaxis, :]), model.predict_proba(row[np.newaxis, :]))


def test_identical_on_random_rows_within_the_bounds(trained, fast):
    model, metadata = trained
    rows = random_rows_within_bounds(metadata["features"], 2000)
    assert_identical(fast(rows), model.predict_proba(rows))
    for row in rows:
        assert_identical(fast(row[np.newaxis, :]), model.predict_proba(row[np.newaxis, :]))


@pytest.mark.parametrize("count", [2, 3, 7, 65, 1000, 10_000])
def test_identical_for_batches_of_any_size(trained, fast, count):
    model, metadata = trained
    rows = random_rows_within_bounds(metadata["features"], count, seed=count)
    assert_identical(fast(rows), model.predict_proba(rows))


def test_identical_at_the_corners_of_the_bounds(trained, fast):
    model, metadata = trained
    low = [feature["min"] for feature in metadata["features"]]
    high = [feature["max"] for feature in metadata["features"]]
    corners = np.array(np.meshgrid(*zip(low, high))).reshape(4, -1).T.astype(np.float64)
    assert_identical(fast(corners), model.predict_proba(corners))


def test_fast_function_leaves_its_input_alone(fast):
    rows = X_IRIS.copy()
    rows.setflags(write=False)  # writing into it in place would raise
    fast(rows)
    fast(rows[:1])
    assert_identical(rows, X_IRIS)


def test_labels_are_predict_on_iris_and_random_rows(trained, check_rows):
    model, metadata = trained
    function = fast_predict(model, check_rows)
    rows = np.vstack([X_IRIS, random_rows_within_bounds(metadata["features"], 2000)])
    indices, _probabilities = function(rows)
    assert model.classes_[indices].tolist() == model.predict(rows).tolist()


def test_app_uses_the_fast_path_for_the_shipped_model(app):
    assert app.extensions["final_app.predictor"].fast_predict is not None


def counted(calls, name, function):
    """Return function wrapped so that each call appends name to calls."""
    def wrapper(*args, **kwargs):
        calls.append(name)
        return function(*args, **kwargs)
    return wrapper


def test_each_request_goes_through_the_fast_path_once_and_never_through_the_model(app, monkeypatch):
    predictor = app.extensions["final_app.predictor"]
    calls = []
    monkeypatch.setattr(predictor, "fast_predict", counted(calls, "fast", predictor.fast_predict))
    monkeypatch.setattr(predictor.model, "predict_proba", counted(calls, "predict_proba", predictor.model.predict_proba))
    monkeypatch.setattr(predictor.model, "predict", counted(calls, "predict", predictor.model.predict))
    client = app.test_client()
    one_row = client.post("/predict", json={"instances": X_IRIS[:1].tolist()})
    assert one_row.status_code == 200
    batch = client.post("/predict", json={"instances": X_IRIS.tolist()})
    assert batch.status_code == 200
    form = client.post("/", data=dict(zip(["sepal_length", "sepal_width", "petal_length", "petal_width"],
                                           map(str, X_IRIS[0]))))
    assert form.status_code == 200
    assert calls == ["fast", "fast", "fast"]
    assert len(batch.get_json()["predictions"]) == len(X_IRIS)


def test_predictor_without_check_rows_has_no_fast_path(trained):
    model, metadata = trained
    assert Predictor(model, metadata).fast_predict is None


# --- other models: declined -----------------------------------------------------------------------

OTHER_MODELS = {
    "random forest": make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)),
    "min-max scaler": make_pipeline(MinMaxScaler(), logistic_regression()),
    "scaler without centring": make_pipeline(StandardScaler(with_mean=False), logistic_regression()),
    "scaler without scaling": make_pipeline(StandardScaler(with_std=False), logistic_regression()),
    "bare logistic regression": logistic_regression(),
    "subclass of LogisticRegression": make_pipeline(StandardScaler(), SubclassedLogisticRegression(max_iter=1000)),
    "three steps": make_pipeline(StandardScaler(), StandardScaler(), logistic_regression()),
}


@pytest.mark.parametrize("name", list(OTHER_MODELS))
def test_declines_other_models(name, check_rows):
    model = clone(OTHER_MODELS[name]).fit(X_IRIS, Y_IRIS)
    assert not is_scaled_logistic_regression(model)
    assert fast_predict_proba(model, check_rows) is None


def test_declines_binary_logistic_regression(check_rows):
    model = make_pipeline(StandardScaler(), logistic_regression()).fit(X_IRIS, Y_IRIS == 0)
    assert not is_scaled_logistic_regression(model)
    assert fast_predict_proba(model, check_rows) is None


def test_accepts_a_freshly_trained_pipeline_of_the_same_kind(check_rows):
    model = make_pipeline(StandardScaler(), logistic_regression(C=0.1)).fit(X_IRIS, Y_IRIS)
    fast = fast_predict_proba(model, check_rows)
    assert fast is not None
    assert_identical(fast(X_IRIS), model.predict_proba(X_IRIS))


# --- the check itself: one bit of difference on one check row means None -----------------------

def nudged_on(model, row, when):
    """A copy of model whose predict_proba is one ulp off on row, alone or in a batch (when)."""
    nudged = copy.deepcopy(model)
    real_predict_proba = nudged.predict_proba

    def predict_proba(X):
        probabilities = real_predict_proba(X)
        matches = np.flatnonzero((X == row).all(axis=1))
        if matches.size and (len(X) == 1) == (when == "alone"):
            index = matches[0]
            probabilities[index, 0] = np.nextafter(probabilities[index, 0], np.inf)
        return probabilities

    nudged.predict_proba = predict_proba  # the instance attribute hides Pipeline.predict_proba
    return nudged


@pytest.mark.parametrize("when", ["alone", "in a batch"])
@pytest.mark.parametrize("which", [0, 1, 40, -1])
def test_declines_when_one_check_row_differs_in_the_last_bit(trained, check_rows, which, when):
    model, _ = trained
    nudged = nudged_on(model, check_rows[which], when)
    assert is_scaled_logistic_regression(nudged)
    assert fast_predict_proba(nudged, check_rows) is None


def test_nudge_is_seen_only_where_it_is_meant(trained, check_rows):
    model, _ = trained
    nudged = nudged_on(model, check_rows[40], "alone")
    assert np.array_equal(nudged.predict_proba(check_rows), model.predict_proba(check_rows))
    assert not np.array_equal(nudged.predict_proba(check_rows[40:41]), model.predict_proba(check_rows[40:41]))


# --- the app falls back to predict_proba for any other model --------------------------------------

@pytest.fixture(scope="module")
def forest_dir(tmp_path_factory):
    """A model folder holding a random-forest pipeline, with metadata the loader accepts."""
    forest = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=10, random_state=0))
    return write_model_dir(tmp_path_factory.mktemp("forest") / "model", forest.fit(X_IRIS, SPECIES))


@pytest.mark.parametrize("how", ["config", "environment"])
def test_app_with_another_model_falls_back_and_answers_its_predict_proba(forest_dir, how, monkeypatch):
    if how == "environment":
        monkeypatch.setenv("MODEL_DIR", str(forest_dir))
        app = create_app()
    else:
        app = create_app({"MODEL_DIR": str(forest_dir)})
    predictor = app.extensions["final_app.predictor"]
    assert type(predictor.model[-1]) is RandomForestClassifier
    assert predictor.fast_predict is None
    response = app.test_client().post("/predict", json={"instances": X_IRIS.tolist()})
    assert response.status_code == 200
    body = json.loads(response.get_data())
    assert body["model_version"].startswith("iris-forest-")
    expected = predictor.model.predict_proba(X_IRIS)
    assert [list(p["probabilities"].values()) for p in body["predictions"]] == expected.tolist()
    assert [p["label"] for p in body["predictions"]] == predictor.model.predict(X_IRIS).tolist()
