"""final_app.app: the JSON API, the HTML form, errors, headers, settings, debug and start-up refusal."""
import io
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import requests

from conftest import assert_same_answers
from final_app.app import ConfigError, create_app, settings_from_env
from lesson_helpers import running

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "final_app" / "model"
GOOD_ROW = [5.1, 3.5, 1.4, 0.2]
NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
JSON = "application/json"


def named(row):
    """Return a list row as an object with the four feature names."""
    return dict(zip(NAMES, row))


def post_predict(client, payload):
    """POST a payload as JSON to /predict and return the response."""
    return client.post("/predict", json=payload)


def assert_matches_model(response, model, metadata, rows):
    """Assert a /predict response equals the artifact's own answers for rows, in order.

    Labels identical, probabilities within the tolerance model.json states for the engine serving it.
    """
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["model_version"] == metadata["model_version"]
    assert len(body["predictions"]) == len(rows)
    assert all(list(prediction["probabilities"]) == metadata["classes"] for prediction in body["predictions"])
    X = np.array(rows)
    assert_same_answers(body["predictions"], model.predict(X), model.predict_proba(X), metadata)


# --- predictions --------------------------------------------------------------------------------

def test_single_row_list_equals_predict_proba(client, trained):
    model, metadata = trained
    response = post_predict(client, {"instances": [GOOD_ROW]})
    assert_matches_model(response, model, metadata, [GOOD_ROW])
    assert response.get_json()["predictions"][0]["label"] == "setosa"


def test_single_row_object_equals_predict_proba(client, trained):
    model, metadata = trained
    response = post_predict(client, {"instances": [named(GOOD_ROW)]})
    assert_matches_model(response, model, metadata, [GOOD_ROW])


def test_whole_iris_set_as_lists(client, trained, iris_rows):
    model, metadata = trained
    assert_matches_model(post_predict(client, {"instances": iris_rows}), model, metadata, iris_rows)


def test_whole_iris_set_as_named_rows_in_any_key_order(client, trained, iris_rows):
    model, metadata = trained
    shuffled_keys = [dict(reversed(list(named(row).items()))) for row in iris_rows]
    response = post_predict(client, {"instances": shuffled_keys})
    assert_matches_model(response, model, metadata, iris_rows)


def test_mixed_lists_and_objects_keep_request_order(client, trained, iris_rows):
    model, metadata = trained
    rows = iris_rows[::7]
    mixed = [row if index % 2 else named(row) for index, row in enumerate(rows)]
    assert_matches_model(post_predict(client, {"instances": mixed}), model, metadata, rows)


def test_integers_and_bounds_are_accepted(client, trained):
    model, metadata = trained
    upper = [feature["max"] for feature in metadata["features"]]
    rows = [[0, 0, 0, 0], upper, [5, 3, 1, 0]]
    assert_matches_model(post_predict(client, {"instances": rows}), model, metadata, rows)


def test_max_batch_rows_accepted(trained):
    model, metadata = trained
    client = create_app({"MAX_BATCH_ROWS": 3}).test_client()
    rows = [GOOD_ROW] * 3
    assert_matches_model(post_predict(client, {"instances": rows}), model, metadata, rows)


def test_default_limit_of_10000_rows_is_served(client, trained, iris_rows):
    model, metadata = trained
    rows = (iris_rows * 67)[:10_000]
    assert_matches_model(post_predict(client, {"instances": rows}), model, metadata, rows)


def test_charset_in_content_type_is_fine(client, trained):
    model, metadata = trained
    response = client.post("/predict", data=json.dumps({"instances": [GOOD_ROW]}),
                           content_type="application/json; charset=utf-8")
    assert_matches_model(response, model, metadata, [GOOD_ROW])


# --- bad requests: one table, status and message ------------------------------------------------

def body(payload):
    """Return a payload as JSON text."""
    return json.dumps(payload)


