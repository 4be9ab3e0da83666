"""The environment a Heroku web dyno gives the Procfile's command, to run it here as Heroku would.

Usage:  python -m tools.dyno [--loopback-port PORT] COMMAND [ARG ...]
runs COMMAND with that environment (`make rehearse` runs honcho this way).

Beyond your config vars, a web dyno on the classic (Cedar) stack with the Python buildpack has:
- PORT, set by the platform, and DYNO=web.1;
- what the buildpack's .profile.d scripts export when the dyno boots
  (vendor/WEB_CONCURRENCY.sh and vendor/python.gunicorn.sh in heroku-buildpack-python):
  - WEB_CONCURRENCY, only if it is not set at all: the lower of 2 x CPU cores + 1 and the
    memory in MB / 256 (at least 1). On a 512 MB dyno (Eco, Basic, Standard-1X) that is 2;
  - GUNICORN_CMD_ARGS="--access-logfile -", if it is unset or empty: gunicorn writes a line per
    request, whatever gunicorn.conf.py says, because these options win over the config file;
  - FORWARDED_ALLOW_IPS='*', so gunicorn trusts the router's X-Forwarded-* headers.
The Fir generation (Cloud Native Buildpacks) sets none of these three.
"""
import os
import shlex
import sys

DYNO_MEMORY_MB = 512  # Eco, Basic and Standard-1X dynos
MEMORY_PER_PROCESS_MB = 256


def web_concurrency(memory_mb=DYNO_MEMORY_MB, cores=None):
    """Return the WEB_CONCURRENCY the buildpack would choose for this memory and number of cores."""
    cores = cores or os.cpu_count() or 1
    by_memory = max(memory_mb // MEMORY_PER_PROCESS_MB, 1)
    return min(by_memory, 2 * cores + 1)


def dyno_environment(environ=None, memory_mb=DYNO_MEMORY_MB, cores=None):
    """Return environ (default: os.environ) with what a classic web dyno adds to it (PORT aside)."""
    env = dict(os.environ if environ is None else environ)
    env["DYNO"] = "web.1"
    if "WEB_CONCURRENCY" not in env:  # the script tests `-v`: set, even to "", means leave it
        env["WEB_CONCURRENCY"] = str(web_concurrency(memory_mb, cores))
    env["GUNICORN_CMD_ARGS"] = env.get("GUNICORN_CMD_ARGS") or "--access-logfile -"
    env["FORWARDED_ALLOW_IPS"] = "*"
    env.pop("GUNICORN_DEV", None)  # final_app's development switch: never on a dyno
    return env


def on_loopback(env, port):
    """Return env with gunicorn told to listen on 127.0.0.1:port only (a dyno listens on every interface)."""
    env = dict(env, PORT=str(port))
    env["GUNICORN_CMD_ARGS"] = f"{env.get('GUNICORN_CMD_ARGS', '')} --bind 127.0.0.1:{port}".strip()
    return env


def main(argv=None):
    """Run a command with the dyno's environment; return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    env = dyno_environment()
    if argv[:1] == ["--loopback-port"]:
        env, argv = on_loopback(env, argv[1]), argv[2:]
    if not argv:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print("as on a web dyno: " + " ".join(f"{name}={shlex.quote(env[name])}" for name in
          ("DYNO", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS", "FORWARDED_ALLOW_IPS")), flush=True)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    sys.exit(main())
