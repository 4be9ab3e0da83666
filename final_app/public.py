"""Options for an app open to the internet: API keys, CORS, request ids and a prediction log.

Each is off unless its environment variable is set (see settings_from_env in final_app/app.py):

    API_KEYS        POST /predict needs "Authorization: Bearer <key>", one of these keys
    CORS_ORIGINS    web pages on these origins may call the JSON API from the browser
    REQUEST_IDS     take X-Request-ID (or make one), send it back, add it to every log line
    PREDICTION_LOG  one line per POST /predict; "with-data" adds the rows and the predictions
"""
import hashlib
import hmac
import logging
import re
import time
import uuid

from flask import request

from final_app.logs import (DATA_KEY, PREDICTION_LOGGED_KEY, REQUEST_ID_KEY, ROWS_KEY, log_info, messages_with_data,
                            prediction_message)

LOG = logging.getLogger("final_app")

# What a key may hold: the characters of a bearer token (RFC 6750's b64token), 16 to 256 of them.
KEY_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")
# The longest Authorization header worth comparing: "Bearer " and the longest key.
MAX_AUTHORIZATION_LENGTH = 7 + 256
# An origin as a browser sends it: scheme, host and an optional port; no path, no trailing slash.
ORIGIN_PATTERN = re.compile(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?")
# The hosts a page may be served from over plain http: this machine only (a page on http:// anywhere
# else can be read and changed on its way to the browser, and so can the key it sends).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# A request id we pass on as it came, by the rule of Heroku's router (Dev Center, "HTTP Request IDs"):
# 20 to 200 ASCII letters, digits or + / = -. The router replaces any other with a new one; so does
# the app, so it behaves the same on your machine and on Heroku, and nothing odd reaches a log line.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9+/=-]{20,200}")
PREDICTION_LOG_CHOICES = ("off", "on", "with-data")
SWITCH_VALUES = {"": False, "0": False, "off": False, "false": False, "no": False,
                 "1": True, "on": True, "true": True, "yes": True}

# What a page on a listed origin may send to the API, and read back.
CORS_METHODS = ("GET", "POST")
CORS_HEADERS = ("authorization", "content-type")
CORS_EXPOSED = "X-Request-ID"
CORS_MAX_AGE = "600"  # seconds a browser may reuse a preflight's answer


class PublicConfigError(ValueError):
    """A setting of this module has a value the app cannot use; str() is one line."""


# --- settings ----------------------------------------------------------------------------------

def parse_api_keys(text):
    """Return the keys in API_KEYS (separated by commas or spaces) as a tuple; () when empty."""
    keys = tuple(part for part in re.split(r"[\s,]+", text or "") if part)
    for number, key in enumerate(keys, start=1):
        if not KEY_PATTERN.fullmatch(key):
            # Never the key itself: this line is logged. Its length and position are enough to find it.
            raise PublicConfigError(
                f"API_KEYS: key {number} ({len(key)} characters) must be 16 to 256 letters, digits "
                "or . _ ~ + / = -; make one with: python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
    return keys


def parse_origins(text):
    """Return the origins in CORS_ORIGINS (separated by commas or spaces) as a tuple; () when empty."""
    origins = tuple(part for part in re.split(r"[\s,]+", text or "") if part)
    for origin in origins:
        match = ORIGIN_PATTERN.fullmatch(origin)
        if not match:
            raise PublicConfigError(
                f"CORS_ORIGINS: {origin!r} is not an origin; write each as scheme://host or "
                "scheme://host:port, with no path and no trailing slash (and no *: list the origins)")
        scheme, host = match.group(1, 2)
        if scheme == "http" and host.lower() not in LOCAL_HOSTS:
            raise PublicConfigError(
                f"CORS_ORIGINS: {origin!r} is served over plain http; list its https:// origin "
                "(http:// is accepted only for localhost, 127.0.0.1 and [::1], pages on your own machine)")
    return origins


def parse_switch(name, text):
    """Return True or False for on/off, 1/0, true/false, yes/no (empty: off)."""
    value = SWITCH_VALUES.get((text or "").strip().lower())
    if value is None:
        raise PublicConfigError(f"{name} must be on or off, got {text!r}")
    return value


def parse_prediction_log(text):
    """Return PREDICTION_LOG as one of off, on, with-data (empty: off)."""
    value = (text or "off").strip().lower()
    if value not in PREDICTION_LOG_CHOICES:
        raise PublicConfigError(f"PREDICTION_LOG must be one of {', '.join(PREDICTION_LOG_CHOICES)}, got {text!r}")
    return value


def request_ids_on(settings):
    """Tell whether request ids are on: with REQUEST_IDS, and with the prediction log, whose lines carry them."""
    return settings["REQUEST_IDS"] or settings["PREDICTION_LOG"] != "off"


def options_on(settings):
    """Return, for the start-up log line, what is on: never a key, only how many."""
    options = []
    if settings["API_KEYS"]:
        count = len(settings["API_KEYS"])
        options.append(f"API_KEYS ({count} key{'s' if count > 1 else ''})")
    if settings["CORS_ORIGINS"]:
        options.append("CORS_ORIGINS " + " ".join(settings["CORS_ORIGINS"]))
    if settings["REQUEST_IDS"]:
        options.append("REQUEST_IDS")
    if settings["PREDICTION_LOG"] != "off":
        options.append(f"PREDICTION_LOG {settings['PREDICTION_LOG']}")
    return options


# --- API keys ----------------------------------------------------------------------------------

class PlainHttpRefused(Exception):
    """A request for a keyed endpoint that reached the platform over plain http: answered 403."""

    message = ("this API takes requests over https only: send them to its https:// address (a key "
               "already sent over http has crossed the network unencrypted: ask for a new one)")


def came_over_plain_http(environ):
    """Tell whether the proxy in front (Heroku's router) says the request reached it over plain http.

    Heroku's router sets X-Forwarded-Proto to the client's scheme. gunicorn turns it into
    wsgi.url_scheme only for a peer listed in forwarded_allow_ips ('*' on a classic dyno, from the
    buildpack; 127.0.0.1 and ::1 by default, so not on the Fir stack), and with no header the scheme
    is "http" too, as on your own machine. So read the header itself: no header (a request on your
    own machine) is let through, and trusting a header that says http costs nothing, since nobody
    gains by lying to be refused. This is a warning to an honest client, not access control.
    """
    forwarded = environ.get("HTTP_X_FORWARDED_PROTO")
    if forwarded is None or forwarded == "https":  # what the router sends for nearly every request
        return False
    return "http" in [part.strip().lower() for part in forwarded.split(",")]


class KeyRefused(Exception):
    """A POST /predict without a usable key: answered 401 with a WWW-Authenticate header."""

    def __init__(self, message, challenge):
        super().__init__(message)
        self.message = message
        self.challenge = challenge


def key_digest(key):
    """Return the sha256 of a key: equal-length values to compare, whatever the key's length."""
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


def key_checker(keys):
    """Return a function of the WSGI environ that raises KeyRefused unless the request carries one of keys."""
    digests = [key_digest(key) for key in keys]
    realm = 'Bearer realm="predict"'

    def check_key(environ):
        # Over plain http the key has travelled in clear: say so before looking at it, whatever it is.
        if came_over_plain_http(environ):
            raise PlainHttpRefused()
        # The header straight from the WSGI environ: the same text request.headers would give.
        header = environ.get("HTTP_AUTHORIZATION")
        if header is None:
            raise KeyRefused("this API needs a key: send the header Authorization: Bearer <key>", realm)
        if len(header) > MAX_AUTHORIZATION_LENGTH:
            raise KeyRefused("the Authorization header is too long to hold a key",
                             realm + ', error="invalid_request"')
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise KeyRefused("the Authorization header must be: Bearer <key>", realm + ', error="invalid_request"')
        given_digest = key_digest(given)
        # Compare with every key, always, in constant time: how long the answer takes tells nothing.
        matched = False
        for digest in digests:
            matched |= hmac.compare_digest(given_digest, digest)
        if not matched:
            raise KeyRefused("this key is not valid: check it, or ask for a new one", realm + ', error="invalid_token"')

    return check_key


# --- CORS --------------------------------------------------------------------------------------

class CorsPreflightRefused(Exception):
    """A CORS preflight asking for an origin, method or header the API does not allow: answered 403."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def is_cors_preflight():
    """Tell whether this request is a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method."""
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def check_cors_preflight(origins):
    """Raise CorsPreflightRefused unless the preflight asks for a listed origin, an allowed method and headers."""
    origin = request.headers["Origin"]
    if origin not in origins:
        raise CorsPreflightRefused(f"the origin {origin[:200]!r} may not call this API from a browser")
    method = request.headers["Access-Control-Request-Method"]
    if method not in CORS_METHODS:
        raise CorsPreflightRefused(f"a page may call this API with {' or '.join(CORS_METHODS)}, not {method[:50]!r}")
    asked = request.headers.get("Access-Control-Request-Headers", "")
    refused = sorted({name.strip().lower() for name in asked.split(",") if name.strip()} - set(CORS_HEADERS))
    if refused:
        raise CorsPreflightRefused(f"a page may send only the headers {', '.join(CORS_HEADERS)}, "
                               f"not {', '.join(refused)[:200]}")


def cors_preflight_headers():
    """Return the headers that answer an allowed preflight (the origin ones are added later)."""
    return {"Access-Control-Allow-Methods": ", ".join(CORS_METHODS),
            "Access-Control-Allow-Headers": ", ".join(CORS_HEADERS),
            "Access-Control-Max-Age": CORS_MAX_AGE}


def add_cors_headers(headers, origin, origins):
    """Let a listed origin read the response; say nothing to any other. Always vary on Origin.

    headers is the response's list of (name, value) pairs; origin the request's Origin, or None.
    """
    # A cache must not give one origin's answer to another.
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            headers[index] = (name, f"{value}, Origin")
            break
    else:
        headers.append(("Vary", "Origin"))
    if origin is not None and origin in origins:
        headers.append(("Access-Control-Allow-Origin", origin))
        headers.append(("Access-Control-Expose-Headers", CORS_EXPOSED))


# --- request ids and the prediction log --------------------------------------------------------

def take_request_id(environ):
    """Return the X-Request-ID the request came with, if Heroku's router would keep it, or a new UUID."""
    given = environ.get("HTTP_X_REQUEST_ID")
    if given is not None and REQUEST_ID_PATTERN.fullmatch(given):
        return given
    return str(uuid.uuid4())


class PublicOptions:
    """WSGI middleware around the Flask app: request ids, CORS response headers and the prediction log.

    These run on every request, so they work on the WSGI environ (a dict) and the response's plain
    list of headers, outside Flask: in a Flask after_request hook, through werkzeug's Headers (which
    check each header, and copy them all again for the WSGI response), the same work took about a
    quarter more instructions per request (counted with valgrind's callgrind).
    The key check and the preflight answers stay in Flask (app.py), which makes their JSON errors.
    """

    def __init__(self, wsgi_app, logger, model_version, is_page_path, origins=(), request_ids=False,
                 prediction_log="off"):
        self.wsgi_app = wsgi_app
        self.logger = logger
        self.model_version = model_version
        self.is_page_path = is_page_path
        self.origins = origins
        self.request_ids = request_ids
        self.log_predictions = prediction_log != "off"
        self.with_data = prediction_log == "with-data"

    def __call__(self, environ, start_response):
        request_id = None
        if self.request_ids:
            request_id = environ[REQUEST_ID_KEY] = take_request_id(environ)
        path = "/" + environ.get("PATH_INFO", "").lstrip("/")  # as Flask reads it: "//predict" is "/predict"
        cors = bool(self.origins) and not self.is_page_path(path)
        logged = self.log_predictions and path == "/predict" and environ["REQUEST_METHOD"] == "POST"
        started = time.perf_counter() if logged else 0.0
        statuses = []

        def start(status, headers, exc_info=None):
            if cors:
                add_cors_headers(headers, environ.get("HTTP_ORIGIN"), self.origins)
            if request_id is not None:
                headers.append(("X-Request-ID", request_id))
            statuses.append(status)
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, start)  # Flask has called start() and built the body by now
        if logged and statuses:
            message = prediction_message(self.model_version, environ.get(ROWS_KEY, "-"), statuses[-1].split(" ", 1)[0],
                                         time.perf_counter() - started)
            messages = [message]
            if self.with_data:
                data = environ.get(DATA_KEY)
                messages = [f"{message} instances=- predictions=-"] if data is None else messages_with_data(message, *data)
            if log_info(self.logger, messages, request_id):
                environ[PREDICTION_LOGGED_KEY] = True
        return body
