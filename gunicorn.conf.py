"""How gunicorn runs final_app: on Heroku, in a local rehearsal, and in development.

gunicorn reads ./gunicorn.conf.py by itself when started in this folder (its `--config` defaults to it);
the Procfile names it anyway with `--config gunicorn.conf.py`, so that nobody has to know that.
It is plain Python: every top-level name below is one gunicorn setting.

Production (the default):   gunicorn --config gunicorn.conf.py final_app.wsgi:app
Development (make serve):   GUNICORN_DEV=1 gunicorn --config gunicorn.conf.py final_app.wsgi:app
"""
import gc
import json
import os
import re
import socket
import traceback

from gunicorn.glogging import Logger

# GUNICORN_DEV=1 switches to development mode: one worker that restarts when code changes,
# reachable only from this machine. Never set it on Heroku.
DEVELOPMENT = os.environ.get("GUNICORN_DEV") == "1"

# Heroku tells each web dyno which port to listen on in $PORT, and routes traffic only there.
# (A dyno that does not bind $PORT within 60 seconds is killed: error R10.)
PORT = os.environ.get("PORT", "8000")


def all_interfaces():
    """Return the address meaning "every network interface": IPv6 and IPv4 if possible."""
    if not socket.has_ipv6:
        return "0.0.0.0"
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::", 0))
        return "[::]"  # on Linux this also accepts IPv4 connections
    except OSError:
        return "0.0.0.0"


# The router reaches the dyno over the network, so production listens on every interface.
# Development listens on the loopback only: nobody else on your network reaches your laptop.
bind = [f"127.0.0.1:{PORT}"] if DEVELOPMENT else [f"{all_interfaces()}:{PORT}"]

# Worker processes serve requests in parallel. On Heroku's classic stack the Python buildpack
# sets WEB_CONCURRENCY when a dyno boots, unless you set it yourself: the lower of 2 x CPU cores
# + 1 and the memory / 256 MB, so 2 on a 512 MB Eco, Basic or Standard-1X dyno. The newer Fir
# stack sets nothing, so the default here is that same 2.
workers = 1 if DEVELOPMENT else int(os.environ.get("WEB_CONCURRENCY", "2"))

# ---- Concurrency inside each worker: the one place to change it -----------------------------
# "gthread" gives every worker a pool of threads, so a slow client (a phone on a bad network)
# ties up one thread, not a whole process, and the router's connections stay open between
# requests. Chosen with `make bench` on 2 cores (bench/RESULTS.md), 3 rounds per setting:
# "sync", and "gthread" with 1, 2, 4 or 8 threads, cost about the same CPU per request (0.27 ms
# for one row, 1.2-1.3 ms for 1000 rows; 1 thread 0.3 ms for one row), but served different
# numbers of requests. Medians, one row / 1000 rows per second: gthread 4 threads 6,348 / 1,264;
# 2 threads 5,997 / 822; 8 threads 3,683 / 1,005; 1 thread 5,263 / 840; sync 5,006 / 1,036.
# With 1 thread a worker sits idle while its thread waits on the network; 4 threads served
# the most of both kinds of request, and 8 did no better (the machine is noisy: re-measure).
# One cost was seen: a gthread worker keeps the connections it accepts, and in some rounds one
# worker held all 8 of the benchmark's connections while the other idled, which cut that
# round's throughput by up to half. "sync" takes one request at a time, but a single slow
# client then blocks a whole worker, so gthread stays, and the benchmark quotes medians.
# To compare settings: make bench BENCH_ARGS='--gunicorn-args="--threads 2"'
worker_class = "gthread"
threads = 4
# ----------------------------------------------------------------------------------------------

# Threads inside the model. scikit-learn's compiled parts (HistGradientBoosting, nearest
# neighbours, ...) run on OpenMP, and numpy and scipy on OpenBLAS; by default each may start one
# thread per core for a single call. The workers and threads above already keep the cores busy,
# one request each, so those extra threads only compete with them. `make bench` measures what
# that costs, with these settings, on lesson 08's body-mass model (HistGradientBoostingRegressor):
# one thread per call against one per core, in the section "Threads inside the model" of
# bench/RESULTS.md (that scenario alone: make bench BENCH_ARGS=--omp-only). Both libraries read
# OMP_NUM_THREADS once, when the app first imports them, which is after this file runs; a value
# you set yourself wins (heroku config:set OMP_NUM_THREADS=2).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Import the app (and load the model) once in the master process, then fork the workers:
# they share the model's memory instead of each loading a copy, and a broken model stops the
# server at start-up with one clear error instead of crashing every worker in turn.
# Development turns it off so that a code change can be reloaded into fresh workers.
preload_app = not DEVELOPMENT