BAD_REQUESTS = [
    # (id, content type, raw body, status, words the message must contain)
    ("empty body", JSON, "", 400, "body is empty"),
    ("malformed json", JSON, '{"instances": [[5.1, 3.5', 400, "not valid JSON"),
    ("trailing garbage", JSON, '{"instances": [[5.1, 3.5, 1.4, 0.2]]} x', 400, "not valid JSON"),
    ("single quotes", JSON, "{'instances': []}", 400, "not valid JSON"),
    ("NaN literal", JSON, '{"instances": [[NaN, 3.5, 1.4, 0.2]]}', 400, "NaN is not a JSON number"),
    ("Infinity literal", JSON, '{"instances": [[5.1, Infinity, 1.4, 0.2]]}', 400, "Infinity is not"),
    ("-Infinity literal", JSON, '{"instances": [[5.1, 3.5, -Infinity, 0.2]]}', 400, "-Infinity is not"),
    ("overflowing number", JSON, '{"instances": [[1e400, 3.5, 1.4, 0.2]]}', 400,
     "instances[0].sepal_length must be between 0 and 16 cm, got Infinity"),
    ("invalid utf-8", JSON, b'{"instances": [["\xff\xfe"]]}', 400, "not valid UTF-8"),
    ("deep nesting", JSON, "[" * 50_000 + "]" * 50_000, 400, "nested too deeply"),
    ("top level array", JSON, body([GOOD_ROW]), 400, "must be a JSON object"),
    ("top level string", JSON, body("hello"), 400, "got string"),
    ("top level null", JSON, "null", 400, "got null"),
    ("instances missing", JSON, body({"rows": [GOOD_ROW]}), 400, 'missing key "instances"'),
    ("extra top-level key", JSON, body({"instances": [GOOD_ROW], "debug": True}), 400,
     'unexpected key "debug"'),
    ("instances not a list", JSON, body({"instances": named(GOOD_ROW)}), 400,
     '"instances" must be an array of rows, got object'),
    ("instances empty", JSON, body({"instances": []}), 400, '"instances" is empty: send 1 to 10000 rows'),
    ("too many rows", JSON, body({"instances": [GOOD_ROW] * 10_001}), 413,
     '"instances" has 10001 rows, the limit is 10000'),
    ("row is a number", JSON, body({"instances": [5.1]}), 400, "instances[0] must be an array of 4"),
    ("row is a string", JSON, body({"instances": [GOOD_ROW, "5.1,3.5,1.4,0.2"]}), 400,
     "instances[1] must be an array of 4 numbers or an object"),
    ("row too short", JSON, body({"instances": [GOOD_ROW[:3]]}), 400,
     "instances[0] has 3 values, expected 4 in this order: sepal_length, sepal_width"),
    ("row too long", JSON, body({"instances": [GOOD_ROW, GOOD_ROW + [1.0]]}), 400,
     "instances[1] has 5 values, expected 4"),
    ("value is a string", JSON, body({"instances": [["5.1", 3.5, 1.4, 0.2]]}), 400,
     'instances[0].sepal_length must be a number, got string "5.1"'),
    ("value is true", JSON, body({"instances": [[5.1, True, 1.4, 0.2]]}), 400,
     "instances[0].sepal_width must be a number, got boolean true"),
    ("value is null", JSON, body({"instances": [[5.1, 3.5, None, 0.2]]}), 400,
     "instances[0].petal_length must be a number, got null"),
    ("value is a list", JSON, body({"instances": [[5.1, 3.5, 1.4, [0.2]]]}), 400,
     "instances[0].petal_width must be a number, got array"),
    ("negative value", JSON, body({"instances": [GOOD_ROW, [5.1, 3.5, -1.4, 0.2]]}), 400,
     "instances[1].petal_length must be between 0 and 14 cm, got -1.4"),
    ("millimetres not cm", JSON, body({"instances": [[51, 35, 14, 2]]}), 400,
     "instances[0].sepal_length must be between 0 and 16 cm, got 51"),
    ("huge integer", JSON, body({"instances": [[10 ** 30, 3.5, 1.4, 0.2]]}), 400,
     "instances[0].sepal_length must be between 0 and 16 cm"),
    ("object missing a field", JSON,
     body({"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}]}), 400,
     "instances[0]: missing petal_width"),
    ("object with an extra field", JSON, body({"instances": [dict(named(GOOD_ROW), colour="blue")]}),
     400, 'instances[0]: unexpected "colour"'),
    ("object with a misspelt field", JSON,
     body({"instances": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4,
                          "petal_widht": 0.2}]}), 400, 'missing petal_width; unexpected "petal_widht"'),
    ("object value is a string", JSON, body({"instances": [dict(named(GOOD_ROW), petal_width="0.2")]}),
     400, "instances[0].petal_width must be a number, got string"),
    ("text/plain", "text/plain", body({"instances": [GOOD_ROW]}), 415, "Content-Type: application/json"),
    ("form encoded", "application/x-www-form-urlencoded", "instances=1", 415, "application/json"),
    ("no content type", None, body({"instances": [GOOD_ROW]}), 415, "Content-Type: application/json"),
    ("body over the byte limit", JSON, " " * (4 * 1024 * 1024 + 1), 413,
     "over the limit of 4194304 bytes"),
]


