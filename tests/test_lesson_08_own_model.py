"""Lesson 08: the penguin models train_examples.py saves, and app.py serving them with final_app."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from final_app.artifact import load_model_and_metadata
from conftest import LESSON_APP_COMMANDS
from lesson_helpers import running, stop
from lesson_modules import import_lesson_file

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "08_own_model"
MODELS = LESSON / "models"
SPECIES_NAMES = ["island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# Two held-out-like penguins, one with its sex unknown (null), as objects and as arrays.
SPECIES_ROWS = [["Biscoe", "female", 42.0, 13.5, 210.0, 4150.0], ["Dream", None, 41.5, 18.5, 201.0, 4000.0]]
MASS_ROWS = [["Gentoo", "Biscoe", "male", 49.1, 15.0, 228.0], ["Adelie", "Dream", None, 37.0, 18.4, 189.0]]


def import_lesson_app(monkeypatch, model_dir):
    """Import the lesson's app.py afresh with MODEL_DIR set to model_dir; return its Flask app.

    app.py sets MODEL_DIR in this process's environment, and final_app.app builds its app once
    per process, when first imported. So import final_app.app afresh too; monkeypatch puts the
    environment and the modules back afterwards, and the other tests' apps keep their model.
    """
    import final_app

    monkeypatch.setenv("MODEL_DIR", model_dir)
    monkeypatch.delitem(sys.modules, "final_app.app", raising=False)
    monkeypatch.setattr(final_app, "app", None, raising=False)  # restored with the module above
    return import_lesson_file("08_own_model", "app").app


@pytest.fixture()
def lesson_client(monkeypatch):
    """A test client for the lesson's app.py, imported with MODEL_DIR unset."""
    return import_lesson_app(monkeypatch, "").test_client()


@pytest.fixture(scope="module")
def train_examples():
    """The lesson's training module."""
    return import_lesson_file("08_own_model", "train_examples")


@pytest.fixture(scope="module")
def species():
    """(model, metadata) of the committed species classifier, loaded through final_app's checks."""
    return load_model_and_metadata(MODELS / "penguins")


@pytest.fixture(scope="module")
def mass():
    """(model, metadata) of the committed body-mass regressor, loaded through final_app's checks."""
    return load_model_and_metadata(MODELS / "penguin_mass")


def as_frame(rows, metadata):
    """Return rows as the DataFrame the model was fitted on (training dtypes, None as missing)."""
    import pandas as pd

    names = [feature["name"] for feature in metadata["features"]]
    dtypes = {feature["name"]: (pd.CategoricalDtype(feature["values"]) if feature["dtype"] == "category"
                                else feature["dtype"]) for feature in metadata["features"]}
    return pd.DataFrame(rows, columns=names).astype(dtypes)


# --- train_examples.py ------------------------------------------------------------------------

def test_training_again_gives_the_committed_models(tmp_path):
    # In a fresh process, as `python train_examples.py` runs: the pickle's bytes (and so the model
    # version) can depend on what else the process did before, not only on the model. And with 3
    # OpenMP threads, as on a machine with 3 cores: HistGradientBoosting keeps in the model the
    # count it trained with, so without train_examples' one thread the version would differ.
    script = f"import pathlib, train_examples; train_examples.main(pathlib.Path({str(tmp_path)!r}))"
    result = subprocess.run([sys.executable, "-c", script], cwd=LESSON, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS="3"))
    assert result.returncode == 0, result.stderr
    for folder in ("penguins", "penguin_mass"):
        retrained = json.loads((tmp_path / folder / "model.json").read_text())
        committed = json.loads((MODELS / folder / "model.json").read_text())
        assert retrained["model_version"] == committed["model_version"]
        assert retrained["features"] == committed["features"]
        assert sorted(path.name for path in (tmp_path / folder).iterdir()) == ["model.joblib", "model.json"]
    printed = result.stdout.splitlines()
    assert [line.split(" into ")[1].split(":")[0] for line in printed] == ["penguins/", "penguin_mass/"]
    assert result.stderr == ""


def test_the_training_functions_give_the_committed_models_predictions(tmp_path, train_examples, species, mass):
    X_train, X_test, y_train, _y_test = train_examples.species_data()
    model = train_examples.penguin_species_model().fit(X_train, y_train)
    assert model.predict_proba(X_test).tolist() == species[0].predict_proba(X_test).tolist()
    X_train, X_test, y_train, _y_test = train_examples.mass_data()
    model = train_examples.penguin_mass_model().fit(X_train, y_train)
    assert model.predict(X_test).tolist() == mass[0].predict(X_test).tolist()


