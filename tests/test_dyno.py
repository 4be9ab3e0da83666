"""tools/dyno.py: the environment a classic Heroku web dyno gives the Procfile's command."""
import subprocess
import sys

import pytest

from conftest import ROOT
from tools.dyno import dyno_environment, on_loopback, web_concurrency


@pytest.mark.parametrize("memory_mb, cores, expected", [
    (512, 8, 2),      # Eco, Basic, Standard-1X: capped by memory
    (1024, 8, 4),     # Standard-2X
    (2560, 2, 5),     # Performance-M: capped by the 2 cores (2 x 2 + 1)
    (14336, 8, 17),   # Performance-L
    (128, 4, 1),      # below 256 MB: never 0
])
def test_web_concurrency_as_the_buildpack_computes_it(memory_mb, cores, expected):
    assert web_concurrency(memory_mb, cores) == expected


def test_a_dyno_adds_what_the_buildpack_scripts_export():
    env = dyno_environment({"PATH": "/bin"}, cores=2)
    assert env == {"PATH": "/bin", "DYNO": "web.1", "WEB_CONCURRENCY": "2",
                   "GUNICORN_CMD_ARGS": "--access-logfile -", "FORWARDED_ALLOW_IPS": "*"}


def test_what_you_set_is_kept_as_on_heroku():
    env = dyno_environment({"WEB_CONCURRENCY": "3", "GUNICORN_CMD_ARGS": "--log-level info"})
    assert env["WEB_CONCURRENCY"] == "3" and env["GUNICORN_CMD_ARGS"] == "--log-level info"
    # ${GUNICORN_CMD_ARGS:-...} fills in an empty value too; [[ -v WEB_CONCURRENCY ]] keeps an empty one.
    env = dyno_environment({"WEB_CONCURRENCY": "", "GUNICORN_CMD_ARGS": ""})
    assert env["WEB_CONCURRENCY"] == "" and env["GUNICORN_CMD_ARGS"] == "--access-logfile -"
    assert "GUNICORN_DEV" not in dyno_environment({"GUNICORN_DEV": "1"})


def test_on_loopback_binds_127_0_0_1_and_keeps_the_access_log():
    env = on_loopback(dyno_environment({}), 5006)
    assert env["PORT"] == "5006"
    assert env["GUNICORN_CMD_ARGS"] == "--access-logfile - --bind 127.0.0.1:5006"


def test_the_command_line_runs_a_command_with_that_environment():
    script = "import os; print(os.environ['DYNO'], os.environ['GUNICORN_CMD_ARGS'])"
    result = subprocess.run([sys.executable, "-m", "tools.dyno", "--loopback-port", "5006", sys.executable, "-c",
                             script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "web.1 --access-logfile - --bind 127.0.0.1:5006"
    assert result.stdout.startswith("as on a web dyno: DYNO=web.1 WEB_CONCURRENCY=")
