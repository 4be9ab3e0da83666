"""Log lines no client can forge, split or lengthen: gunicorn's access line (gunicorn.conf.py) and
final_app's own lines (final_app/logs.py, the error handlers in final_app/app.py).

Every line the Procfile's command writes is parsed here as strict logfmt: key=value pairs, each
value bare (printable ASCII, no space, quote, = or backslash) or in double quotes with JSON's
backslash escapes. A line that does not parse, or that holds a key the app does not write, fails.
"""
import json
import re
import socket
import urllib.parse

import pytest
import requests
from sklearn.utils import check_array

from conftest import GUNICORN, ROOT
from final_app import logs
from final_app.app import LOG, create_app
from lesson_helpers import running
from tools.dyno import dyno_environment

HEROKU_LINE_LIMIT = 10_000  # Heroku's log router splits longer lines (Dev Center, "Logging": log format)
GOOD_ROW = [5.1, 3.5, 1.4, 0.2]

# --- a strict logfmt parser ---------------------------------------------------------------------

BARE = r'[!#-<>-\[\]-~]+'  # printable ASCII but space, ", = and \
QUOTED = r'"(?:[ !#-\[\]-~]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'  # a JSON string, in ASCII
PAIR = re.compile(rf"([a-z_]+)=({BARE}|{QUOTED})")
GUNICORN_OWN_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] "
                               r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] [ -~]*")
APP_LINE = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) final_app: ([a-z_]+) (.*)")
# The app's two start-up lines: written before any request, from its settings, in words.
START_UP_LINE = re.compile(r"INFO final_app: (ready: model [a-z0-9-]+ served by (onnx|sklearn), up to \d+ rows and \d+ bytes per request"
                           r"|open to the internet with: [ -~]+)")

ACCESS_KEYS = ["method", "path", "status", "bytes", "duration_ms", "request_id"]
REQUEST_KEYS = ["method", "path", "status", "message"]
# What each of final_app's lines may hold, in this order; request_id may end any of them.
APP_KEYS = {
    "prediction": ["model_version", "rows", "status", "duration_ms", "part", "part_rows", "instances", "predictions"],
    "rejected": REQUEST_KEYS,
    "refused": REQUEST_KEYS,
    "unexpected": REQUEST_KEYS + ["error", "at"],
    "traceback": ["line"],
}


def parse_pairs(text):
    """Return the key=value pairs of text as a list of (key, value), quoted values decoded; fail if any is not."""
    pairs, position = [], 0
    while True:
        found = PAIR.match(text, position)
        assert found, f"not logfmt at character {position}: {text!r}"
        key, value = found.groups()
        pairs.append((key, json.loads(value) if value.startswith('"') else value))
        position = found.end()
        if position == len(text):
            return pairs
        assert text[position] == " ", f"two fields without a space between them: {text!r}"
        position += 1


def in_order(keys, allowed):
    """Tell whether keys are some of allowed, each once, in allowed's order."""
    positions = [allowed.index(key) for key in keys if key in allowed]
    return len(positions) == len(keys) and positions == sorted(set(positions))


def parse_line(line):
    """Return (kind, event, fields) for a line of the Procfile's output: kind "access", "app" or "gunicorn"."""
    assert len(line.encode()) + 1 <= logs.MAX_LINE_BYTES < HEROKU_LINE_LIMIT, f"a line of {len(line)} characters"
    if GUNICORN_OWN_LINE.fullmatch(line):  # gunicorn's own messages, in words: client text only as repr()
        return "gunicorn", None, {"text": line}
    if START_UP_LINE.fullmatch(line):
        return "app", "start-up", {}
    app_line = APP_LINE.fullmatch(line)
    if app_line:
        event = app_line.group(2)
        pairs = parse_pairs(app_line.group(3))
        keys = [key for key, _ in pairs]
        assert event in APP_KEYS and in_order(keys, APP_KEYS[event] + ["request_id"]), f"unexpected fields: {line!r}"
        return "app", event, dict(pairs)
    pairs = parse_pairs(line)
    assert [key for key, _ in pairs] == ACCESS_KEYS, f"not an access line: {line!r}"
    return "access", None, dict(pairs)


def parse_output(text):
    """Return every line of a server's output, parsed; fail on the first that is not one of its lines."""
    assert "\r" not in text  # a bare carriage return would start a line on a terminal
    return [parse_line(line) for line in text.split("\n") if line]