# Development only: restart the workers when a Python file changes.
reload = DEVELOPMENT

# A worker that does not check in with the master for this many seconds is killed and replaced.
# A gthread worker checks in every second from its main loop, even while its threads serve
# requests, so this catches a hung process, never a slow request. After 30 s Heroku's router
# answers such a request 503 (error H12) and the thread goes on computing an answer nobody reads:
# python -m final_app.check times the largest request your model allows.
timeout = 20

# On SIGTERM (a deploy, a restart, `heroku ps:scale web=0`) workers get this long to finish the
# requests they are serving. Heroku sends SIGKILL 30 s after SIGTERM, so stay well under it.
graceful_timeout = 20

# Keep an idle connection open this many seconds. Heroku's router keeps its connections to a
# dyno idle for up to 90 s; staying open longer means the router, not us, closes them, so it
# never sends a request down a connection we are closing at that moment.
keepalive = 100

# A line per request, to stdout ("-"), with the request id Heroku's router adds (search for it in
# `heroku logs` to follow one request). On a classic-stack dyno the Python buildpack sets
# GUNICORN_CMD_ARGS="--access-logfile -" unless you set it, and those options win over this
# file, so a dyno writes this line whatever is set here: the file says the same, so that
# `make serve`, `make rehearse` and a dyno all behave alike. It costs some CPU (about 10 % of a
# one-row prediction's, on 2 cores with 2 workers: 0.04-0.05 ms of 0.46 ms). To drop it, on Heroku
# too: set accesslog = None here AND give GUNICORN_CMD_ARGS a value of your own, e.g.
# heroku config:set GUNICORN_CMD_ARGS="--log-level info" (the buildpack only fills it in when it
# is unset or empty). The router logs each request anyway.
accesslog = "-"
# logfmt: name=value pairs. Write no quotes here: each value comes quoted when it needs quotes (LogfmtAtoms).
access_log_format = (
    "method=%(m)s path=%(U)s status=%(s)s bytes=%(B)s duration_ms=%(M)s request_id=%({x-request-id}i)s"
)

# Most of the access line comes from the client: the method, the path (decoded: %0A is a line break)
# and, when final_app's REQUEST_IDS is off, the X-Request-ID header as it was sent. gunicorn escapes
# only the double quote in them (SafeAtoms in gunicorn/glogging.py), so a path with %0A in it
# would start a line of its own, and a request id with a space in it would add fields. Heroku's
# router replaces an odd request id, but not a path; off Heroku neither is replaced.
# So every value is written as final_app writes its own (final_app/logs.py, logfmt_value):
# bare when plain, else in double quotes with JSON's escapes, ASCII only, and at most
# MAX_VALUE_CHARACTERS long: six of them fit in one write to a pipe (4,096 bytes, whole even with
# two workers writing), far under the 10,000 bytes at which Heroku's log router cuts a line.
# (The same few lines as logs.py: importing final_app here would load Flask into gunicorn's
# master, and in development every reloaded worker would get the master's old copy of it.)
MAX_VALUE_CHARACTERS = 600
PLAIN_VALUE = re.compile(r"[A-Za-z0-9._:/+-]+")


