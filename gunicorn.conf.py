"""How gunicorn runs final_app: on Heroku, in a local rehearsal, and in development.

gunicorn reads this file because the Procfile says `--config gunicorn.conf.py`.
It is plain Python: every top-level name below is one gunicorn setting.

Production (the default):   gunicorn --config gunicorn.conf.py final_app.app:app
Development (make serve):   GUNICORN_DEV=1 gunicorn --config gunicorn.conf.py final_app.app:app
"""
import os
import socket

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

# Worker processes serve requests in parallel. Heroku sets WEB_CONCURRENCY for the dyno size
# (2 on a 512 MB Basic or Eco dyno); 2 is also our local default.
workers = 1 if DEVELOPMENT else int(os.environ.get("WEB_CONCURRENCY", "2"))

# ---- Concurrency inside each worker: the one place to change it -----------------------------
# "gthread" gives every worker a pool of threads, so a slow client (a phone on a bad network)
# ties up one thread, not a whole process, and the router's connections stay open between
# requests. Chosen with `make bench` on 2 cores (bench/RESULTS.md): "sync", and "gthread" with
# 1, 2 or 4 threads, cost the same CPU per request within the noise (about 0.55 ms for one row,
# 3.4 ms for 1000 rows), but with 1 thread a worker served 20-30 % fewer one-row requests:
# it sits idle while its only thread waits on the network. 4 threads keep that overlap.
# One cost was seen: a gthread worker keeps the connections it accepts, and in 2 of 5 rounds
# one worker held all 8 of the benchmark's connections while the other idled, halving the
# 1000-row throughput. "sync" takes one request at a time and never did that, but a single
# slow client then blocks a whole worker, so gthread stays.
# To compare settings: make bench BENCH_ARGS='--gunicorn-args="--threads 2"'
worker_class = "gthread"
threads = 4
# ----------------------------------------------------------------------------------------------

# Import the app (and load the model) once in the master process, then fork the workers:
# they share the model's memory instead of each loading a copy, and a broken model stops the
# server at start-up with one clear error instead of crashing every worker in turn.
# Development turns it off so that a code change can be reloaded into fresh workers.
preload_app = not DEVELOPMENT

# Development only: restart the workers when a Python file changes.
reload = DEVELOPMENT

# A worker that does not check in with the master for this many seconds is killed and replaced.
# A gthread worker checks in even while its threads serve requests, so this catches a hung
# process; a slow request is cut by Heroku's router after 30 s (error H12) anyway.
timeout = 20

# On SIGTERM (a deploy, a restart, `heroku ps:scale web=0`) workers get this long to finish the
# requests they are serving. Heroku sends SIGKILL 30 s after SIGTERM, so stay well under it.
graceful_timeout = 20

# Keep an idle connection open this many seconds. Heroku's router keeps its connections to a
# dyno idle for up to 90 s; staying open longer means the router, not us, closes them, so it
# never sends a request down a connection we are closing at that moment.
keepalive = 100

# One line per request to stdout ("-"), where Heroku (and honcho) collect logs.
# The request id is set by Heroku's router: search for it in `heroku logs` to follow a request.
accesslog = "-"
access_log_format = (
    'method=%(m)s path="%(U)s" status=%(s)s bytes=%(B)s duration_ms=%(M)s '
    'request_id=%({x-request-id}i)s'
)

# gunicorn's own messages (start-up, worker restarts, errors) go to stderr ("-"); Heroku and
# honcho collect stderr and stdout alike.
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# gunicorn can open a management socket in your home folder; a dyno does not need it, and two
# servers on one machine (tests, a rehearsal) would fight over the same file.
control_socket_disable = True
