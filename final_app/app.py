"""The deployable Flask app: JSON API and HTML form for a saved scikit-learn model, built by create_app().

Importing this module loads nothing: gunicorn imports final_app.wsgi:app, which builds the app.

Everything the app shows and checks comes from the model's metadata (final_app/artifact.py).

Configuration comes from environment variables: MODEL_DIR, MAX_BATCH_ROWS, MAX_BODY_BYTES, LOG_LEVEL,
and the options for an app open to the internet (final_app/public.py): API_KEYS, CORS_ORIGINS,
REQUEST_IDS, PREDICTION_LOG. Each of those is off unless set.
"""
import json
import logging
import os
import sys
import traceback

import orjson
from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from final_app.artifact import ModelError, load_engine
from final_app import logs, public
from final_app.openapi import build_openapi, probability_keys
from final_app.form import feature_label, form_choices, form_fields, json_text, parse_form, suggestions
from final_app.validation import InstanceValidator, RequestError, as_columns

LOG = logging.getLogger("final_app")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # the platform's log router adds the time
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

DEFAULTS = {"MODEL_DIR": None, "MAX_BATCH_ROWS": 10_000, "MAX_BODY_BYTES": 4 * 1024 * 1024,
            "LOG_LEVEL": "INFO", "API_KEYS": (), "CORS_ORIGINS": (), "REQUEST_IDS": False,
            "PREDICTION_LOG": "off"}

# One policy for every response: nothing but our own stylesheet and images, no scripts, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class ConfigError(Exception):
    """An environment variable has a value the app cannot use; str() is one line."""


def positive_int(name, text):
    """Return text as a whole number above 0, or raise ConfigError naming the variable."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number above 0, got {text!r}")
    return value


def settings_from_env(environ):
    """Return the settings, read from environment variables with DEFAULTS for the missing ones."""
    settings = dict(DEFAULTS)
    settings["MODEL_DIR"] = environ.get("MODEL_DIR") or None
    for name in ("MAX_BATCH_ROWS", "MAX_BODY_BYTES"):
        if environ.get(name):
            settings[name] = positive_int(name, environ[name])
    settings["LOG_LEVEL"] = environ.get("LOG_LEVEL", "INFO").upper()
    if settings["LOG_LEVEL"] not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                          f"got {environ['LOG_LEVEL']!r}")
    try:
        settings["API_KEYS"] = public.parse_api_keys(environ.get("API_KEYS"))
        settings["CORS_ORIGINS"] = public.parse_origins(environ.get("CORS_ORIGINS"))
        settings["REQUEST_IDS"] = public.parse_switch("REQUEST_IDS", environ.get("REQUEST_IDS"))
        settings["PREDICTION_LOG"] = public.parse_prediction_log(environ.get("PREDICTION_LOG"))
    except public.PublicConfigError as error:
        raise ConfigError(str(error)) from None
    return settings


def configure_logging(level):
    """Send final_app's log lines to stdout, one line per event (once per process)."""
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stdout)
        # With REQUEST_IDS on, each line about a request ends with its id (off: the line is unchanged).
        handler.setFormatter(logs.RequestIdFormatter(LOG_FORMAT))
        LOG.addHandler(handler)
        LOG.propagate = False
    LOG.setLevel(level)


class Predictor:
    """Checked rows in, the API's answers out: the engine computes, the metadata gives the shape."""

    def __init__(self, engine, metadata):
        self.engine = engine  # final_app/engines.py: the ONNX graph, or the scikit-learn model
        self.task = metadata["task"]
        self.keys = probability_keys(metadata.get("classes", []))  # once, here: orjson writes them as they are

    def predict(self, checked):
        """Return one answer per instance checked (InstanceValidator.checked): {"label", "probabilities"},
        {"label"} or {"value"}."""
        labels, probabilities = self.engine.answers(checked)
        if self.task == "regression":
            return [{"value": value} for value in labels.tolist()]
        if probabilities is None:
            return [{"label": label} for label in labels.tolist()]
        # Each row's probabilities, filled in a class at a time: for 1000 rows this takes half the
        # time of dict(zip(keys, row)) row by row, which makes and drops a zip per row.
        per_row = [{} for _ in range(len(labels))]
        for key, column in zip(self.keys, probabilities.T.tolist()):
            for row, probability in zip(per_row, column):
                row[key] = probability
        return [{"label": label, "probabilities": row} for label, row in zip(labels.tolist(), per_row)]


