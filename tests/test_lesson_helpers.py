"""lessons/lesson_helpers.py: servers start on a free loopback port, keep running, and always stop."""
import sys

import psutil
import pytest
import requests
from conftest import ROOT

from lesson_helpers import loopback_gunicorn_args, running

GUNICORN = str(ROOT / ".venv" / "bin" / "gunicorn") if (ROOT / ".venv" / "bin" / "gunicorn").exists() else "gunicorn"

# Prints far more than a pipe holds (64 KiB) before it starts serving.
CHATTY_SERVER = """
import http.server, os
print("x" * 100)
for _ in range(5000):
    print("a log line of about eighty characters, written before the server starts ........")
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def test_a_server_that_writes_more_than_a_pipe_holds_still_starts_and_answers(tmp_path):
    with running([sys.executable, "-c", CHATTY_SERVER], cwd=tmp_path, timeout=20) as (base_url, process):
        response = requests.get(base_url + "/", timeout=10)
        first_line = process.stdout.readline()
    assert response.status_code == 200
    assert first_line.startswith("x" * 100)
    assert process.poll() is not None, "the server is stopped when the with-block ends"


def test_gunicorn_started_by_running_listens_on_loopback_only():
    command = [GUNICORN, "--config", "gunicorn.conf.py", "final_app.wsgi:app"]
    with running(command, cwd=ROOT, ready_path="/health") as (base_url, process):
        listening = {c.laddr.ip for c in psutil.Process(process.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert requests.get(base_url + "/health", timeout=10).status_code == 200
    assert listening == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ("", "--bind 127.0.0.1:5000"),
        ("--workers 1", "--bind 127.0.0.1:5000 --workers 1"),
        ("--bind 0.0.0.0:8080", "--bind 0.0.0.0:8080"),
        ("-b [::]:8080 --workers 1", "-b [::]:8080 --workers 1"),
        ("--bind=127.0.0.2:9000", "--bind=127.0.0.2:9000"),
    ],
)
def test_loopback_gunicorn_args_adds_a_bind_unless_one_is_given(existing, expected):
    assert loopback_gunicorn_args(5000, existing) == expected
