"""Lesson 04: the saved model, its metadata, the checks before loading, and app.py's /predict."""
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import joblib
import numpy
import pytest
import requests
import scipy
import sklearn
from sklearn.datasets import load_iris
from sklearn.exceptions import InconsistentVersionWarning

from conftest import LESSON_APP_COMMANDS, calls_made
from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "04_model"
MODEL_FILE = LESSON / "model.joblib"
METADATA_FILE = LESSON / "model.json"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["setosa", "versicolor", "virginica"]
ONE_OF_EACH = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.3, 3.3, 6.0, 2.5]]


@pytest.fixture(scope="module")
def lesson_app():
    """The lesson's app module, imported once: it loads the model as it is imported."""
    return import_lesson_file("04_model", "app")


@pytest.fixture()
def lesson_client(lesson_app):
    """A Flask test client for the lesson's app."""
    return lesson_app.app.test_client()


@pytest.fixture(scope="module")
def saved_model():
    """The saved model, loaded straight from the file, to compare the app's answers with."""
    return joblib.load(MODEL_FILE)


@pytest.fixture()
def model_copy(tmp_path):
    """A copy of the saved model and metadata in a temp folder, safe to tamper with."""
    shutil.copy(MODEL_FILE, tmp_path / "model.joblib")
    shutil.copy(METADATA_FILE, tmp_path / "model.json")
    return tmp_path


class PrintsWhenLoaded:
    """A harmless stand-in for a malicious pickle: loading it calls print()."""

    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))


def post_rows(client, rows):
    """POST rows to /predict and return the response."""
    return client.post("/predict", json={"instances": rows})


# --- the saved model and its metadata ---------------------------------------------------

def test_metadata_describes_the_saved_model():
    metadata = json.loads(METADATA_FILE.read_text())
    assert metadata["sha256"] == hashlib.sha256(MODEL_FILE.read_bytes()).hexdigest()
    assert [feature["name"] for feature in metadata["features"]] == FEATURES
    assert all(feature["unit"] == "cm" for feature in metadata["features"])
    assert metadata["classes"] == CLASSES
    assert metadata["versions"]["python"].startswith("3.11.")
    assert metadata["versions"]["scikit-learn"] == sklearn.__version__
    assert metadata["versions"]["numpy"] == numpy.__version__
    assert metadata["versions"]["scipy"] == scipy.__version__
    assert metadata["versions"]["joblib"] == joblib.__version__
    assert 0.9 <= metadata["metrics"]["test_accuracy"] <= 1.0
    assert 0.9 <= metadata["metrics"]["cv_accuracy_mean"] <= 1.0


def test_training_again_gives_the_same_bytes_and_the_same_predictions(tmp_path, saved_model):
    train = import_lesson_file("04_model", "train")
    first_folder, second_folder = tmp_path / "first", tmp_path / "second"
    first_folder.mkdir()
    second_folder.mkdir()
    first = train.main(first_folder)
    second = train.main(second_folder)
    first_bytes = (first_folder / "model.joblib").read_bytes()
    assert first_bytes == (second_folder / "model.joblib").read_bytes()
    assert first["sha256"] == second["sha256"] == hashlib.sha256(first_bytes).hexdigest()
    assert json.loads((first_folder / "model.json").read_text()) == first
    assert sorted(path.name for path in first_folder.iterdir()) == ["model.joblib", "model.json"]
    # Another CPU may round the last bit differently, so compare with the committed model closely, not bytewise.
    retrained = joblib.load(first_folder / "model.joblib")
    iris = load_iris().data
    assert retrained.predict(iris).tolist() == saved_model.predict(iris).tolist()
    numpy.testing.assert_allclose(retrained.predict_proba(iris), saved_model.predict_proba(iris), atol=1e-9)


# --- what load_model refuses ------------------------------------------------------------

def test_a_tampered_model_file_is_refused_before_it_is_unpickled(lesson_app, model_copy, capsys):
    joblib.dump(PrintsWhenLoaded(), model_copy / "model.joblib")
    found = hashlib.sha256((model_copy / "model.joblib").read_bytes()).hexdigest()
    expected = json.loads((model_copy / "model.json").read_text())["sha256"]
    with pytest.raises(lesson_app.ModelFileError) as refusal:
        lesson_app.load_model(model_copy / "model.joblib", model_copy / "model.json")
    message = str(refusal.value)
    assert "\n" not in message
    for part in ["model.joblib", "model.json", found, expected, "train.py"]:
        assert part in message
    assert "PAYLOAD RAN" not in capsys.readouterr().out
    # The payload is real: loading the file without the check runs it.
    joblib.load(model_copy / "model.joblib")
    assert "PAYLOAD RAN" in capsys.readouterr().out