def logfmt_value(value, limit=MAX_VALUE_CHARACTERS):
    """Return value as a logfmt value of at most limit characters: bare when plain, else quoted JSON text."""
    text = "-" if value is None else value if isinstance(value, str) else str(value)
    if len(text) <= limit and PLAIN_VALUE.fullmatch(text):
        return text
    quoted = json.dumps(text)  # the WSGI environ holds bytes as latin-1: byte 0xff is written \u00ff
    while len(quoted) > limit:  # cut the text, not its escapes, and say so with "..."
        text = text[:max(len(text) * limit // len(quoted) - 4, 0)]
        quoted = json.dumps(text + "...")
    return quoted


class LogfmtAtoms(dict):
    """The values access_log_format names, each looked up when the line asks for it, as a logfmt value.

    gunicorn's own atoms() copies every request header, response header and environ value, and the
    time as text, into a dict for each request, whatever the format names: about half of what the
    access line cost (0.035 of 0.07 ms per one-row request, on 2 cores). The few atoms this file's
    format names are looked up here instead; any other atom (after a change of format) comes from
    gunicorn's atoms(), made once.
    """

    def __init__(self, logger, resp, req, environ, request_time):
        super().__init__()
        self.request = logger, resp, req, environ, request_time
        self.gunicorns = None

    def __bool__(self):  # logging takes a lone mapping argument as the values only if it is true
        return True

    def __getitem__(self, name):
        return logfmt_value(self.value(name))

    def value(self, name):
        """Return one atom's value as gunicorn's atoms() has it ("-" when there is none)."""
        logger, resp, req, environ, request_time = self.request
        if name == "m":
            return environ.get("REQUEST_METHOD")
        if name == "U":
            return environ.get("PATH_INFO")
        if name == "s":
            return resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        if name == "B":
            return getattr(resp, "sent", None)
        if name == "M":
            return request_time.seconds * 1000 + request_time.microseconds // 1000
        if name.startswith("{") and name.endswith("}i"):  # a request header, in any case; the last one sent
            wanted = name[1:-2].lower()
            headers = getattr(req, "headers", req)
            headers = list(headers.items()) if hasattr(headers, "items") else headers
            return next((value for key, value in reversed(headers) if key.lower() == wanted), "-")
        if self.gunicorns is None:
            self.gunicorns = logger.atoms(resp, req, environ, request_time)
        return self.gunicorns.get(name.lower() if name.startswith("{") else name, "-")


class OneLinePerPrediction(Logger):
    """gunicorn's logger with each access-line value escaped, less the line of a request final_app has logged.

    With PREDICTION_LOG on, final_app writes a line for each POST /predict with the request id,
    status and time, and the model version and rows too: gunicorn's line would say the same again,
    at several times the CPU of final_app's line (gunicorn's costs the 10 % above). Every other
    request, and every request with PREDICTION_LOG off, keeps gunicorn's line.
    """

    def access(self, resp, req, environ, request_time):
        """Write the access line as gunicorn's Logger.access does, with LogfmtAtoms for its values."""
        if not self.access_log_enabled or environ.get("final_app.prediction_logged"):  # set by final_app/public.py
            return
        try:
            self.access_log.info(self.cfg.access_log_format, LogfmtAtoms(self, resp, req, environ, request_time))
        except Exception:  # as gunicorn does: a line that cannot be written is an error, not a failed request
            self.error(traceback.format_exc())


logger_class = OneLinePerPrediction

# gunicorn's own messages (start-up, worker restarts, errors) go to stderr ("-"); Heroku and
# honcho collect stderr and stdout alike.
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# gunicorn can open a management socket in your home folder; a dyno does not need it, and two
# servers on one machine (tests, a rehearsal) would fight over the same file.
control_socket_disable = True


def post_worker_init(worker):
    """Once a worker has the app loaded, hide everything loaded so far from the garbage collector.

    A 1000-row request creates thousands of small lists and dicts, so Python's cyclic garbage
    collector runs often, and its full passes walked the objects of Flask, the engine and the model
    (about 110,000 with scikit-learn, 40,000 with ONNX Runtime), which never become garbage: with
    scikit-learn that doubled the CPU time of a 1000-row request (make bench). gc.freeze() moves
    them out of its sight for good, so later passes neither walk them nor write to the memory pages the worker still shares with the master. Objects
    created later are collected as usual. Python's documentation of gc.freeze() gives a fuller
    recipe for forking servers (gc.disable() early in the parent, gc.freeze() just before
    fork(), gc.enable() in each child), which also keeps the parent's collections from leaving
    holes in shared pages before the fork; this hook is the simpler part that paid here.
    """
    gc.freeze()


def worker_exit(server, worker):
    """End a worker that has onnxruntime loaded at once, with the exit status it was leaving with.

    gunicorn calls this in the worker itself, last, while the worker's SystemExit is on its way out
    (arbiter.py, spawn_worker: `finally:` ... `self.cfg.worker_exit(self, worker)`). With preload_app,
    the master imported onnxruntime before it forked the workers, and a forked copy of onnxruntime
    cannot tear down what it was given: a worker leaving the usual way aborts ("terminate called
    after throwing an instance of 'std::system_error'") or hangs at its very end. Everything the worker
    had to do is done by now, so it writes out what it has buffered and leaves without the teardown.
    """
    import sys

    if "onnxruntime" not in sys.modules:
        return
    leaving = sys.exc_info()[1]
    status = leaving.code if isinstance(leaving, SystemExit) else 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status if isinstance(status, int) else 1)
