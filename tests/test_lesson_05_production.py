"""Lesson 05: where FLASK_DEBUG cannot turn the debugger on (gunicorn, python app.py), and where it can."""
import shlex
import sys
from pathlib import Path

import requests

from lesson_helpers import running, stop

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "lessons" / "05_production"
BIN = Path(sys.executable).parent
CONSOLE_TITLE = "Console // Werkzeug Debugger"


def procfile_web_command():
    """The Procfile's web command as a list, its programs taken from this environment's bin folder."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    return [str(BIN / words[0]), *words[1:]]


def console_page(base_url):
    """GET the debugger's console URL; return (status, text)."""
    response = requests.get(base_url + "/console", timeout=10)
    return response.status_code, response.text


def serve_and_ask_for_the_console(command, cwd):
    """Serve command with FLASK_DEBUG=1 and ask for /console; return (status, text, server output)."""
    with running(command, cwd=cwd, env={"FLASK_DEBUG": "1", "MODEL_DIR": ""}, ready_path="/health") as (
            base_url, server):
        status, text = console_page(base_url)
        stop(server)
        output = server.stdout.read()
    return status, text, output


def test_python_app_py_keeps_debug_off_under_flask_debug():
    status, text, output = serve_and_ask_for_the_console([sys.executable, "app.py"], LESSON)
    assert status == 404
    assert CONSOLE_TITLE not in text
    assert "Debug mode: off" in output
    assert "Debugger is active" not in output


def test_the_procfile_command_has_no_debugger_under_flask_debug():
    status, text, _output = serve_and_ask_for_the_console(procfile_web_command(), ROOT)
    assert status == 404
    assert CONSOLE_TITLE not in text


def test_flask_run_debug_still_adds_the_debugger_where_the_guarantee_stops():
    """What the lesson says cannot be prevented: `flask run --debug` wraps the app in the debugger itself."""
    command = [str(BIN / "flask"), "--app", "app", "run", "--debug", "--port", "{port}"]
    with running(command, cwd=LESSON, env={"MODEL_DIR": ""}, ready_path="/health") as (base_url, _server):
        status, text = console_page(base_url)
    assert status == 200
    assert CONSOLE_TITLE in text