def test_a_model_from_another_scikit_learn_version_is_refused(lesson_app, model_copy):
    forged = model_copy / "model.joblib"
    version = sklearn.__version__.encode()
    older = b"0." + b"9" * (len(version) - 2)  # same length keeps the pickle readable
    forged.write_bytes(forged.read_bytes().replace(version, older))
    metadata = json.loads((model_copy / "model.json").read_text())
    metadata["sha256"] = hashlib.sha256(forged.read_bytes()).hexdigest()
    (model_copy / "model.json").write_text(json.dumps(metadata))
    with warnings.catch_warnings():
        # Ignore warnings here, so only load_model's own rule can turn this one into an error.
        warnings.simplefilter("ignore")
        with pytest.raises(InconsistentVersionWarning, match=older.decode()):
            lesson_app.load_model(forged, model_copy / "model.json")


def test_the_model_is_loaded_once_not_per_request(monkeypatch):
    loads = []
    real_load = joblib.load

    def counting_load(*args, **kwargs):
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(joblib, "load", counting_load)
    fresh_app = import_lesson_file("04_model", "app")
    client = fresh_app.app.test_client()
    for row in ONE_OF_EACH * 3:
        assert post_rows(client, [row]).status_code == 200
    assert len(loads) == 1


def test_loading_the_model_for_a_prediction_is_several_times_the_work_of_the_prediction(lesson_app):
    row = [ONE_OF_EACH[0]]
    lesson_app.load_model().predict_proba(row)  # the first calls fill caches: count the second ones
    once = calls_made(lambda: lesson_app.model.predict_proba(row))
    each_time = calls_made(lambda: lesson_app.load_model().predict_proba(row))
    assert each_time > 2 * once, (each_time, once)


# --- the API ------------------------------------------------------------------------------

def test_home_says_which_features_to_send_and_in_which_order(lesson_client):
    response = lesson_client.get("/")
    assert response.status_code == 200
    assert response.get_json() == {"predict": "POST /predict", "features": FEATURES, "classes": CLASSES}


def test_predictions_for_the_whole_iris_set_equal_the_saved_models_own(lesson_client, saved_model):
    rows = load_iris().data
    response = post_rows(lesson_client, rows.tolist())
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert [p["label"] for p in predictions] == saved_model.predict(rows).tolist()
    assert [list(p["probabilities"]) for p in predictions] == [CLASSES] * len(rows)
    served = [list(p["probabilities"].values()) for p in predictions]
    assert served == saved_model.predict_proba(rows).tolist()


@pytest.mark.parametrize("row", ONE_OF_EACH)
def test_a_single_row_gets_the_saved_models_answer(lesson_client, saved_model, row):
    response = post_rows(lesson_client, [row])
    assert response.status_code == 200
    [prediction] = response.get_json()["predictions"]
    assert prediction["label"] == saved_model.predict([row])[0]
    assert list(prediction["probabilities"].values()) == saved_model.predict_proba([row])[0].tolist()


def test_integers_are_numbers_too(lesson_client, saved_model):
    response = post_rows(lesson_client, [[6, 3, 5, 2]])
    assert response.status_code == 200
    assert response.get_json()["predictions"][0]["label"] == saved_model.predict([[6, 3, 5, 2]])[0]


NOT_AN_OBJECT = ('send a JSON object like {"instances": [[5.1, 3.5, 1.4, 0.2]]} '
                 "with the header Content-Type: application/json")
NOT_A_LIST = '"instances" must be a list with at least one row'
BAD_ROW_0 = "row 0: expected a list of 4 numbers in this order: " + ", ".join(FEATURES)
BAD_ROW_1 = BAD_ROW_0.replace("row 0", "row 1")