@pytest.mark.parametrize("content_type, data, status, message",
                         [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_gets_json_error(client, content_type, data, status, message):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", data=data, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert set(response.get_json()) == {"error"}
    assert message in response.get_json()["error"]["message"]


def test_row_limit_is_configurable(client):
    small = create_app({"MAX_BATCH_ROWS": 2}).test_client()
    response = post_predict(small, {"instances": [GOOD_ROW] * 3})
    assert response.status_code == 413
    assert response.get_json()["error"]["message"].startswith('"instances" has 3 rows, the limit is 2')


def test_body_limit_is_configurable():
    small = create_app({"MAX_BODY_BYTES": 100}).test_client()
    response = post_predict(small, {"instances": [GOOD_ROW] * 10})
    assert response.status_code == 413
    assert "over the limit of 100 bytes" in response.get_json()["error"]["message"]


def test_chunked_body_over_the_limit_is_413():
    # No Content-Length: the server only finds out while reading, as with a chunked upload.
    small = create_app({"MAX_BODY_BYTES": 100}).test_client()
    data = json.dumps({"instances": [GOOD_ROW] * 20}).encode()
    response = small.post("/predict", input_stream=io.BytesIO(data),
                          headers={"Content-Type": JSON, "Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert "over the limit of 100 bytes" in response.get_json()["error"]["message"]


# --- other paths and methods --------------------------------------------------------------------

@pytest.mark.parametrize("method, path, status, message", [
    ("get", "/predict", 405, "GET is not allowed on /predict; use OPTIONS, POST"),
    ("put", "/predict", 405, "PUT is not allowed on /predict"),
    ("delete", "/health", 405, "DELETE is not allowed on /health; use GET, HEAD, OPTIONS"),
    ("post", "/model", 405, "POST is not allowed on /model"),
    ("get", "/predictions", 404, "no such path /predictions"),
    ("get", "/admin/../etc/passwd", 404, "no such path"),
    ("post", "/v1/predict", 404, "/openapi.json"),
])
def test_unknown_paths_and_methods_are_json(client, method, path, status, message):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert message in response.get_json()["error"]["message"]
    if status == 405:
        assert "Allow" in response.headers


def test_a_long_path_gets_a_short_message(client):
    response = client.get("/" + "x" * 4000)
    assert response.status_code == 404
    message = response.get_json()["error"]["message"]
    assert message == f"no such path /{'x' * 96}...: the API's paths are listed in /openapi.json"


def test_health(client, trained):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "model_version": trained[1]["model_version"]}


def test_model_metadata_is_the_json_file(client):
    response = client.get("/model")
    assert response.status_code == 200
    assert response.get_json() == json.loads((MODEL_DIR / "model.json").read_text())


@pytest.mark.parametrize("path", ["/", "/health", "/predict", "/nowhere", "/openapi.json"])
def test_security_headers_everywhere(client, path):
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "'unsafe-inline'" not in csp  # default-src 'none' forbids scripts
    assert "default-src 'none'" in csp


# --- the HTML form ------------------------------------------------------------------------------

def test_form_page_has_labelled_number_inputs(client):
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert '<html lang="en">' in html
    assert '<form method="post" action="/"' in html
    for name in NAMES:
        assert f'name="{name}" id="{name}"' in html
        assert f'<label for="{name}">' in html
    assert html.count('type="number" step="any"') == 4
    assert html.count("(cm)</label>") == 4
    assert '<button type="submit">' in html
    assert "<script" not in html and "style=" not in html


def test_form_submit_shows_species_and_probabilities(client, trained):
    model, metadata = trained
    response = client.post("/", data={"sepal_length": "6.7", "sepal_width": "3.0",
                                      "petal_length": "5.2", "petal_width": "2.3"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    probabilities = model.predict_proba([[6.7, 3.0, 5.2, 2.3]])[0]
    label = model.predict([[6.7, 3.0, 5.2, 2.3]])[0]
    result = html[html.index('id="result"'):]
    assert f'<strong class="label">{label}</strong>' in result
    for species, probability in zip(metadata["classes"], probabilities):
        assert f'<th scope="row">{species}</th><td>{probability * 100:.1f} %</td>' in result
    assert 'value="6.7"' in html  # the typed values stay in the form


@pytest.mark.parametrize("field, typed, message", [
    ("sepal_length", "", "Enter the sepal length in cm."),
    ("sepal_width", "abc", "Enter a number in cm, like 3.5."),
    ("petal_length", "-1", "Enter a number from 0 to 14 cm."),
    ("petal_width", "25", "Enter a number from 0 to 5 cm."),
    ("petal_width", "nan", "Enter a number from 0 to 5 cm."),
    ("sepal_length", "inf", "Enter a number from 0 to 16 cm."),
])
def test_form_bad_field_rerenders_with_message_at_the_field(client, field, typed, message):
    values = {"sepal_length": "5.1", "sepal_width": "3.5", "petal_length": "1.4", "petal_width": "0.2"}
    values[field] = typed
    response = client.post("/", data=values)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'<p class="error" id="{field}-error">{message}</p>' in html
    assert f'aria-invalid="true" aria-describedby="{field}-error {field}-hint"' in html
    assert html.count('aria-invalid="true"') == 1
    assert 'id="result"' not in html
    for name, text in values.items():
        assert f'id="{name}" value="{text}"' in html


def test_form_escapes_what_was_typed(client):
    response = client.post("/", data={"sepal_length": '"><script>alert(1)</script>'})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "<script>" not in html
    assert "&#34;&gt;&lt;script&gt;" in html


def test_stylesheet_is_served(client):
    with client.get("/static/style.css") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/css"
        assert "focus-visible" in response.get_data(as_text=True)


# --- debug is never on, and a failure is never a traceback ---------------------------------------

def fail(*args, **kwargs):
    """Stand in for the model and fail the way a bug would."""
    raise RuntimeError("planted failure\nwith a second line")


def test_debug_stays_off_and_500_is_plain_json(monkeypatch, capsys):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = create_app({"DEBUG": True, "PROPAGATE_EXCEPTIONS": None})
    assert app.debug is False
    monkeypatch.setattr(app.extensions["final_app.predictor"], "predict", fail)
    response = post_predict(app.test_client(), {"instances": [GOOD_ROW]})
    assert response.status_code == 500
    assert response.get_json() == {"error": {"message": "unexpected error in the server; it has been logged"}}
    page = app.test_client().post("/", data=dict(zip(NAMES, map(str, GOOD_ROW))))
    assert page.status_code == 500
    for text in (response.get_data(as_text=True), page.get_data(as_text=True)):
        assert "Traceback" not in text and "planted" not in text and "Werkzeug Debugger" not in text


def test_unexpected_error_is_logged_with_its_traceback_and_no_raw_line_break(app, client, monkeypatch):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    monkeypatch.setattr(app.extensions["final_app.predictor"], "predict", fail)
    logging.getLogger("final_app").addHandler(handler)
    try:
        response = post_predict(client, {"instances": [GOOD_ROW]})
    finally:
        logging.getLogger("final_app").removeHandler(handler)
    assert response.status_code == 500
    [record] = [record for record in records if record.levelno == logging.ERROR]
    line = record.getMessage()
    assert line.startswith("unexpected method=POST path=/predict status=500 ")
    assert 'message="planted failure\\nwith a second line" error=RuntimeError at="' in line
    assert "test_app.py" in line and "\n" not in line
    assert record.exc_info is not None  # the formatter writes the whole traceback (tests/test_log_lines.py)
    assert response.get_json()["error"]["message"] == "unexpected error in the server; it has been logged"


def test_debug_off_under_flask_debug_environment(monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert create_app().debug is False


# --- settings -----------------------------------------------------------------------------------

def test_settings_defaults():
    settings = settings_from_env({})
    assert settings == {"MODEL_DIR": None, "MAX_BATCH_ROWS": 10_000,
                        "MAX_BODY_BYTES": 4 * 1024 * 1024, "LOG_LEVEL": "INFO",
                        # the options for an app open to the internet (test_public.py): all off
                        "API_KEYS": (), "CORS_ORIGINS": (), "REQUEST_IDS": False, "PREDICTION_LOG": "off"}


def test_settings_from_environment(tmp_path):
    settings = settings_from_env({"MODEL_DIR": str(tmp_path), "MAX_BATCH_ROWS": "50",
                                  "MAX_BODY_BYTES": "2048", "LOG_LEVEL": "warning"})
    assert settings == {"MODEL_DIR": str(tmp_path), "MAX_BATCH_ROWS": 50,
                        "MAX_BODY_BYTES": 2048, "LOG_LEVEL": "WARNING",
                        "API_KEYS": (), "CORS_ORIGINS": (), "REQUEST_IDS": False, "PREDICTION_LOG": "off"}


@pytest.mark.parametrize("name, value", [
    ("MAX_BATCH_ROWS", "ten"), ("MAX_BATCH_ROWS", "0"), ("MAX_BODY_BYTES", "-5"),
    ("MAX_BODY_BYTES", "1.5"), ("LOG_LEVEL", "loud"),
])
def test_bad_setting_is_refused_with_its_name(name, value):
    with pytest.raises(ConfigError, match=name) as caught:
        settings_from_env({name: value})
    assert repr(value) in str(caught.value)


def test_env_limit_reaches_the_app(monkeypatch):
    monkeypatch.setenv("MAX_BATCH_ROWS", "1")
    response = post_predict(create_app().test_client(), {"instances": [GOOD_ROW] * 2})
    assert response.status_code == 413
    assert response.get_json()["error"]["message"].startswith('"instances" has 2 rows, the limit is 1')


# --- the real thing: gunicorn, and refusing to start ---------------------------------------------

def child_env(**extra):
    """Return an environment for a child Python that can import final_app from the repo root."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("FLASK_DEBUG", None)
    return env


def chunked(data):
    """Yield data in small pieces, so requests sends it chunked, with no Content-Length."""
    for start in range(0, len(data), 100):
        yield data[start:start + 100]


def test_gunicorn_serves_the_app():
    gunicorn = str(pathlib.Path(sys.executable).parent / "gunicorn")
    command = [gunicorn, "--workers", "2", "--preload", "--bind", "127.0.0.1:{port}", "final_app.wsgi:app"]
    env = child_env(MAX_BODY_BYTES="1000")
    small = json.dumps({"instances": [GOOD_ROW] * 5}).encode()
    large = json.dumps({"instances": [GOOD_ROW] * 50}).encode()
    with running(command, cwd=ROOT, env=env, ready_path="/health") as (base_url, process):
        health = requests.get(base_url + "/health", timeout=5)
        predicted = requests.post(base_url + "/predict", json={"instances": [GOOD_ROW]}, timeout=5)
        bad = requests.post(base_url + "/predict", data="{", timeout=5, headers={"Content-Type": JSON})
        chunked_small = requests.post(base_url + "/predict", data=chunked(small), timeout=5,
                                      headers={"Content-Type": JSON})
        chunked_large = requests.post(base_url + "/predict", data=chunked(large), timeout=5,
                                      headers={"Content-Type": JSON})
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert predicted.status_code == 200 and predicted.json()["predictions"][0]["label"] == "setosa"
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    assert chunked_small.status_code == 200 and len(chunked_small.json()["predictions"]) == 5
    assert chunked_large.status_code == 413
    assert "over the limit of 1000 bytes" in chunked_large.json()["error"]["message"]


@pytest.fixture
def tampered_model_dir(tmp_path):
    """A temp copy of the model folder whose joblib file has one byte changed."""
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    data = bytearray((copy / "model.joblib").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.joblib").write_bytes(bytes(data))
    return copy


@pytest.fixture
def old_sklearn_model_dir(tmp_path):
    """A temp copy of the model folder whose metadata says another scikit-learn trained it."""
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    metadata = json.loads((copy / "model.json").read_text())
    metadata["versions"]["scikit-learn"] = "1.7.2"
    (copy / "model.json").write_text(json.dumps(metadata))
    return copy


def output_lines(result):
    """Return the non-empty lines a finished child printed on stdout and stderr."""
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_import_refuses_a_tampered_model_with_one_line(tampered_model_dir):
    result = subprocess.run([sys.executable, "-c", "import final_app.wsgi"], capture_output=True,
                            text=True, env=child_env(MODEL_DIR=str(tampered_model_dir)), timeout=60)
    lines = output_lines(result)
    assert result.returncode == 4
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("CRITICAL final_app: refusing to start: model check failed for ")
    assert str(tampered_model_dir / "model.joblib") in line
    expected = json.loads((tampered_model_dir / "model.json").read_text())["sha256"]
    assert f"sha256 expected {expected}, found " in line
    assert "make train" in line


def test_import_refuses_a_version_mismatch_with_one_line(old_sklearn_model_dir):
    result = subprocess.run([sys.executable, "-c", "import final_app.wsgi"], capture_output=True,
                            text=True, env=child_env(MODEL_DIR=str(old_sklearn_model_dir)), timeout=60)
    lines = output_lines(result)
    assert result.returncode == 4
    assert lines == [f"CRITICAL final_app: refusing to start: model check failed for "
                     f"{old_sklearn_model_dir / 'model.json'}: scikit-learn version expected 1.7.2, "
                     "found 1.9.1; install the pinned versions (pip install -r requirements.txt) or "
                     "re-train and save the model again (for the iris model: make train)"]


@pytest.mark.parametrize("preload", [True, False], ids=["preload", "no-preload"])
def test_gunicorn_stops_on_a_tampered_model(tampered_model_dir, tmp_path, preload):
    gunicorn = str(pathlib.Path(sys.executable).parent / "gunicorn")
    # gunicorn reads ./gunicorn.conf.py unless told another file, and ours preloads: give it none.
    (tmp_path / "empty.conf.py").write_text("")
    command = [gunicorn, "--config", str(tmp_path / "empty.conf.py"), "--workers", "2", "--bind", "127.0.0.1:0",
               "final_app.wsgi:app"]
    if preload:
        command.insert(1, "--preload")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=child_env(MODEL_DIR=str(tampered_model_dir)))
    ours = [line for line in output_lines(result) if "final_app" in line]
    # gunicorn stops either way: no loop of workers failing the same way. With --preload (the
    # Procfile's config) the master loads the app itself and exits with its status, 4, at once.
    # Without, a worker exits with 4 and gunicorn's arbiter halts saying "App failed to load"; when
    # the other worker has exited with 4 too by then, reaping it while halting raises the same
    # HaltServer again (arbiter.py: halt, stop, reap_workers), and gunicorn exits with 1 and that
    # traceback instead.
    output = result.stdout + result.stderr
    assert len(ours) >= 1 and all("refusing to start: model check failed" in line for line in ours)
    if preload:
        assert result.returncode == 4
        assert "App failed to load" not in output and "Traceback" not in output
    else:
        assert result.returncode in (1, 4) and "App failed to load" in output


def test_chunked_body_of_exactly_the_limit_is_read_whole(trained):
    data = json.dumps({"instances": [GOOD_ROW]}).encode()
    exact = create_app({"MAX_BODY_BYTES": len(data)}).test_client()
    response = exact.post("/predict", input_stream=io.BytesIO(data),
                          headers={"Content-Type": JSON, "Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert_matches_model(response, *trained, [GOOD_ROW])


def test_chunked_body_cut_at_the_limit_would_be_valid_json_but_is_413():
    data = json.dumps({"instances": [GOOD_ROW]}).encode()
    small = create_app({"MAX_BODY_BYTES": len(data)}).test_client()
    response = small.post("/predict", input_stream=io.BytesIO(data + b"   "),
                          headers={"Content-Type": JSON, "Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413


@pytest.mark.parametrize("item", [b"[]", b'""', b"1", b"{}"])
def test_a_hostile_body_costs_about_its_own_size_in_memory(client, item):
    import tracemalloc

    # Four MiB of tiny values would be twenty to forty times that as Python objects.
    body = b'{"instances": [' + b",".join([item] * ((4 * 2**20 - 100) // (len(item) + 1))) + b"]}"
    client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})  # everything imported and warm
    tracemalloc.start()
    try:
        response = client.post("/predict", data=body, content_type="application/json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.get_json()["error"]["message"].startswith("the request body holds more values than")
    assert peak < 3 * len(body)  # the body and the test client's copy of it
