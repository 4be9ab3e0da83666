"""The compiled engine: save_model converts a model to ONNX only when the graph proves equal to it,
the app serves that graph (and nothing else), and a graph that is not the model's stops the app.

Three models no lesson uses: a gradient-boosted classifier on an array, a DataFrame pipeline with a
text category that may be missing, and a pipeline the converter cannot take (a Python function).
Each is served, and every answer is compared with the model's own: labels identical, numbers
within the tolerance model.json states for the engine that serves it.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from conftest import assert_same_answers
from final_app import convert
from final_app.app import create_app
from final_app.artifact import GRAPH_FILE, METADATA_FILE, MODEL_DIR, ModelError, load_engine, save_model, sha256_of

ROOT = MODEL_DIR.parent.parent
SEED = 7


def cancer():
    """The breast-cancer table as an array, with its feature names."""
    data = load_breast_cancer()
    return data.data, data.target, [name.replace(" ", "_") for name in data.feature_names]


def plans():
    """A made-up table of customers: a plan that may be missing, a count, an amount; who left."""
    random = np.random.default_rng(SEED)
    rows = 600
    plan = random.choice(["basic", "plus", "pro"], rows).astype(object)
    plan[random.random(rows) < 0.1] = np.nan
    calls = random.integers(0, 12, rows)
    fee = random.normal(30, 8, rows).round(2)
    left = (calls * 4 + (plan == "basic") * 10 - fee / 2 + random.normal(0, 4, rows)) > 5
    X = pd.DataFrame({"plan": pd.Series(plan, dtype=object), "support_calls": calls, "monthly_fee": fee})
    return X, np.where(left, "left", "stayed")


def plan_pipeline():
    """Fill and one-hot encode the plan, scale the numbers, then a logistic regression."""
    columns = ColumnTransformer([
        ("plan", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
         ["plan"]),
        ("numbers", StandardScaler(), ["support_calls", "monthly_fee"]),
    ])
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{name: (folder, model, X, metadata)} for the three models, each saved by save_model."""
    found = {}
    X, y, names = cancer()
    model = GradientBoostingClassifier(n_estimators=30, random_state=SEED).fit(X, y)
    folder = tmp_path_factory.mktemp("cancer")
    found["cancer"] = folder, model, X, save_model(model, X, folder, feature_names=names, name="cancer-gb")
    X, y = plans()
    model = plan_pipeline().fit(X, y)
    folder = tmp_path_factory.mktemp("plans")
    found["plans"] = folder, model, X, save_model(model, X, folder, name="plans-logreg")
    data = load_diabetes()
    model = make_pipeline(FunctionTransformer(np.square), Ridge()).fit(data.data, data.target)
    folder = tmp_path_factory.mktemp("squares")
    names = list(data.feature_names)
    found["squares"] = folder, model, data.data, save_model(model, data.data, folder, feature_names=names,
                                                             name="squares-ridge")
    return found


def json_rows(X):
    """X's rows as a request sends them: numbers, text, null where missing."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    return [[None if pd.isna(value) else (value.item() if hasattr(value, "item") else value) for value in row]
            for row in frame.astype(object).itertuples(index=False)]


def expected_answers(model, X, metadata):
    """The model's own (labels or values, probabilities or None)."""
    if metadata["task"] == "regression":
        return model.predict(X), None
    return model.predict(X), model.predict_proba(X)


# --- which engine, and why -------------------------------------------------------------------------

def test_a_converted_model_is_proven_on_every_training_row_and_records_how_close(saved):
    _folder, _model, X, metadata = saved["cancer"]
    engine = metadata["engine"]
    assert engine["name"] == "onnx" and engine["converter"].startswith("skl2onnx ")
    assert engine["checked"]["rows"] == len(X) + 1  # every training row, and the example row
    relative, absolute = convert.TOLERANCES[engine["precision"]]
    assert (engine["checked"]["relative_tolerance"], engine["checked"]["absolute_tolerance"]) == (relative, absolute)
    assert engine["checked"]["largest_difference"] <= absolute + relative
    assert "onnxruntime" in metadata["versions"]


def test_a_text_column_that_may_be_missing_is_compiled_and_proven_with_it_missing(saved):
    _folder, _model, _X, metadata = saved["plans"]
    engine = metadata["engine"]
    assert engine["name"] == "onnx"
    assert ["plan", "string"] in engine["inputs"]
    assert {feature["name"]: feature["nullable"] for feature in metadata["features"]}["plan"] is True


def test_a_model_the_converter_cannot_take_is_served_by_scikit_learn_saying_why(saved):
    folder, _model, _X, metadata = saved["squares"]
    assert metadata["engine"]["name"] == "sklearn"
    assert metadata["engine"]["reason"].startswith("double and float precision: skl2onnx cannot convert it: ")
    assert "FunctionTransformer" in metadata["engine"]["reason"]
    assert not (folder / GRAPH_FILE).exists()
    assert "onnxruntime" not in metadata["versions"]