BAD_REQUESTS = {
    "plain text": (dict(data="5.1,3.5,1.4,0.2", content_type="text/plain"), NOT_AN_OBJECT),
    "no body": (dict(), NOT_AN_OBJECT),
    "broken JSON": (dict(data='{"instances": [[5.1,', content_type="application/json"), NOT_AN_OBJECT),
    "JSON list, not object": (dict(json=[[5.1, 3.5, 1.4, 0.2]]), NOT_AN_OBJECT),
    "JSON null": (dict(json=None), NOT_AN_OBJECT),
    "no instances key": (dict(json={"rows": [[5.1, 3.5, 1.4, 0.2]]}), NOT_AN_OBJECT),
    "instances is text": (dict(json={"instances": "5.1,3.5,1.4,0.2"}), NOT_A_LIST),
    "instances is an object": (dict(json={"instances": {"sepal_length": 5.1}}), NOT_A_LIST),
    "no rows": (dict(json={"instances": []}), NOT_A_LIST),
    "one flat row": (dict(json={"instances": [5.1, 3.5, 1.4, 0.2]}), BAD_ROW_0),
    "three numbers": (dict(json={"instances": [[5.1, 3.5, 1.4]]}), BAD_ROW_0),
    "five numbers": (dict(json={"instances": [[5.1, 3.5, 1.4, 0.2, 0.1]]}), BAD_ROW_0),
    "empty row": (dict(json={"instances": [[]]}), BAD_ROW_0),
    "number as text": (dict(json={"instances": [[5.1, 3.5, 1.4, "0.2"]]}), BAD_ROW_0),
    "true is not a number": (dict(json={"instances": [[5.1, 3.5, 1.4, True]]}), BAD_ROW_0),
    "null value": (dict(json={"instances": [[5.1, 3.5, None, 0.2]]}), BAD_ROW_0),
    "nested list": (dict(json={"instances": [[[5.1], 3.5, 1.4, 0.2]]}), BAD_ROW_0),
    "named row": (dict(json={"instances": [dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2]))]}), BAD_ROW_0),
    "NaN": (dict(data='{"instances": [[NaN, 3.5, 1.4, 0.2]]}', content_type="application/json"), BAD_ROW_0),
    "Infinity": (dict(data='{"instances": [[5.1, -Infinity, 1.4, 0.2]]}', content_type="application/json"),
                 BAD_ROW_0),
    "huge integer": (dict(data='{"instances": [[1' + "0" * 400 + ', 3.5, 1.4, 0.2]]}',
                          content_type="application/json"), BAD_ROW_0),
    "second row bad": (dict(json={"instances": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5]]}), BAD_ROW_1),
}


@pytest.mark.parametrize("request_kwargs, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_gets_400_and_a_message_saying_what_is_wrong(lesson_client, request_kwargs, message):
    response = lesson_client.post("/predict", **request_kwargs)
    assert response.status_code == 400
    assert response.is_json
    assert response.get_json() == {"error": {"message": message}}


# --- the real server ----------------------------------------------------------------------

@pytest.mark.parametrize("command", LESSON_APP_COMMANDS.values(), ids=LESSON_APP_COMMANDS.keys())
def test_the_real_server_answers_predictions_over_http(command, saved_model):
    with running(command, cwd=LESSON) as (base_url, _server):
        response = requests.post(base_url + "/predict", json={"instances": ONE_OF_EACH}, timeout=10)
        refused = requests.post(base_url + "/predict", json={"instances": []}, timeout=10)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == saved_model.predict(ONE_OF_EACH).tolist()
    served = [list(p["probabilities"].values()) for p in predictions]
    assert served == saved_model.predict_proba(ONE_OF_EACH).tolist()
    assert refused.status_code == 400
    assert refused.json() == {"error": {"message": NOT_A_LIST}}


def lesson_files():
    """Every file in the lesson folder (caches left out) with its size and modification time."""
    found = {}
    for path in sorted(LESSON.rglob("*")):
        if path.is_file() and not {"__pycache__", ".ipynb_checkpoints"} & set(path.parts):
            stat = path.stat()
            found[str(path.relative_to(LESSON))] = (stat.st_size, stat.st_mtime_ns)
    return found


def test_running_the_notebook_writes_nothing_into_the_lesson_folder():
    """A learner's run must leave the committed model (and every other file) as it is: the notebook trains into a scratch folder."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(LESSON / "04_model.ipynb", as_version=4)
    before = lesson_files()
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(LESSON)}}).execute()
    assert lesson_files() == before
