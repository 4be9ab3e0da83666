"""Lesson 03: debug mode is off unless asked for; when on, the reloader and debugger work."""
import pathlib
import shutil
import sys
import time

import pytest
import requests

from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = pathlib.Path(__file__).resolve().parent.parent / "lessons" / "03_debug"
FLASK_COMMAND = str(pathlib.Path(sys.executable).with_name("flask"))
DEBUGGER_TITLE = "ZeroDivisionError: division by zero\n // Werkzeug Debugger"


@pytest.fixture
def no_flask_debug(monkeypatch):
    """Make sure FLASK_DEBUG is not set, as on a fresh shell."""
    monkeypatch.delenv("FLASK_DEBUG", raising=False)


@pytest.fixture
def client(no_flask_debug):
    """A test client for the lesson's app, imported with FLASK_DEBUG unset."""
    return import_lesson_file("03_debug").app.test_client()


def test_debug_is_off_when_imported(no_flask_debug):
    assert import_lesson_file("03_debug").app.debug is False


def test_the_routes_answer(client):
    home = client.get("/")
    ratio = client.get("/ratio/6/3")
    assert (home.status_code, home.text) == (200, "Version 1 of the app")
    assert (ratio.status_code, ratio.text) == (200, "6 / 3 = 2.0")


def test_ratio_needs_whole_numbers(client):
    assert client.get("/ratio/6/x").status_code == 404


def test_the_bug_gives_a_plain_500_without_traceback(client):
    response = client.get("/ratio/1/0")
    assert response.status_code == 500
    assert "Internal Server Error" in response.text
    assert "Traceback" not in response.text
    assert "ZeroDivisionError" not in response.text


def test_python_app_py_keeps_debug_off_by_default(no_flask_debug):
    with running([sys.executable, "app.py"], cwd=LESSON) as (base_url, _):
        home = requests.get(base_url + "/", timeout=10)
        crash = requests.get(base_url + "/ratio/1/0", timeout=10)
    assert (home.status_code, home.text) == (200, "Version 1 of the app")
    assert crash.status_code == 500
    assert "Internal Server Error" in crash.text
    assert "Traceback" not in crash.text
    assert "Werkzeug Debugger" not in crash.text


@pytest.mark.parametrize(
    ("command", "env"),
    [
        ([FLASK_COMMAND, "--app", "app", "run", "--debug", "--port", "{port}"], {}),
        ([sys.executable, "app.py"], {"FLASK_DEBUG": "1"}),
    ],
    ids=["flask-run-debug", "FLASK_DEBUG=1-python-app.py"],
)
def test_debug_mode_shows_the_debugger_page(command, env):
    with running(command, cwd=LESSON, env=env) as (base_url, _):
        crash = requests.get(base_url + "/ratio/1/0", timeout=10)
    assert crash.status_code == 500
    assert DEBUGGER_TITLE in crash.text
    assert "Traceback" in crash.text
    assert "Console Locked" in crash.text


def test_the_reloader_serves_edited_code_without_a_restart(tmp_path):
    shutil.copy(LESSON / "app.py", tmp_path / "app.py")
    command = [FLASK_COMMAND, "--app", "app", "run", "--debug", "--port", "{port}"]
    with running(command, cwd=tmp_path) as (base_url, process):
        before = requests.get(base_url + "/", timeout=10).text
        edited = (tmp_path / "app.py").read_text().replace("Version 1", "Version 2")
        after = before
        deadline = time.monotonic() + 30
        while after == before and time.monotonic() < deadline:
            # Saving again is harmless; it covers a reloader that had not yet looked at the file.
            (tmp_path / "app.py").write_text(edited)
            time.sleep(0.5)
            try:
                after = requests.get(base_url + "/", timeout=10).text
            except requests.exceptions.ConnectionError:
                # The reloader swaps its process while keeping the socket: a request caught in
                # the swap is reset. Ask again until the deadline.
                continue
        still_running = process.poll() is None
    assert before == "Version 1 of the app"
    assert after == "Version 2 of the app"
    assert still_running
