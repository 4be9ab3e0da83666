"""Lesson 08: the models train_examples.py saves (two of penguins, one of flat prices), the engine
that serves each (the ONNX graph or scikit-learn), and app.py serving them with final_app."""
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from final_app.artifact import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE, load_engine, load_model_and_metadata
from final_app.validation import as_columns
from conftest import LESSON_APP_COMMANDS, assert_same_answers
from lesson_helpers import running, stop
from lesson_modules import import_lesson_file

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "08_own_model"
MODELS = LESSON / "models"
SPECIES_NAMES = ["island", "sex", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# Two held-out-like penguins, one with its sex unknown (null), as objects and as arrays.
SPECIES_ROWS = [["Biscoe", "female", 42.0, 13.5, 210.0, 4150.0], ["Dream", None, 41.5, 18.5, 201.0, 4000.0]]
MASS_ROWS = [["Gentoo", "Biscoe", "male", 49.1, 15.0, 228.0], ["Adelie", "Dream", None, 37.0, 18.4, 189.0]]
FLAT_NAMES = ["listed_on", "neighbourhood", "area_m2", "rooms", "description"]
# Flats the training table does not have: dates after, before and between the training ones, and
# descriptions written in other words and orders, one with words the model never saw at all.
NEW_FLATS = [
    ["2025-03-14", "Old Harbour", 62.5, 3, "Renovated sunny flat with a roof terrace and parking by the river."],
    ["2019-06-02", "Kings Bridge", 35.0, 1, "Tiny studio, needs love, no lift."],
    ["2021-03-14", "Mill Common", 120.0, 5, "Penthouse: jacuzzi, sauna, concierge!"],
    ["2022-11-11", "West Park", 80.0, 4, ""],
]
FLATS_TRAINED = "2021-01-02", "2024-12-29"  # the first and last day a training flat was listed


def import_lesson_app(monkeypatch, model_dir):
    """Import the lesson's app.py afresh with MODEL_DIR set to model_dir; return its Flask app.

    app.py sets MODEL_DIR in this process's environment, and final_app.wsgi builds its app once
    per process, when first imported. So import final_app.wsgi afresh too; monkeypatch puts the
    environment and the modules back afterwards, and the other tests' apps keep their model.
    """
    import final_app

    monkeypatch.setenv("MODEL_DIR", model_dir)
    monkeypatch.delitem(sys.modules, "final_app.wsgi", raising=False)
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


@pytest.fixture(scope="module")
def flats():
    """(model, metadata) of the committed flat-price regressor, loaded through final_app's checks."""
    return load_model_and_metadata(MODELS / "flat_prices")


@pytest.fixture()
def flats_client():
    """A test client of final_app serving the committed flat-price model."""
    from final_app.app import create_app

    return create_app({"MODEL_DIR": MODELS / "flat_prices"}).test_client()


def as_frame(rows, metadata):
    """Return rows as the DataFrame the model was fitted on (training dtypes, None as missing)."""
    import pandas as pd

    names = [feature["name"] for feature in metadata["features"]]
    dtypes = {feature["name"]: (pd.CategoricalDtype(feature["values"]) if feature["dtype"] == "category"
                                else feature["dtype"]) for feature in metadata["features"]}
    return pd.DataFrame(rows, columns=names).astype(dtypes)


def assert_close(served, own):
    """Assert the served numbers equal the model's own within scikit-learn's tolerance (see final_app.artifact)."""
    assert np.allclose(served, own, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE), (served, own)


def within_its_tolerance(difference, engine):
    """True when a difference between two probabilities (at most 1) is within the engine's stated tolerance."""
    checked = engine["checked"]
    return difference <= checked["absolute_tolerance"] + checked["relative_tolerance"]


# --- train_examples.py ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """(folder, finished process) of `python train_examples.py` run afresh into a temporary folder.

    In a fresh process, as `python train_examples.py` runs: the pickle's bytes (and so the model
    version) can depend on what else the process did before, not only on the model. And with 3
    OpenMP threads, as on a machine with 3 cores: HistGradientBoosting keeps in the model the
    count it trained with, so without train_examples' one thread the version would differ.
    """
    models = tmp_path_factory.mktemp("retrained")
    script = f"import pathlib, train_examples; train_examples.main(pathlib.Path({str(models)!r}))"
    result = subprocess.run([sys.executable, "-c", script], cwd=LESSON, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, OMP_NUM_THREADS="3"))
    assert result.returncode == 0, result.stderr
    return models, result


def test_training_prints_one_line_per_model(retrained):
    _models, result = retrained
    printed = result.stdout.splitlines()
    assert [line.split(" into ")[1].split(":")[0] for line in printed] == ["penguins/", "penguin_mass/",
                                                                           "flat_prices/"]
    assert result.stderr == ""


@pytest.mark.parametrize("folder", ["penguins", "penguin_mass", "flat_prices"])
def test_training_again_gives_the_committed_model(retrained, folder):
    models, _result = retrained
    retrained_metadata = json.loads((models / folder / "model.json").read_text())
    committed = json.loads((MODELS / folder / "model.json").read_text())
    # The same metadata, but for what the file's bytes decide: on another CPU the maths library can
    # round the trained numbers' last bit differently (test_the_training_functions_... compares
    # the answers), and so the sha256, the version made from it and the differences measured.
    # The graph's bytes differ too, and with them its sha256, its differences and its example's last digits.
    bytes_decide = ("model_version", "sha256", "checked", "engine")
    assert {key: value for key, value in retrained_metadata.items() if key not in bytes_decide} == \
        {key: value for key, value in committed.items() if key not in bytes_decide}
    assert retrained_metadata["checked"]["rows"] == committed["checked"]["rows"]
    graph_bytes_decide = ("sha256", "checked", "example_answer")
    engine, committed_engine = retrained_metadata["engine"], committed["engine"]
    assert {key: value for key, value in engine.items() if key not in graph_bytes_decide} == \
        {key: value for key, value in committed_engine.items() if key not in graph_bytes_decide}
    files = ["model.joblib", "model.json"] + (["model.onnx"] if engine["name"] == "onnx" else [])
    assert sorted(path.name for path in (models / folder).iterdir()) == files
    if engine["name"] == "onnx":
        assert engine["checked"]["rows"] == committed_engine["checked"]["rows"]
        assert within_its_tolerance(engine["checked"]["largest_difference"], engine)
        answer, committed_answer = engine["example_answer"], committed_engine["example_answer"]
        assert answer["label"] == committed_answer["label"]
        assert np.allclose(answer["probabilities"], committed_answer["probabilities"],
                           rtol=engine["checked"]["relative_tolerance"], atol=engine["checked"]["absolute_tolerance"])


def test_the_training_functions_give_the_committed_models_predictions(tmp_path, train_examples, species, mass,
                                                                     flats):
    # Within save_model's tolerance: the committed models may have been fitted on another CPU,
    # whose maths library can round the last bit differently.
    X_train, X_test, y_train, _y_test = train_examples.species_data()
    model = train_examples.penguin_species_model().fit(X_train, y_train)
    assert model.predict(X_test).tolist() == species[0].predict(X_test).tolist()
    assert_close(model.predict_proba(X_test), species[0].predict_proba(X_test))
    X_train, X_test, y_train, _y_test = train_examples.mass_data()
    model = train_examples.penguin_mass_model().fit(X_train, y_train)
    assert_close(model.predict(X_test), mass[0].predict(X_test))
    X_train, X_test, y_train, _y_test = train_examples.listings_data()
    model = train_examples.flat_price_model().fit(X_train, y_train)  # here on as many threads as there are
    assert_close(model.predict(X_test), flats[0].predict(X_test))


def test_the_listings_table_is_the_same_each_time_and_looks_like_listings(train_examples):
    import pandas as pd

    listings = train_examples.listings_table()
    pd.testing.assert_frame_equal(listings, train_examples.listings_table())
    assert len(listings) == 2000
    assert listings.columns.tolist() == FLAT_NAMES + ["price"]
    assert str(listings["listed_on"].dtype).startswith("datetime64")
    assert listings["listed_on"].between(train_examples.FIRST_DAY, pd.Timestamp("2024-12-30")).all()
    assert (listings["listed_on"] == listings["listed_on"].dt.normalize()).all()  # dates, no times
    assert listings["neighbourhood"].nunique() == 150
    assert listings["description"].nunique() > len(listings) / 2  # free text: most ads are different
    assert listings["price"].min() > 0


def test_the_flat_price_model_describes_dates_text_and_many_categories(flats):
    _model, metadata = flats
    assert metadata["task"] == "regression"
    assert metadata["input"] == "dataframe"
    features = {feature["name"]: feature for feature in metadata["features"]}
    assert list(features) == FLAT_NAMES
    assert [feature["type"] for feature in features.values()] == ["date", "category", "number", "integer", "text"]
    listed_on = features["listed_on"]
    assert listed_on["min"] < FLATS_TRAINED[0] and listed_on["max"] > FLATS_TRAINED[1]  # widened, like numbers
    assert listed_on["timezone"] is None
    assert len(features["neighbourhood"]["values"]) == 150
    assert features["description"]["max_length"] == 200  # twice the longest training ad, 100 characters
    assert features["area_m2"]["unit"] == "m²"
    assert metadata["modules"] == ["model_code.listings"]
    assert metadata["metrics"]["holdout_r2"] > 0.9


def test_the_flat_price_model_file_stays_small():
    assert (MODELS / "flat_prices" / "model.joblib").stat().st_size < 100_000


def test_the_new_dates_and_texts_are_not_in_the_training_table(train_examples):
    import pandas as pd

    X_train, _X_test, _y_train, _y_test = train_examples.listings_data()
    for listed_on, _neighbourhood, _area, _rooms, description in NEW_FLATS:
        assert pd.Timestamp(listed_on) not in set(X_train["listed_on"])
        assert description not in set(X_train["description"])


def test_model_code_turns_dates_into_numbers_and_text_into_words():
    import pandas as pd

    from model_code.listings import date_parts, words

    frame = pd.DataFrame({"listed_on": pd.to_datetime(["2025-03-14", "2021-01-04"])}, index=[7, 9])
    parts = date_parts(frame)
    assert parts.columns.tolist() == ["listed_on_year", "listed_on_month", "listed_on_day_of_week"]
    assert parts.index.tolist() == [7, 9]
    assert parts.values.tolist() == [[2025, 3, 4], [2021, 1, 0]]  # a Friday, a Monday
    assert words("Sunny flat, RENOVATED; 3 rooms!") == ["sunny", "flat", "renovated", "rooms"]


def test_the_flat_price_model_loads_in_a_fresh_python_from_the_top_folder():
    # As gunicorn loads it: a new process in the repository's top folder, nothing else imported.
    model_file = MODELS / "flat_prices" / "model.joblib"
    script = "import sys, joblib; sys.path.insert(0, ''); print(type(joblib.load(sys.argv[1])).__name__)"
    result = subprocess.run([sys.executable, "-I", "-c", script, str(model_file)], cwd=LESSON.parents[1],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Pipeline\n"


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


@pytest.mark.parametrize("folder, engine", [("penguins", "onnx"), ("penguin_mass", "sklearn"),
                                            ("flat_prices", "sklearn")])
def test_final_app_check_passes_on_the_committed_models(folder, engine, capsys):
    from final_app import check

    assert check.main(MODELS / folder) == 0
    assert f" OK, served by {engine}: sha256 and versions match" in capsys.readouterr().out


# --- the engine of each committed model ---------------------------------------------------------

def test_the_penguins_are_served_by_a_float_graph_proven_within_its_tolerance(species):
    _model, metadata = species
    engine = metadata["engine"]
    assert (engine["name"], engine["precision"]) == ("onnx", "float")
    assert engine["inputs"] == [[name, "string" if name in ("island", "sex") else "float"] for name in SPECIES_NAMES]
    checked = engine["checked"]
    assert (checked["relative_tolerance"], checked["absolute_tolerance"]) == (1e-5, 1e-6)
    assert checked["rows"] > 258  # every training row, and rows with each nullable value missing
    assert 1e-9 < checked["largest_difference"] <= checked["absolute_tolerance"]  # float32: more than scikit-learn's
    graph = (MODELS / "penguins" / "model.onnx").read_bytes()
    assert hashlib.sha256(graph).hexdigest() == engine["sha256"]
    assert metadata["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")


@pytest.mark.parametrize("folder, reason", [
    ("penguin_mass", "skl2onnx cannot convert it: InvalidInputLengthException"),
    ("flat_prices", "ONNX has no date type, and the model takes dates (listed_on)"),
])
def test_the_models_the_converter_cannot_compile_are_served_by_scikit_learn_saying_why(folder, reason):
    _model, metadata = load_model_and_metadata(MODELS / folder)
    assert metadata["engine"]["name"] == "sklearn"
    assert reason in metadata["engine"]["reason"]
    assert not (MODELS / folder / "model.onnx").exists()
    assert "onnxruntime" not in metadata["versions"]
    engine, _metadata = load_engine(MODELS / folder)
    assert engine.name == "sklearn"


def test_the_graph_gives_the_models_own_labels_for_every_penguin(train_examples, species):
    import pandas as pd

    model, metadata = species
    engine, _metadata = load_engine(MODELS / "penguins")
    assert engine.name == "onnx"
    X_train, X_test, _y_train, _y_test = train_examples.species_data()
    X = pd.concat([X_train, X_test])  # all 344, the held-out ones and those with missing values
    rows = [[None if value != value else value for value in row] for row in X.values.tolist()]  # NaN: null
    assert len(rows) == 344 and sum(None in row for row in rows) == 11
    labels, probabilities = engine.answers(as_columns(rows))
    assert labels.tolist() == model.predict(X).tolist()
    assert_same_answers([{"label": label, "probabilities": dict(zip(metadata["classes"], row))}
                         for label, row in zip(labels.tolist(), probabilities.tolist())],
                        model.predict(X), model.predict_proba(X), metadata)
    # Float32: the probabilities are close to scikit-learn's, not equal to them in every bit.
    assert not np.array_equal(probabilities, model.predict_proba(X))


def test_engine_sklearn_saves_no_graph_and_serves_the_model_itself(tmp_path, train_examples, species):
    from final_app.app import create_app
    from final_app.artifact import save_model

    model, _metadata = species
    X_train, _X_test, _y_train, _y_test = train_examples.species_data()
    compiled = save_model(model, X_train, tmp_path, name="penguins-logreg")
    assert compiled["engine"]["name"] == "onnx" and (tmp_path / "model.onnx").exists()
    metadata = save_model(model, X_train, tmp_path, name="penguins-logreg", engine="sklearn")
    assert metadata["engine"] == {"name": "sklearn", "reason": 'save_model was called with engine="sklearn"'}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.joblib", "model.json"]  # the old graph went
    client = create_app({"MODEL_DIR": tmp_path}).test_client()
    response = client.post("/predict", json={"instances": SPECIES_ROWS})
    assert response.status_code == 200
    X = as_frame(SPECIES_ROWS, metadata)
    assert_same_answers(response.get_json()["predictions"], model.predict(X), model.predict_proba(X), metadata)


# --- final_app serving the flat prices ---------------------------------------------------------

def test_final_app_serves_new_dates_and_texts_with_the_models_own_answers(flats, flats_client):
    model, metadata = flats
    instances = [NEW_FLATS[0], dict(zip(FLAT_NAMES, NEW_FLATS[1])), *NEW_FLATS[2:]]
    response = flats_client.post("/predict", json={"instances": instances})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_version"] == metadata["model_version"]
    own = model.predict(as_frame(NEW_FLATS, metadata))
    assert_close([prediction["value"] for prediction in body["predictions"]], own)


@pytest.mark.parametrize("field, value, expected", [
    ("listed_on", "2205-03-14", "instances[0].listed_on must be a date (YYYY-MM-DD) from "),
    ("listed_on", "14/03/2025", "instances[0].listed_on must be a date (YYYY-MM-DD) from "),
    ("listed_on", 20250314, "instances[0].listed_on must be a date (YYYY-MM-DD) from "),
    ("neighbourhood", "Atlantis", "instances[0].neighbourhood must be one of 150 values such as "),
    ("description", "Lovely flat. " * 20, "instances[0].description must be text of at most 200 characters"),
    ("description", None, "instances[0].description must be text of at most 200 characters"),
])
def test_final_app_refuses_flats_outside_the_schema_in_a_short_message(flats_client, field, value, expected):
    row = dict(zip(FLAT_NAMES, NEW_FLATS[0]), **{field: value})
    response = flats_client.post("/predict", json={"instances": [row]})
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert message.startswith(expected)
    assert len(message) <= 300


def test_the_flat_price_form_and_model_description_are_served(flats, flats_client):
    _model, metadata = flats
    page = flats_client.get("/")
    assert page.status_code == 200
    assert "Flat prices" in page.get_data(as_text=True)
    described = flats_client.get("/model")
    assert described.status_code == 200
    assert described.get_json()["features"] == metadata["features"]


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
    assert_same_answers(predictions, model.predict(X), model.predict_proba(X), metadata)


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
    assert_same_answers(body["predictions"], model.predict(X), model.predict_proba(X), metadata)
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


def test_app_py_serves_the_flat_prices_with_model_dir(flats):
    # A fresh Python started in the lesson's folder: app.py puts the top folder on the import path,
    # so model_code, which the model needs, is found there as under gunicorn.
    model, metadata = flats
    command = [sys.executable, "app.py"]
    with running(command, cwd=LESSON, env={"MODEL_DIR": "models/flat_prices"}, ready_path="/health") as (
            base_url, _server):
        response = requests.post(base_url + "/predict", json={"instances": NEW_FLATS}, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == metadata["model_version"]
    assert_close([p["value"] for p in body["predictions"]], model.predict(as_frame(NEW_FLATS, metadata)))


def test_app_py_imported_with_model_dir_serves_the_flat_prices(monkeypatch, flats):
    model, metadata = flats
    client = import_lesson_app(monkeypatch, str(MODELS / "flat_prices")).test_client()
    response = client.post("/predict", json={"instances": NEW_FLATS[:1]})
    assert response.status_code == 200
    assert response.get_json()["model_version"] == metadata["model_version"]
    served = [prediction["value"] for prediction in response.get_json()["predictions"]]
    assert_close(served, model.predict(as_frame(NEW_FLATS[:1], metadata)))


def test_app_py_leaves_model_dir_alone_when_it_is_set(monkeypatch, mass):
    client = import_lesson_app(monkeypatch, str(MODELS / "penguin_mass")).test_client()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["model_version"] == mass[1]["model_version"]