def test_the_committed_models_describe_what_they_take(species, mass):
    import pandas

    species_model, species_metadata = species
    assert species_metadata["task"] == "classification"
    assert species_metadata["input"] == "dataframe"
    assert [feature["name"] for feature in species_metadata["features"]] == SPECIES_NAMES
    assert species_metadata["classes"] == species_model.classes_.tolist() == ["Adelie", "Chinstrap", "Gentoo"]
    nullable = {feature["name"]: feature["nullable"] for feature in species_metadata["features"]}
    assert nullable == {"island": False, "sex": True, "bill_length_mm": True, "bill_depth_mm": True,
                        "flipper_length_mm": True, "body_mass_g": True}
    _mass_model, mass_metadata = mass
    assert mass_metadata["task"] == "regression"
    assert [feature["dtype"] for feature in mass_metadata["features"]][:3] == ["category"] * 3
    for metadata in (species_metadata, mass_metadata):
        assert metadata["versions"]["pandas"] == pandas.__version__


@pytest.mark.parametrize("folder", ["penguins", "penguin_mass"])
def test_final_app_check_passes_on_the_committed_models(folder, capsys):
    from final_app import check

    assert check.main(MODELS / folder) == 0
    assert " OK: sha256 and versions match" in capsys.readouterr().out


# --- app.py -------------------------------------------------------------------------------------

def test_app_serves_the_species_model_by_default(species, lesson_client):
    model, metadata = species
    client = lesson_client
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json() == {"status": "ok", "model_version": metadata["model_version"]}
    instances = [dict(zip(SPECIES_NAMES, SPECIES_ROWS[0])), SPECIES_ROWS[1]]
    response = client.post("/predict", json={"instances": instances})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    X = as_frame(SPECIES_ROWS, metadata)
    assert [p["label"] for p in predictions] == model.predict(X).tolist()
    assert [list(p["probabilities"].values()) for p in predictions] == model.predict_proba(X).tolist()


def test_app_refuses_a_value_outside_the_schema_naming_it(lesson_client):
    client = lesson_client
    response = client.post("/predict", json={"instances": [["Mars", *SPECIES_ROWS[0][1:]]]})
    assert response.status_code == 400
    assert response.get_json() == {"error": {"message": 'instances[0].island must be one of "Biscoe", '
                                                        '"Dream", "Torgersen", got string "Mars"'}}
    response = client.post("/predict", json={"instances": [[None, *SPECIES_ROWS[0][1:]]]})
    assert response.status_code == 400
    assert "instances[0].island must be one of" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("command", LESSON_APP_COMMANDS.values(), ids=LESSON_APP_COMMANDS.keys())
def test_the_real_server_answers_with_the_models_own_predictions(command, species):
    model, metadata = species
    with running(command, cwd=LESSON, env={"MODEL_DIR": ""}, ready_path="/health") as (base_url, _server):
        response = requests.post(base_url + "/predict", json={"instances": SPECIES_ROWS}, timeout=10)
        page = requests.get(base_url + "/", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == metadata["model_version"]
    X = as_frame(SPECIES_ROWS, metadata)
    assert [p["label"] for p in body["predictions"]] == model.predict(X).tolist()
    assert [list(p["probabilities"].values()) for p in body["predictions"]] == model.predict_proba(X).tolist()
    assert page.status_code == 200
    assert '<option value="Torgersen">Torgersen</option>' in page.text
    assert ">not given</option>" in page.text


def test_model_dir_chooses_another_model(mass):
    model, metadata = mass
    command = [sys.executable, "app.py"]
    with running(command, cwd=LESSON, env={"MODEL_DIR": "models/penguin_mass"}, ready_path="/health") as (
            base_url, _server):
        response = requests.post(base_url + "/predict", json={"instances": MASS_ROWS}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == metadata["model_version"]
    assert [p["value"] for p in body["predictions"]] == model.predict(as_frame(MASS_ROWS, metadata)).tolist()


def test_flask_debug_does_not_turn_the_debugger_on_under_python_app_py():
    with running([sys.executable, "app.py"], cwd=LESSON, env={"FLASK_DEBUG": "1", "MODEL_DIR": ""},
                 ready_path="/health") as (base_url, server):
        response = requests.get(base_url + "/health", timeout=10)
        stop(server)
        output = server.stdout.read()
    assert response.status_code == 200
    assert "Debug mode: off" in output
    assert "Debugger is active" not in output
    assert "Restarting with" not in output


def test_app_py_leaves_model_dir_alone_when_it_is_set(monkeypatch, mass):
    client = import_lesson_app(monkeypatch, str(MODELS / "penguin_mass")).test_client()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["model_version"] == mass[1]["model_version"]