def test_engine_sklearn_opts_out_and_removes_a_graph_left_from_before(tmp_path):
    X, y, names = cancer()
    model = GradientBoostingClassifier(n_estimators=5, random_state=SEED).fit(X, y)
    assert save_model(model, X, tmp_path, feature_names=names)["engine"]["name"] == "onnx"
    metadata = save_model(model, X, tmp_path, feature_names=names, engine="sklearn")
    assert metadata["engine"] == {"name": "sklearn", "reason": 'save_model was called with engine="sklearn"'}
    assert not (tmp_path / GRAPH_FILE).exists()
    assert load_engine(tmp_path)[0].name == "sklearn"
    with pytest.raises(ValueError, match='engine= must be "onnx" or "sklearn", got \'fast\''):
        save_model(model, X, tmp_path, feature_names=names, engine="fast")


def test_a_graph_not_close_enough_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "TOLERANCES", {"double": (0.0, 0.0), "float": (0.0, 0.0)})
    X, y = plans()
    model = plan_pipeline().fit(X, y)
    metadata = save_model(model, X, tmp_path)
    assert metadata["engine"]["name"] == "sklearn"
    assert "the graph's numbers differ from the model's by up to" in metadata["engine"]["reason"]
    assert not (tmp_path / GRAPH_FILE).exists()


# --- served: the model's own answers ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["cancer", "plans", "squares"])
def test_every_training_row_gets_the_models_own_answer(saved, name):
    folder, model, X, metadata = saved[name]
    app = create_app({"MODEL_DIR": str(folder)})
    assert app.extensions["final_app.predictor"].engine.name == metadata["engine"]["name"]
    response = app.test_client().post("/predict", json={"instances": json_rows(X)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_same_answers(response.get_json()["predictions"], *expected_answers(model, X, metadata), metadata)


def test_rows_nobody_trained_on_get_the_models_own_answer(saved):
    folder, model, _X, metadata = saved["plans"]
    random = np.random.default_rng(SEED + 1)
    plan = random.choice(["basic", "plus", "pro", "missing"], 500).astype(object)
    plan[plan == "missing"] = np.nan  # missing as pandas reads it (None is not missing to SimpleImputer)
    X = pd.DataFrame({"plan": pd.Series(plan, dtype=object),
                      "support_calls": random.integers(0, 23, 500),
                      "monthly_fee": random.uniform(0, 60, 500).round(2)})
    response = create_app({"MODEL_DIR": str(folder)}).test_client().post("/predict", json={"instances": json_rows(X)})
    assert response.status_code == 200, response.get_data(as_text=True)
    predictions = response.get_json()["predictions"]
    assert_same_answers(predictions, *expected_answers(model, X, metadata), metadata)
    assert all(0 <= value <= 1 for answer in predictions for value in answer["probabilities"].values())


def test_the_web_process_of_a_compiled_model_loads_no_pickle_and_no_scikit_learn(saved):
    folder, _model, _X, _metadata = saved["plans"]
    script = ("import sys; import final_app.wsgi; "
              "print(sorted(m for m in ('sklearn', 'joblib', 'pandas', 'scipy', 'skl2onnx') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MODEL_DIR": str(folder)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


# --- a graph that is not the model's stops the app -------------------------------------------------

@pytest.fixture
def graph_copy(saved, tmp_path):
    """A copy of the cancer model's folder, to spoil."""
    folder = tmp_path / "model"
    shutil.copytree(saved["cancer"][0], folder)
    return folder


def edit_engine(folder, change):
    """Rewrite the folder's metadata with change(engine) applied."""
    metadata = json.loads((folder / METADATA_FILE).read_text())
    change(metadata["engine"])
    (folder / METADATA_FILE).write_text(json.dumps(metadata))


def test_a_tampered_graph_stops_the_app_with_status_4_and_one_line(graph_copy):
    with (graph_copy / GRAPH_FILE).open("ab") as file:
        file.write(b"\0")
    result = subprocess.run([sys.executable, "-c", "import final_app.wsgi"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                                             "MODEL_DIR": str(graph_copy)})
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 4
    assert len(lines) == 1
    assert lines[0].startswith(f"CRITICAL final_app: refusing to start: model check failed for "
                               f"{graph_copy / GRAPH_FILE}: sha256 expected ")


def test_another_models_graph_with_its_sha256_is_refused_by_the_example_row(graph_copy):
    X, y, _names = cancer()
    # A graph that takes the same input but is another model: a forest instead of the boosted trees.
    forest = RandomForestClassifier(n_estimators=3, random_state=SEED).fit(X, y)
    inputs = [("X", "double")]
    graph = convert.convert(forest, inputs, X.shape[1], "classification")
    (graph_copy / GRAPH_FILE).write_bytes(graph)
    edit_engine(graph_copy, lambda engine: engine.update(sha256=sha256_of(graph), inputs=inputs, precision="double"))
    with pytest.raises(ModelError, match=r"the graph answers the example row .*this graph is not the model's"):
        load_engine(graph_copy)


def test_a_graph_whose_inputs_differ_from_its_metadata_is_refused(graph_copy):
    edit_engine(graph_copy, lambda engine: engine.update(inputs=[["features", engine["inputs"][0][1]]]))
    with pytest.raises(ModelError, match=r"the graph.s inputs are X \(tensor\((double|float)\)\), its metadata says features \(tensor\(\1\)\)"):
        load_engine(graph_copy)


def test_a_replaced_model_file_is_refused_though_only_the_graph_is_served(graph_copy):
    with (graph_copy / "model.joblib").open("ab") as file:
        file.write(b"\0")
    with pytest.raises(ModelError, match=r"model\.joblib: sha256 expected "):
        load_engine(graph_copy)
