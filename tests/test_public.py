"""final_app/public.py: API keys, CORS, request ids and the prediction log, each off by default and tested on and off."""
import io
import logging
import re
import subprocess
import sys

import pytest
import requests
import schemathesis

from conftest import GUNICORN, ROOT
from final_app import public
from final_app.app import LOG, ConfigError, create_app, settings_from_env
from lesson_helpers import running

GOOD_ROW = [5.1, 3.5, 1.4, 0.2]
KEY = "test-key-0123456789abcdef"
OTHER_KEY = "another-key-ABCDEFGHIJ0123"
# Close to KEY, so a log that held part of what was sent would show it.
WRONG_KEY = "test-key-0123456789abcdeX"
ORIGIN = "http://127.0.0.1:8765"
STRANGER = "http://127.0.0.1:8766"
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def client_with(monkeypatch, **env):
    """A test client for final_app built with these environment variables set, as gunicorn would build it."""
    for name in ("API_KEYS", "CORS_ORIGINS", "REQUEST_IDS", "PREDICTION_LOG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return create_app().test_client()


def predict(client, headers=None, body=None):
    """POST /predict with one good row (or body), and these headers."""
    return client.post("/predict", json=body or {"instances": [GOOD_ROW]}, headers=headers or {})


def bearer(key):
    """The Authorization header for a key."""
    return {"Authorization": f"Bearer {key}"}


def assert_json_error(response, status):
    """The API's error shape, with the security headers; return the message."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    for name in SECURITY_HEADERS:
        assert name in response.headers
    return response.get_json()["error"]["message"]


# --- settings -----------------------------------------------------------------------------------

def test_every_option_is_off_by_default_and_when_empty():
    for environ in ({}, {"API_KEYS": "", "CORS_ORIGINS": "", "REQUEST_IDS": "", "PREDICTION_LOG": ""}):
        settings = settings_from_env(environ)
        assert (settings["API_KEYS"], settings["CORS_ORIGINS"], settings["REQUEST_IDS"],
                settings["PREDICTION_LOG"]) == ((), (), False, "off")


def test_settings_are_read_from_the_environment():
    settings = settings_from_env({"API_KEYS": f"{KEY}, {OTHER_KEY}", "CORS_ORIGINS": f"{ORIGIN} https://example.org",
                                  "REQUEST_IDS": "on", "PREDICTION_LOG": "With-Data"})
    assert settings["API_KEYS"] == (KEY, OTHER_KEY)
    assert settings["CORS_ORIGINS"] == (ORIGIN, "https://example.org")
    assert settings["REQUEST_IDS"] is True
    assert settings["PREDICTION_LOG"] == "with-data"


@pytest.mark.parametrize("name, value", [
    ("API_KEYS", "short"), ("API_KEYS", "a key with spaces inside,but-commas-split-it-x"),
    ("API_KEYS", "ключ-ключ-ключ-ключ-ключ"), ("API_KEYS", "quote\"in-the-key-0123456"),
    ("CORS_ORIGINS", "*"), ("CORS_ORIGINS", "http://127.0.0.1:8765/"), ("CORS_ORIGINS", "127.0.0.1:8765"),
    ("CORS_ORIGINS", "https://example.org/path"), ("CORS_ORIGINS", "ftp://example.org"),
    ("REQUEST_IDS", "maybe"), ("PREDICTION_LOG", "everything"),
])
def test_an_unusable_value_is_refused_with_its_name(name, value):
    with pytest.raises(ConfigError, match=name) as caught:
        settings_from_env({name: value})
    if name == "API_KEYS":
        assert value not in str(caught.value)  # the message is logged: never a key in it
        for part in value.split(","):
            assert part not in str(caught.value)


def test_an_unusable_key_stops_the_app_with_status_4_and_one_line_without_the_key():
    secret = 'almost-a-key-but-it-has-"quotes"'
    result = subprocess.run([sys.executable, "-c", "import final_app.wsgi"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "API_KEYS": secret}, timeout=60)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 4
    assert len(lines) == 1 and lines[0].startswith("CRITICAL final_app: refusing to start: API_KEYS: key 1 ")
    assert "almost-a-key" not in lines[0] and "quotes" not in lines[0]


# --- everything off: today's behaviour ----------------------------------------------------------

def test_with_every_option_off_the_api_is_open_and_adds_no_header(monkeypatch, logged):
    client = client_with(monkeypatch)
    response = predict(client, {"Origin": ORIGIN, "X-Request-ID": "given-by-the-router-1"})
    assert response.status_code == 200
    for name in ("X-Request-ID", "Access-Control-Allow-Origin", "Vary", "WWW-Authenticate"):
        assert name not in response.headers
    preflight = client.options("/predict", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200  # Flask's own OPTIONS answer: no CORS headers, so a browser refuses
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert client.get("/").status_code == 200 and b"<form" in client.get("/").data
    assert "prediction " not in logged.getvalue() and "request_id=" not in logged.getvalue()


# --- API keys -----------------------------------------------------------------------------------

@pytest.fixture
def keyed(monkeypatch):
    """A client for final_app with two API keys."""
    return client_with(monkeypatch, API_KEYS=f"{KEY},{OTHER_KEY}")


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
def test_each_key_is_let_in(keyed, key):
    response = predict(keyed, bearer(key))
    assert response.status_code == 200
    assert response.get_json()["predictions"][0]["label"] == "setosa"


def test_the_scheme_is_not_case_sensitive(keyed):
    assert predict(keyed, {"Authorization": f"bearer {KEY}"}).status_code == 200


def test_no_key_is_401_with_a_challenge(keyed):
    response = predict(keyed)
    message = assert_json_error(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="predict"'
    assert message == "this API needs a key: send the header Authorization: Bearer <key>"


BAD_AUTHORIZATIONS = {
    "wrong key": (f"Bearer {WRONG_KEY}", "invalid_token"),
    "a key with odd characters": ("Bearer caf\xe9 \x7f<script>", "invalid_token"),
    "Basic": ("Basic dXNlcjpwYXNz", "invalid_request"),
    "no key": ("Bearer", "invalid_request"),
    "only spaces": ("Bearer    ", "invalid_request"),
    "the key alone": (KEY, "invalid_request"),
    "oversized": ("Bearer " + "k" * 10_000, "invalid_request"),
}


@pytest.mark.parametrize("header, error", BAD_AUTHORIZATIONS.values(), ids=BAD_AUTHORIZATIONS.keys())
def test_a_bad_authorization_header_is_401_json(keyed, header, error):
    response = predict(keyed, {"Authorization": header})
    assert_json_error(response, 401)
    assert response.headers["WWW-Authenticate"] == f'Bearer realm="predict", error="{error}"'


def test_the_key_is_checked_before_the_body_is_read(keyed):
    response = keyed.post("/predict", data=b"not json at all", content_type="text/plain")
    assert_json_error(response, 401)


def test_every_key_is_compared_every_time(monkeypatch):
    client = client_with(monkeypatch, API_KEYS=f"{KEY},{OTHER_KEY},third-key-0123456789")
    compared = []
    real = public.hmac.compare_digest
    monkeypatch.setattr(public.hmac, "compare_digest", lambda a, b: compared.append(len(a)) or real(a, b))
    for key in (KEY, WRONG_KEY, "x" * 3):
        predict(client, bearer(key))
    # Three keys, three requests: nine comparisons of equal-length digests, even after a match.
    assert compared == [32] * 9


@pytest.mark.parametrize("path", ["/health", "/openapi.json"])
def test_the_other_endpoints_stay_open(keyed, path):
    assert keyed.get(path).status_code == 200


def test_the_models_metadata_needs_a_key_too(keyed, trained):
    # It tells about the training data: each feature's range and every category value seen.
    message = assert_json_error(keyed.get("/model"), 401)
    assert message == "this API needs a key: send the header Authorization: Bearer <key>"
    assert_json_error(keyed.get("/model", headers=bearer(WRONG_KEY)), 401)
    response = keyed.get("/model", headers=bearer(OTHER_KEY))
    assert response.status_code == 200
    assert response.get_json() == trained[1]


def test_with_keys_set_the_page_has_no_form_and_says_why(keyed):
    page = keyed.get("/")
    assert page.status_code == 200
    assert b"<form" not in page.data
    assert b"This service needs an API key, so it has no form here" in page.data
    assert keyed.post("/", data={"sepal_length": "5"}).status_code == 405


def test_no_key_is_ever_logged(monkeypatch, logged):
    client = client_with(monkeypatch, API_KEYS=f"{KEY},{OTHER_KEY}", PREDICTION_LOG="with-data")
    for header in [f"Bearer {KEY}", f"Bearer {OTHER_KEY}", *(value for value, _ in BAD_AUTHORIZATIONS.values())]:
        predict(client, {"Authorization": header})
        predict(client, {"Authorization": header}, body={"instances": []})
    text = logged.getvalue()
    assert text.count("prediction ") == 2 * (2 + len(BAD_AUTHORIZATIONS))
    for secret in (KEY, OTHER_KEY, WRONG_KEY, KEY[:12], KEY[-12:], "k" * 100, "dXNlcjpwYXNz"):
        assert secret not in text


# --- CORS ---------------------------------------------------------------------------------------

@pytest.fixture
def cors(monkeypatch):
    """A client for final_app that lets pages on ORIGIN call it."""
    return client_with(monkeypatch, CORS_ORIGINS=ORIGIN, API_KEYS=KEY)


def preflight(client, origin=ORIGIN, method="POST", headers="content-type, authorization", path="/predict"):
    """Send the OPTIONS request a browser sends before a cross-origin POST with JSON and a key."""
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=asked)


def test_a_preflight_from_a_listed_origin_is_answered(cors):
    response = preflight(cors)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "Origin" in response.headers["Vary"]
    assert response.data == b""
    for name in SECURITY_HEADERS:
        assert name in response.headers


REFUSED_PREFLIGHTS = {
    "an origin not listed": dict(origin=STRANGER),
    "a look-alike origin": dict(origin=ORIGIN + ".evil.example"),
    "the null origin": dict(origin="null"),
    "PUT": dict(method="PUT"),
    "DELETE": dict(method="DELETE"),
    "a header not allowed": dict(headers="content-type, x-custom"),
    "a cookie header": dict(headers="cookie"),
}


@pytest.mark.parametrize("asked", REFUSED_PREFLIGHTS.values(), ids=REFUSED_PREFLIGHTS.keys())
def test_a_preflight_we_do_not_allow_is_a_403_in_json(cors, asked):
    response = preflight(cors, **asked)
    assert_json_error(response, 403)
    if asked.get("origin"):
        assert "Access-Control-Allow-Origin" not in response.headers


def test_a_listed_origin_may_read_answers_and_errors_and_others_get_nothing(cors):
    answer = predict(cors, {"Origin": ORIGIN, **bearer(KEY)})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer.headers["Access-Control-Expose-Headers"] == "X-Request-ID"
    refused = predict(cors, {"Origin": ORIGIN})
    assert_json_error(refused, 401)
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # so the page can show the message
    stranger = predict(cors, {"Origin": STRANGER, **bearer(KEY)})
    assert stranger.status_code == 200  # the server answers; the browser keeps it from the page
    assert "Access-Control-Allow-Origin" not in stranger.headers
    assert "Origin" in stranger.headers["Vary"]


def test_the_page_and_unknown_paths_get_no_cors_headers(cors):
    assert "Access-Control-Allow-Origin" not in cors.get("/", headers={"Origin": ORIGIN}).headers
    missing = preflight(cors, path="/nowhere")
    assert_json_error(missing, 404)


# --- request ids --------------------------------------------------------------------------------

@pytest.fixture
def with_ids(monkeypatch):
    """A client for final_app with request ids on."""
    return client_with(monkeypatch, REQUEST_IDS="on")


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_the_routers_request_id_is_sent_back(with_ids):
    given = "5f3c2a1e-7b9d-4c8e-a6f0-1d2e3f4a5b6c"
    for response in (predict(with_ids, {"X-Request-ID": given}), with_ids.get("/nowhere", headers={"X-Request-ID": given})):
        assert response.headers["X-Request-ID"] == given


# Heroku's router keeps a client's X-Request-ID only if it is 20 to 200 ASCII letters, digits or
# + / = - (Dev Center, "HTTP Request IDs"), else it makes a new one: final_app follows the same rule.
KEPT_IDS = {"20 characters": "a" * 20, "200 characters": "b" * 200, "a UUID": "5f3c2a1e-7b9d-4c8e-a6f0-1d2e3f4a5b6c",
            "every character allowed": "AZaz09+/=-" * 2}
REPLACED_IDS = {
    "none": None, "empty": "", "19 characters": "a" * 19, "201 characters": "b" * 201,
    "a dot": "request.id.0123456789", "an underscore": "request_id_0123456789", "a colon": "request:id:0123456789",
    "a space": "has space in it 0123456789", "a line break": "line\\nbreak=injected-0123456789",
    "a quote": 'quote"inside-it-0123456789', "non-ASCII": "requ\xeate-id-0123456789",
}


@pytest.mark.parametrize("given", KEPT_IDS.values(), ids=KEPT_IDS.keys())
def test_a_request_id_the_router_would_keep_is_kept(with_ids, given):
    response = predict(with_ids, {"X-Request-ID": given})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == given


@pytest.mark.parametrize("given", REPLACED_IDS.values(), ids=REPLACED_IDS.keys())
def test_a_missing_or_odd_request_id_is_replaced_by_a_new_uuid(with_ids, given):
    response = predict(with_ids, {} if given is None else {"X-Request-ID": given})
    assert response.status_code == 200
    assert UUID.fullmatch(response.headers["X-Request-ID"])


def test_every_log_line_about_a_request_carries_its_id(monkeypatch, with_ids, logged):
    predict(with_ids, {"X-Request-ID": "id-of-a-bad-request-1"}, body={"instances": [[1, 2]]})
    app = with_ids.application
    monkeypatch.setattr(app.extensions["final_app.predictor"], "predict", lambda X: 1 / 0)
    assert predict(with_ids, {"X-Request-ID": "id-of-a-failing-one-1"}).status_code == 500
    lines = logged.getvalue().splitlines()
    assert lines[0].startswith("INFO final_app: rejected method=POST path=/predict status=400 message=")
    assert lines[0].endswith(" request_id=id-of-a-bad-request-1")
    assert lines[1].startswith("ERROR final_app: unexpected method=POST path=/predict status=500 ")
    # The error's line, then a line per line of its traceback: every one with the request's id.
    assert all(line.endswith(" request_id=id-of-a-failing-one-1") for line in lines[1:])
    assert all(line.startswith("ERROR final_app: traceback line=") for line in lines[2:]) and len(lines) > 3


# --- the prediction log -------------------------------------------------------------------------

LINE = re.compile(r"INFO final_app: prediction model_version=(\S+) rows=(\S+) status=(\d+) "
                  r"duration_ms=(\d+\.\d\d)( instances=.*)? request_id=(\S+)")


def prediction_lines(logged):
    """The prediction log's lines, each as a regular-expression match."""
    return [LINE.fullmatch(line) for line in logged.getvalue().splitlines() if " prediction " in line]


def test_one_line_per_prediction_without_the_data(monkeypatch, logged, trained):
    client = client_with(monkeypatch, PREDICTION_LOG="on")
    predict(client, {"X-Request-ID": "first-request-id-0001"}, body={"instances": [GOOD_ROW, GOOD_ROW]})
    predict(client, {"X-Request-ID": "second-request-id-002"}, body={"instances": [[1, 2]]})
    client.get("/health")
    first, second = prediction_lines(logged)
    version = trained[1]["model_version"]
    assert first.group(1, 2, 3, 5, 6) == (version, "2", "200", None, "first-request-id-0001")
    assert second.group(1, 2, 3, 5, 6) == (version, "-", "400", None, "second-request-id-002")
    assert "5.1" not in logged.getvalue() and "setosa" not in logged.getvalue()


def test_with_data_the_line_holds_the_rows_and_the_predictions(monkeypatch, logged):
    client = client_with(monkeypatch, PREDICTION_LOG="with-data")
    response = predict(client)
    (line,) = prediction_lines(logged)
    assert response.headers["X-Request-ID"] == line.group(6)  # the log turns request ids on
    assert line.group(5) == (' instances="[[5.1,3.5,1.4,0.2]]" predictions="[{\\"label\\":\\"setosa\\",'
                             '\\"probabilities\\":{' + line.group(5).split("probabilities\\\":{")[1])


# --- the OpenAPI document -----------------------------------------------------------------------

def test_the_document_shows_the_key_and_the_request_id_only_when_on(monkeypatch):
    document = client_with(monkeypatch).get("/openapi.json").get_json()
    assert "401" not in document["paths"]["/predict"]["post"]["responses"]
    assert "securitySchemes" not in document["components"]
    document = client_with(monkeypatch, API_KEYS=KEY, REQUEST_IDS="on").get("/openapi.json").get_json()
    schemathesis.openapi.from_dict(document).validate()
    operation = document["paths"]["/predict"]["post"]
    assert operation["security"] == document["paths"]["/model"]["get"]["security"] == [{"apiKey": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    for responses in [op["responses"] for ops in document["paths"].values() for op in ops.values()]:
        assert all("X-Request-ID" in response["headers"] for response in responses.values())


# --- the real thing: gunicorn on the loopback -----------------------------------------------------

def test_under_gunicorn_keys_ids_and_the_log_work_and_an_oversized_header_is_a_4xx(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "API_KEYS": KEY, "PREDICTION_LOG": "on", "MODEL_DIR": ""}
    command = [GUNICORN, "--bind", "127.0.0.1:{port}", "--workers", "1", "final_app.wsgi:app"]
    with running(command, cwd=tmp_path, env=env, ready_path="/health") as (base_url, server):
        body = {"instances": [GOOD_ROW]}
        good = requests.post(base_url + "/predict", json=body, headers=bearer(KEY), timeout=10)
        wrong = requests.post(base_url + "/predict", json=body, headers=bearer(WRONG_KEY), timeout=10)
        huge = requests.post(base_url + "/predict", json=body, headers=bearer("k" * 9000), timeout=10)
    output = server.stdout.read()
    assert good.status_code == 200 and UUID.fullmatch(good.headers["X-Request-ID"])
    assert wrong.status_code == 401 and wrong.json()["error"]["message"].startswith("this key is not valid")
    # gunicorn refuses a header line over 8190 bytes itself (limit_request_field_size), before the
    # app: 431 Request Header Fields Too Large, in gunicorn's own plain text.
    assert huge.status_code == 431
    assert f"status=200 duration_ms=" in output and f"request_id={good.headers['X-Request-ID']}" in output
    assert KEY not in output and WRONG_KEY not in output


def test_under_the_procfiles_config_a_logged_prediction_gets_one_line_not_two():
    command = [GUNICORN, "--config", "gunicorn.conf.py", "final_app.wsgi:app"]
    env = {"PREDICTION_LOG": "on", "API_KEYS": KEY, "WEB_CONCURRENCY": "1", "MODEL_DIR": ""}
    with running(command, cwd=ROOT, env=env, ready_path="/health") as (base_url, server):
        ids = {"good": "one-line-per-prediction-200", "refused": "one-line-per-prediction-401"}
        good = requests.post(base_url + "/predict", json={"instances": [GOOD_ROW]},
                             headers={**bearer(KEY), "X-Request-ID": ids["good"]}, timeout=10)
        refused = requests.post(base_url + "/predict", json={"instances": [GOOD_ROW]},
                                headers={"X-Request-ID": ids["refused"]}, timeout=10)
        health = requests.get(base_url + "/health", headers={"X-Request-ID": "one-line-per-prediction-get"},
                              timeout=10)
    assert (good.status_code, refused.status_code, health.status_code) == (200, 401, 200)
    lines = server.stdout.read().splitlines()
    access = [line for line in lines if line.startswith("method=")]
    # Each POST /predict: the prediction log's line only, with its status and request id ...
    for name, status in (("good", 200), ("refused", 401)):
        [line] = [line for line in lines if " prediction " in line and line.endswith(f"request_id={ids[name]}")]
        assert f" status={status} " in line
        assert not any(ids[name] in line for line in access)
    assert not any("path=/predict " in line for line in access)
    # ... and every other request still gets gunicorn's access line.
    assert any(line.startswith("method=GET path=/health status=200 ") and
               line.endswith("request_id=one-line-per-prediction-get") for line in access)


# --- what the options do on every request, and no more ---------------------------------------------

def test_without_an_origin_header_cors_adds_only_vary(cors):
    response = predict(cors, bearer(KEY))
    assert response.status_code == 200
    assert response.headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Expose-Headers" not in response.headers


def test_origin_is_added_to_a_vary_header_already_there():
    headers = [("Content-Type", "application/json"), ("vary", "Cookie")]
    public.add_cors_headers(headers, ORIGIN, (ORIGIN,))
    assert headers == [("Content-Type", "application/json"), ("vary", "Cookie, Origin"),
                       ("Access-Control-Allow-Origin", ORIGIN), ("Access-Control-Expose-Headers", "X-Request-ID")]


class CountingStream(io.StringIO):
    """A stream that remembers each write, to see how a line reaches it."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return super().write(text)


def test_the_prediction_line_reaches_each_stream_in_one_write_with_its_request_id(monkeypatch):
    client = client_with(monkeypatch, PREDICTION_LOG="on")
    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LOG.handlers[0].formatter)
    LOG.addHandler(handler)
    try:
        predict(client, {"X-Request-ID": "one-write-request-id-01"})
    finally:
        LOG.removeHandler(handler)
    # One write of the whole line: a pipe takes a write of up to PIPE_BUF bytes whole, so the lines
    # of gunicorn's workers, which share the one stdout, never mix.
    (line,) = [text for text in stream.writes if " prediction " in text]
    assert line.endswith(" request_id=one-write-request-id-01\n") and line.count("\n") == 1
    assert LINE.fullmatch(line.rstrip("\n"))


def test_a_handler_with_another_formatter_gets_the_prediction_as_a_record(monkeypatch):
    client = client_with(monkeypatch, PREDICTION_LOG="on")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s|%(name)s|%(message)s"))
    LOG.addHandler(handler)
    try:
        predict(client)
    finally:
        LOG.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert re.fullmatch(r"INFO\|final_app\|prediction model_version=\S+ rows=1 status=200 duration_ms=\d+\.\d\d", line)


def test_info_line_is_what_the_formatter_writes_for_the_same_record(with_ids):
    formatter = LOG.handlers[0].formatter
    with with_ids.application.test_request_context(headers={"X-Request-ID": "formatter-request-id-01"}):
        from flask import request
        request.environ[public.REQUEST_ID_KEY] = "formatter-request-id-01"
        record = LOG.makeRecord(LOG.name, logging.INFO, __file__, 0, "prediction rows=1", (), None)
        assert formatter.info_line(LOG.name, "prediction rows=1", "formatter-request-id-01") == formatter.format(record)


def served_environ(client):
    """POST /predict with one good row straight through the WSGI app, as gunicorn calls it; return
    (status, the environ afterwards): the test client would give the app a copy of its environ."""
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(method="POST", path="/predict", json={"instances": [GOOD_ROW]}).get_environ()
    statuses = []
    b"".join(client.application(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], environ


def test_a_log_level_above_info_drops_the_prediction_line(monkeypatch, logged):
    client = client_with(monkeypatch, PREDICTION_LOG="on", LOG_LEVEL="WARNING")
    try:
        status, environ = served_environ(client)
    finally:
        LOG.setLevel("INFO")
    assert status == "200 OK"
    assert " prediction " not in logged.getvalue()
    # No line written, so gunicorn.conf.py's logger keeps gunicorn's access line for this request.
    assert public.PREDICTION_LOGGED_KEY not in environ


def test_a_written_prediction_line_is_marked_for_gunicorns_logger(monkeypatch, logged):
    status, environ = served_environ(client_with(monkeypatch, PREDICTION_LOG="on"))
    assert status == "200 OK" and len(prediction_lines(logged)) == 1
    assert environ[public.PREDICTION_LOGGED_KEY] is True
    status, environ = served_environ(client_with(monkeypatch, REQUEST_IDS="on"))  # ids, but no prediction log
    assert status == "200 OK" and public.PREDICTION_LOGGED_KEY not in environ


def test_under_gunicorn_two_workers_write_every_prediction_line_whole(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PREDICTION_LOG": "on", "MODEL_DIR": ""}
    command = [GUNICORN, "--bind", "127.0.0.1:{port}", "--workers", "2", "--threads", "4", "final_app.wsgi:app"]
    ids = [f"concurrent-request-{number:04d}" for number in range(200)]
    with running(command, cwd=tmp_path, env=env, ready_path="/health") as (base_url, server):
        from concurrent.futures import ThreadPoolExecutor

        def send(request_id):
            return requests.post(base_url + "/predict", json={"instances": [GOOD_ROW]}, timeout=30,
                                 headers={"X-Request-ID": request_id}).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(send, ids))
    lines = [line for line in server.stdout.read().splitlines() if "prediction " in line]
    assert statuses == [200] * len(ids)
    assert sorted(LINE.fullmatch(line).group(6) for line in lines) == ids


# --- keys over plain http, and origins served over plain http ------------------------------------

# What Heroku's router says in X-Forwarded-Proto about a request that reached it over http.
OVER_HTTP = {"http": "http", "upper case": "HTTP", "http on one of two hops": "https, http"}


@pytest.mark.parametrize("forwarded", OVER_HTTP.values(), ids=OVER_HTTP.keys())
@pytest.mark.parametrize("authorization", [f"Bearer {KEY}", f"Bearer {WRONG_KEY}", None], ids=["key", "wrong key", "none"])
def test_with_keys_a_request_that_came_over_http_is_403_before_its_key_is_checked(keyed, forwarded, authorization):
    headers = {"X-Forwarded-Proto": forwarded, **({"Authorization": authorization} if authorization else {})}
    for response in (predict(keyed, headers), keyed.get("/model", headers=headers)):
        message = assert_json_error(response, 403)
        assert "WWW-Authenticate" not in response.headers
        assert message.startswith("this API takes requests over https only: send them to its https:// address")


@pytest.mark.parametrize("headers", [{"X-Forwarded-Proto": "https"}, {}], ids=["over https", "no proxy (your machine)"])
def test_with_keys_https_and_a_request_with_no_proxy_in_front_are_answered(keyed, headers):
    assert predict(keyed, {**headers, **bearer(KEY)}).status_code == 200


def test_over_http_the_open_endpoints_stay_open_and_without_keys_nothing_changes(monkeypatch, keyed):
    assert keyed.get("/health", headers={"X-Forwarded-Proto": "http"}).status_code == 200
    assert predict(client_with(monkeypatch), {"X-Forwarded-Proto": "http"}).status_code == 200


def test_the_refusal_over_http_is_logged_without_the_key(keyed, logged):
    predict(keyed, {"X-Forwarded-Proto": "http", **bearer(KEY)})
    [line] = [line for line in logged.getvalue().splitlines() if " refused " in line]
    assert line.startswith("INFO final_app: refused method=POST path=/predict status=403 message=\"this API takes")
    assert KEY not in logged.getvalue()


def test_under_the_procfiles_command_on_a_dyno_keys_over_http_are_refused():
    from tools.dyno import dyno_environment

    command = [GUNICORN, "--config", "gunicorn.conf.py", "final_app.wsgi:app"]
    # A classic dyno: FORWARDED_ALLOW_IPS='*', so gunicorn reads the router's X-Forwarded-Proto too.
    env = dyno_environment({"API_KEYS": KEY, "MODEL_DIR": "", "WEB_CONCURRENCY": "1"})
    with running(command, cwd=ROOT, env=env, ready_path="/health") as (base_url, _server):
        def status(**headers):
            return requests.post(base_url + "/predict", json={"instances": [GOOD_ROW]}, timeout=10,
                                 headers={**bearer(KEY), **headers}).status_code

        statuses = [status(**{"X-Forwarded-Proto": "http"}), status(**{"X-Forwarded-Proto": "https"}), status()]
    assert statuses == [403, 200, 200]


LOCAL_ORIGINS = ["http://localhost:3000", "http://127.0.0.1", "http://[::1]:8080", "http://LOCALHOST:5000",
                 "https://example.org", "https://[2001:db8::1]:8443"]
PLAIN_HTTP_ORIGINS = ["http://example.org", "http://192.168.1.10:8080", "http://localhost.evil.example",
                      "http://127.0.0.1.nip.io", "http://[2001:db8::1]"]


@pytest.mark.parametrize("origin", LOCAL_ORIGINS)
def test_cors_takes_https_origins_and_http_on_this_machine_only(origin):
    assert settings_from_env({"CORS_ORIGINS": f"https://front.example {origin}"})["CORS_ORIGINS"] == (
        "https://front.example", origin)


@pytest.mark.parametrize("origin", PLAIN_HTTP_ORIGINS)
def test_a_plain_http_origin_elsewhere_is_refused_at_start_up_by_name(origin):
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"CORS_ORIGINS": f"https://front.example,{origin}"})
    assert str(caught.value).startswith(f"CORS_ORIGINS: {origin!r} is served over plain http; list its https:// origin")