def json_response(app, payload, status=200, headers=None):
    """Return a compact JSON response (faster than jsonify, which sorts keys)."""
    body = json.dumps(payload, separators=(",", ":"))
    return app.response_class(body, status=status, headers=headers, mimetype="application/json")


def error_response(app, message, status, headers=None):
    """Return the API's error shape: {"error": {"message": ...}}."""
    return json_response(app, {"error": {"message": message}}, status, headers)


def is_page_path(path):
    """Return True for the HTML page and its static files; every other path is the JSON API."""
    return path == "/" or path.startswith("/static/")


def http_error_message(error, app):
    """Return a message a person can act on for a werkzeug HTTP error."""
    # A path may be thousands of characters long: the message shows its start only.
    path = request.path if len(request.path) <= 100 else request.path[:97] + "..."
    if error.code == 404:
        return f"no such path {path}: the API's paths are listed in /openapi.json"
    if error.code == 405:
        allowed = ", ".join(sorted(error.valid_methods or []))
        return f"{request.method[:20]} is not allowed on {path}; use {allowed}"
    if error.code == 413:
        return (f"the request body is over the limit of {app.config['MAX_CONTENT_LENGTH']} bytes: "
                "split the rows into smaller requests")
    return error.description or error.name


def read_body(max_bytes):
    """Return the request body, or raise 413 if it is longer than max_bytes.

    A Content-Length over the limit is refused before anything is read. gunicorn ends the input
    where the body ends (it sets wsgi.input_terminated), so the body is read straight from it, one
    byte past the limit to tell a chunked upload (which has no length) that is too long: werkzeug's
    request.get_data() would silently cut that one at the limit, and its wrapping of the input cost
    about 10 µs of a 98 µs one-row prediction (measured in this process). A server that does not
    end the input gets werkzeug's way.
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestEntityTooLarge()
    environ = request.environ
    if not environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    data = environ["wsgi.input"].read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RequestEntityTooLarge()
    return data


def where(error):
    """Return "file:line in function" for the place an exception was raised."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


def register_error_handlers(app):
    """Make every error on the API JSON, never show a traceback to a client, and log each in logfmt.

    A log line quotes what a client sent (the method, the path, a message naming a value) with
    logs.request_fields, so no request can start a line or add a field of its own.
    """

    @app.errorhandler(RequestError)
    def request_error(error):
        LOG.info("rejected %s", logs.request_fields(error.status, error.message))
        return error_response(app, error.message, error.status)

    @app.errorhandler(public.KeyRefused)
    def key_refused(error):
        # The message says what was wrong; the key itself is never logged.
        LOG.info("refused %s", logs.request_fields(401, error.message))
        return error_response(app, error.message, 401, {"WWW-Authenticate": error.challenge})

    @app.errorhandler(public.PlainHttpRefused)
    def plain_http_refused(error):
        # 403, not 401: no key would help, and not 400: the request is well formed. The same request
        # sent to the https:// address is answered.
        LOG.info("refused %s", logs.request_fields(403, error.message))
        return error_response(app, error.message, 403)

    @app.errorhandler(public.CorsPreflightRefused)
    def cors_preflight_refused(error):
        LOG.info("refused %s", logs.request_fields(403, error.message))
        return error_response(app, error.message, 403)

    @app.errorhandler(HTTPException)
    def http_error(error):
        if is_page_path(request.path) or error.code is None:
            return error
        headers = [(key, value) for key, value in error.get_headers() if key.lower() != "content-type"]
        return error_response(app, http_error_message(error, app), error.code, headers)

    @app.errorhandler(Exception)
    def unexpected_error(error):
        # The whole traceback, from the view down to the line that raised, in one record: final_app's
        # formatter writes each of its lines as a quoted line of its own (logs.RequestIdFormatter).
        LOG.error("unexpected %s error=%s at=%s", logs.request_fields(500, str(error)),
                  logs.logfmt_value(type(error).__name__), logs.logfmt_value(where(error)), exc_info=error)
        message = "unexpected error in the server; it has been logged"
        if is_page_path(request.path):
            return app.response_class(message, status=500, mimetype="text/plain")
        return error_response(app, message, 500)