def test_the_parser_refuses_what_a_forger_would_write():
    for line in ['method=GET path="/x" status=200 bytes=1 duration_ms=0 request_id=abc status=500',
                 'method=GET path=/x"y status=200 bytes=1 duration_ms=0 request_id=-',
                 'method=GET path="/x\\q" status=200 bytes=1 duration_ms=0 request_id=-',
                 'INFO final_app: refused method=GET path=/x status=401 message="m" forged=1',
                 'INFO final_app: rejected method=GET path=/x status=400 message="m"status=200',
                 'status=200 method=GET']:
        with pytest.raises(AssertionError):
            parse_line(line)
    kind, _, fields = parse_line('method=GET path="/a b\\n\\u00ff" status=404 bytes=9 duration_ms=1 request_id=-')
    assert (kind, fields["path"]) == ("access", "/a b\n\xff")


# --- hostile requests through the Procfile's command, as on a classic dyno ------------------------

def send_raw(base_url, request_line, headers=(), body=b""):
    """Send one request as raw bytes, nothing re-encoded on the way; return its status (0 if none)."""
    host, port = urllib.parse.urlsplit(base_url).hostname, urllib.parse.urlsplit(base_url).port
    head = [request_line, b"Host: 127.0.0.1", b"Connection: close", *headers]
    if body:
        head += [b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def procfile_on_a_dyno(**settings):
    """The Procfile's command, with what a classic web dyno sets (tools/dyno.py) and these settings."""
    command = [GUNICORN, "--config", "gunicorn.conf.py", "final_app.wsgi:app"]
    env = dyno_environment({"MODEL_DIR": "", "API_KEYS": "", "CORS_ORIGINS": "", "REQUEST_IDS": "",
                            "PREDICTION_LOG": "", "GUNICORN_DEV": "", **settings})
    return running(command, cwd=ROOT, env=env, ready_path="/health")


FORGED_BODY = json.dumps({"instances": [GOOD_ROW], 'x\nINFO final_app: prediction status=200 forged="1"': 1}).encode()
# (request line, headers, body, the status, the request id, then the method and path the access line must hold)
HOSTILE_REQUESTS = {
    "a line break in the path": (
        b"GET /x%0Amethod=POST%20path=%22/predict%22%20status=200?q=%0Aforged=1 HTTP/1.1",
        [b"X-Request-ID: hostile-request-0001"], b"", 404,
        "hostile-request-0001", "GET", '/x\nmethod=POST path="/predict" status=200'),
    "CR, quote and backslash in the path": (
        b"GET /x%0D%0Aforged=1%22%5C%22 HTTP/1.1", [b"X-Request-ID: hostile-request-0002"], b"", 404,
        "hostile-request-0002", "GET", '/x\r\nforged=1"\\"'),
    "bytes that are not UTF-8, and U+0085 (NEL)": (
        b"GET /caf%C3%A9/%FF%FE/%C2%85/%85 HTTP/1.1", [b"X-Request-ID: hostile-request-0003"], b"", 404,
        "hostile-request-0003", "GET", "/caf\xc3\xa9/\xff\xfe/\xc2\x85/\x85"),
    "a request id that adds fields": (
        b"GET /health HTTP/1.1",
        [b"X-Request-ID: abcdefghijklmnopqrstu status=500 forged=id",
         b'User-Agent: agent "quoted" \\ back', b'Referer: https://example.org/"quoted"'], b"", 200,
        "abcdefghijklmnopqrstu status=500 forged=id", "GET", "/health"),
    "a request id with a quote and a NEL byte": (
        b"GET /health HTTP/1.1", [b'X-Request-ID: id "quoted" \x85 -0005'], b"", 200,
        'id "quoted" \x85 -0005', "GET", "/health"),
    "an odd method": (
        b"PO'ST|X /health HTTP/1.1", [b"X-Request-ID: hostile-request-0006"], b"", 405,
        "hostile-request-0006", "PO'ST|X", "/health"),
    "a body whose message quotes a line break": (
        b"POST /predict HTTP/1.1", [b"X-Request-ID: hostile-request-0007"], FORGED_BODY, 400,
        "hostile-request-0007", "POST", "/predict"),
}


def test_no_request_can_forge_split_or_add_to_a_line_under_the_procfiles_command():
    with procfile_on_a_dyno() as (base_url, server):
        statuses = {name: send_raw(base_url, line, headers, body)
                    for name, (line, headers, body, *_rest) in HOSTILE_REQUESTS.items()}
        # A method with a control character in it: gunicorn itself refuses it, before any app.
        statuses["a vertical tab in the method"] = send_raw(base_url, b"GET\x0b /health HTTP/1.1")
    lines = parse_output(server.stdout.read())
    assert statuses == {**{name: request[3] for name, request in HOSTILE_REQUESTS.items()},
                        "a vertical tab in the method": 400}
    access = [fields for kind, _, fields in lines if kind == "access"]
    for name, (*_sent, status, request_id, method, path) in HOSTILE_REQUESTS.items():
        # Exactly one access line, and what it says is exactly what came: nothing lost, nothing added.
        [line] = [fields for fields in access if fields["request_id"] == request_id]
        assert (line["method"], line["path"], line["status"]) == (method, path, str(status)), name
    # The rest: the start-up probe's GET /health (no request id), and nothing else.
    sent_ids = {request[4] for request in HOSTILE_REQUESTS.values()}
    others = [(line["method"], line["path"], line["request_id"]) for line in access if line["request_id"] not in sent_ids]
    assert others and set(others) == {("GET", "/health", "-")}
    # final_app's line about the refused body quotes its message, which quotes the client's key.
    [rejected] = [fields for _, event, fields in lines if event == "rejected"]
    assert rejected["path"] == "/predict"
    assert rejected["message"].startswith('unexpected key "x\\nINFO final_app: prediction status')
    # gunicorn's warning about the method writes it as Python's repr(): escaped, on one line.
    [warning] = [fields["text"] for kind, _, fields in lines if kind == "gunicorn" and "Invalid" in fields["text"]]
    assert warning.endswith("Invalid HTTP method: 'GET\\x0b'")


# --- the traceback of an unexpected error ----------------------------------------------------------

FORGED_MESSAGE = 'value from a client\nINFO final_app: prediction model_version=x rows=1 status=200 forged="1"'


class HostileArray:
    """An input that fails deep inside scikit-learn, as numpy asks it for its values."""

    def __array__(self, dtype=None, copy=None):
        raise ValueError(FORGED_MESSAGE)


def scale_rows(X):
    """A helper of the planted predictor: it hands scikit-learn an input it cannot read."""
    return check_array(HostileArray())


def planted_predict(X):
    """Stand in for the predictor and fail two calls down, inside scikit-learn's check_array."""
    return scale_rows(X)


def client_with(monkeypatch, **env):
    """A test client for final_app built with exactly these options set."""
    for name in ("API_KEYS", "CORS_ORIGINS", "REQUEST_IDS", "PREDICTION_LOG"):
        monkeypatch.setenv(name, env.get(name, ""))
    return create_app().test_client()


def frames(traceback_lines):
    """Return (file, function) of each frame in a traceback's lines."""
    found = [re.match(r'  File "(.*)", line \d+, in (.*)', line) for line in traceback_lines]
    return [(match.group(1), match.group(2)) for match in found if match]


def test_an_unexpected_error_logs_its_whole_traceback_quoted_line_by_line(monkeypatch, logged):
    client = client_with(monkeypatch, REQUEST_IDS="on")
    monkeypatch.setattr(client.application.extensions["final_app.predictor"], "predict", planted_predict)
    response = client.post("/predict", json={"instances": [GOOD_ROW]}, headers={"X-Request-ID": "unexpected-error-0001"})
    assert response.status_code == 500
    assert response.get_json() == {"error": {"message": "unexpected error in the server; it has been logged"}}
    parsed = parse_output(logged.getvalue())
    [(_, _, summary)] = [line for line in parsed if line[1] == "unexpected"]
    assert (summary["status"], summary["error"], summary["message"]) == ("500", "ValueError", FORGED_MESSAGE)
    assert summary["at"].startswith(__file__) and summary["at"].endswith(" in __array__")
    traceback = [fields["line"] for _, event, fields in parsed if event == "traceback"]
    assert all(fields["request_id"] == "unexpected-error-0001" for _, event, fields in parsed
               if event in ("unexpected", "traceback"))
    # From the app's view down to the function that raised, through scikit-learn.
    called = [(file.split("site-packages/")[1] if "site-packages/" in file else file.split("/")[-1], function)
              for file, function in frames(traceback)]
    view = called.index(("app.py", "predict"))
    assert called[view + 1:view + 3] == [("test_log_lines.py", "planted_predict"), ("test_log_lines.py", "scale_rows")]
    assert ("sklearn/utils/validation.py", "check_array") in called[view + 3:]
    assert called[-1] == ("test_log_lines.py", "__array__")
    # The message's second line is a traceback line of its own, quoted: not a prediction line.
    assert traceback[-2:] == ["ValueError: value from a client", FORGED_MESSAGE.split("\n")[1]]
    assert not any(event == "prediction" for _, event, _ in parsed)


def test_a_message_with_line_breaks_stays_on_one_line(logged):
    LOG.warning("first\nINFO final_app: prediction status=200\rthird\x1b[2J\u2028fourth\x85")
    [line] = logged.getvalue().splitlines()
    assert line == ("WARNING final_app: first\\nINFO final_app: prediction status=200\\rthird\\u001b[2J"
                    "\\u2028fourth\\u0085")


def test_every_traceback_line_and_message_fits_in_a_line(logged):
    try:
        raise ValueError("\U0001F600" * 5000 + "x" * 10_000)
    except ValueError:
        LOG.exception("x" * 20_000)
    lines = logged.getvalue().splitlines()
    assert len(lines) > 3 and all(len(line.encode()) < logs.MAX_LINE_BYTES for line in lines)
    assert parse_line(lines[-1])[2]["line"].endswith("...")


# --- PREDICTION_LOG=with-data: 10,000 rows, in parts under the limit --------------------------------

def assert_parts_hold_every_row(parsed, rows, predictions, request_id):
    """The prediction lines of one request are parts 1..n, in order, that together hold every row."""
    parts = [fields for _, event, fields in parsed if event == "prediction" and fields["request_id"] == request_id]
    assert len(parts) > 1
    assert [part["part"] for part in parts] == [f"{number}/{len(parts)}" for number in range(1, len(parts) + 1)]
    assert {(part["model_version"], part["rows"], part["status"]) for part in parts} == {
        (parts[0]["model_version"], str(len(rows)), "200")}
    logged_rows, logged_predictions, next_row = [], [], 0
    for part in parts:
        first, last = map(int, part["part_rows"].split("-"))
        assert first == next_row and last >= first
        logged_rows += json.loads(part["instances"])
        logged_predictions += json.loads(part["predictions"])
        assert len(logged_rows) == last + 1
        next_row = last + 1
    assert logged_rows == rows and logged_predictions == predictions


def test_with_data_a_large_request_is_logged_in_parts_that_each_fit_a_line(monkeypatch, logged):
    client = client_with(monkeypatch, PREDICTION_LOG="with-data")
    rows = [[5.1 + index % 10 / 10, 3.5, 1.4, 0.2] for index in range(10_000)]
    response = client.post("/predict", json={"instances": rows}, headers={"X-Request-ID": "ten-thousand-rows-0001"})
    assert response.status_code == 200
    parsed = parse_output(logged.getvalue())  # every line under the limit, and strict logfmt
    assert_parts_hold_every_row(parsed, rows, response.get_json()["predictions"], "ten-thousand-rows-0001")


def test_with_data_a_small_request_keeps_its_one_line(monkeypatch, logged):
    client = client_with(monkeypatch, PREDICTION_LOG="with-data")
    client.post("/predict", json={"instances": [GOOD_ROW, GOOD_ROW]}, headers={"X-Request-ID": "two-rows-request-0001"})
    [(_, _, fields)] = [line for line in parse_output(logged.getvalue()) if line[1] == "prediction"]
    assert "part" not in fields and json.loads(fields["instances"]) == [GOOD_ROW, GOOD_ROW]


def test_a_row_too_long_for_a_line_is_named_not_logged():
    message = "prediction model_version=v rows=3 status=200 duration_ms=1.00"
    messages = logs.messages_with_data(message, [["x" * 5000], [1], [2]], [{"value": 1}, {"value": 2}, {"value": 3}])
    assert messages == [f"{message} part=1/2 part_rows=0-0 instances=too-long predictions=too-long",
                        f'{message} part=2/2 part_rows=1-2 instances="[[1],[2]]" predictions="'
                        '[{\\"value\\":2},{\\"value\\":3}]"']


def test_under_the_procfiles_command_10000_rows_with_data_stay_under_the_line_limit():
    rows = [[4.5 + index % 30 / 10, 3.0, 1.4 + index % 40 / 10, 0.2] for index in range(10_000)]
    with procfile_on_a_dyno(PREDICTION_LOG="with-data") as (base_url, server):
        response = requests.post(base_url + "/predict", json={"instances": rows}, timeout=60,
                                 headers={"X-Request-ID": "ten-thousand-rows-gunicorn-1"})
    assert response.status_code == 200
    parsed = parse_output(server.stdout.read())
    assert_parts_hold_every_row(parsed, rows, response.json()["predictions"], "ten-thousand-rows-gunicorn-1")


def test_request_fields_quote_a_hostile_method_path_and_message(monkeypatch):
    app = client_with(monkeypatch).application
    with app.test_request_context("/x%0Astatus=500%20forged=%221%22/%FF", method="GE'T"):
        fields = logs.request_fields(400, 'a "message"\nwith=fields')
    line = f"INFO final_app: rejected {fields}"
    assert parse_line(line)[2] == {"method": "GE'T", "path": '/x\nstatus=500 forged="1"/\ufffd', "status": "400",
                                   "message": 'a "message"\nwith=fields'}