def register_api(app, predictor, metadata, validator, openapi):
    """Add the JSON endpoints: /predict, /health, /model, /openapi.json."""
    model_version = metadata["model_version"]
    health_body = json.dumps({"status": "ok", "model_version": model_version})
    metadata_body = json.dumps(metadata)
    openapi_body = json.dumps(openapi)
    log_predictions = app.config["PREDICTION_LOG"] != "off"
    log_data = app.config["PREDICTION_LOG"] == "with-data"
    # With API_KEYS set, the key is checked first, before the body is read (public.key_checker).
    check_key = public.key_checker(app.config["API_KEYS"]) if app.config["API_KEYS"] else None

    @app.post("/predict")
    def predict():
        environ = request.environ
        if check_key is not None:
            check_key(environ)
        if not request.is_json:
            raise RequestError("send the body as JSON with the header Content-Type: application/json",
                               status=415)
        payload = validator.parse(read_body(app.config["MAX_BODY_BYTES"]))
        predictions = predictor.predict(validator.checked(payload))
        if log_predictions:  # for the prediction log (public.PublicOptions)
            environ[logs.ROWS_KEY] = len(predictions)
            if log_data:
                environ[logs.DATA_KEY] = payload["instances"], predictions
        # orjson writes the same JSON values as json.dumps (5e-7 where json writes 5e-07: the
        # same number), about 20 times as fast for 1000 rows: writing thousands of probabilities
        # as text had been the slowest part of a large request.
        body = orjson.dumps({"model_version": model_version, "predictions": predictions})
        return app.response_class(body, mimetype="application/json")

    @app.get("/health")
    def health():
        return app.response_class(health_body, mimetype="application/json")

    @app.get("/model")
    def model():
        # The metadata tells about the training data (ranges, every category value): with keys
        # set, only a caller with a key may read it.
        if check_key is not None:
            check_key(request.environ)
        return app.response_class(metadata_body, mimetype="application/json")

    @app.get("/openapi.json")
    def openapi_document():
        return app.response_class(openapi_body, mimetype="application/json")


def register_page(app, predictor, metadata):
    """Add the HTML form at / (GET shows it, POST predicts one row)."""
    features = metadata["features"]
    fields = form_fields(features)

    def page(status=200, values=None, errors=None, result=None):
        html = render_template("index.html", metadata=metadata, fields=fields, label=feature_label,
                               choices=form_choices, suggestions=suggestions, json_text=json_text,
                               values=values or {}, errors=errors or {}, result=result)
        return html, status

    if app.config["API_KEYS"]:
        # A plain HTML form cannot send an Authorization header, and a form open to everyone
        # would let anyone use the model without a key. So with keys set there is no form.
        @app.get("/")
        def index():
            return render_template("key_required.html", metadata=metadata)
        return

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def index_submit():
        values = {feature["name"]: request.form.get(feature["name"], "") for feature in features}
        row, errors = parse_form(values, features, metadata.get("example"))
        if errors:
            return page(400, values, errors)
        return page(200, values, result=predictor.predict(as_columns([row]))[0])


def register_public_options(app, model_version):
    """Add what CORS_ORIGINS, REQUEST_IDS and PREDICTION_LOG turn on (API_KEYS: see register_api)."""
    origins = app.config["CORS_ORIGINS"]
    request_ids = public.request_ids_on(app.config)
    if request_ids or origins:
        # Request ids, CORS response headers and the prediction log: around the app (public.py).
        app.wsgi_app = public.PublicOptions(app.wsgi_app, LOG, model_version, is_page_path, origins,
                                            request_ids, app.config["PREDICTION_LOG"])


class FinalApp(Flask):
    """Flask, answering a CORS preflight when CORS_ORIGINS is set (public.py)."""

    def make_default_options_response(self):
        """Answer OPTIONS on a route: Flask's answer, or, for a CORS preflight on the API, 204 or 403.

        Flask calls this for every OPTIONS request to a route (its documented place to change
        how OPTIONS is answered), so no hook runs on the other requests.
        """
        origins = self.config["CORS_ORIGINS"]
        if origins and public.is_cors_preflight() and not is_page_path(request.path):
            public.check_cors_preflight(origins)  # raises CorsPreflightRefused: answered 403 in JSON
            answer = self.response_class(status=204, headers=public.cors_preflight_headers())
            del answer.headers["Content-Type"]  # no body, so no type
            return answer
        return super().make_default_options_response()


def with_security_headers(wsgi_app):
    """Return wsgi_app with SECURITY_HEADERS added to every response it gives, whatever answered it.

    Added to the WSGI headers on their way out, which costs about 1 µs; setting them on each response
    object in a Flask after_request function cost about 6 µs of a 109 µs one-row prediction (measured
    in this process).
    """
    headers = list(SECURITY_HEADERS.items())

    def app(environ, start_response):
        def start(status, response_headers, *exc_info):  # exc_info: passed on only when given
            return start_response(status, response_headers + headers, *exc_info)
        return wsgi_app(environ, start)

    return app


def create_app(config=None):
    """Build the app: read the settings, load the verified model, register routes and handlers."""
    settings = settings_from_env(os.environ)
    settings.update(config or {})
    configure_logging(settings["LOG_LEVEL"])
    engine, metadata = load_engine(settings["MODEL_DIR"])

    app = FinalApp(__name__)
    app.config.update(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_BODY_BYTES"]
    app.debug = False  # whatever FLASK_DEBUG or config said: the debugger would run code for anyone

    validator = InstanceValidator(metadata, settings["MAX_BATCH_ROWS"])
    predictor = Predictor(engine, metadata)
    openapi = build_openapi(metadata, settings["MAX_BATCH_ROWS"], settings["MAX_BODY_BYTES"],
                            api_keys=bool(settings["API_KEYS"]), request_ids=public.request_ids_on(settings))
    app.extensions["final_app.predictor"] = predictor
    register_api(app, predictor, metadata, validator, openapi)
    register_page(app, predictor, metadata)
    register_error_handlers(app)
    register_public_options(app, metadata["model_version"])
    app.wsgi_app = with_security_headers(app.wsgi_app)
    LOG.info("ready: model %s served by %s, up to %s rows and %s bytes per request", metadata["model_version"],
             engine.name, settings["MAX_BATCH_ROWS"], settings["MAX_BODY_BYTES"])
    options = public.options_on(settings)
    if options:
        LOG.info("open to the internet with: %s", ", ".join(options))
    return app


def create_app_or_exit():
    """Return create_app(), or log the one-line reason and exit if the model or settings are unusable."""
    try:
        return create_app()
    except (ModelError, ConfigError) as error:
        configure_logging("INFO")
        LOG.critical("refusing to start: %s", error)
        # Exit status 4 stops gunicorn rather than a loop of workers failing the same way. Under
        # the Procfile (preload_app) gunicorn's master loads the app and exits with this status at
        # once; without preload a worker does, and gunicorn stops saying "App failed to load".
        # No traceback: the line above says it all.
        raise SystemExit(4) from None

