"""Lesson 09: app.py serves final_app with a key, request ids and the prediction log, as python app.py and under flask."""
import sys
from pathlib import Path

import pytest
import requests

from conftest import LESSON_APP_COMMANDS
from lesson_helpers import running

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "09_public"
KEY = "lesson-09-key-not-a-secret"
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.mark.parametrize("command", LESSON_APP_COMMANDS.values(), ids=LESSON_APP_COMMANDS.keys())
def test_app_py_needs_the_lessons_key_and_logs_each_prediction(command):
    with running(command, cwd=LESSON, ready_path="/health") as (base_url, server):
        without = requests.post(base_url + "/predict", json={"instances": [ROW]}, timeout=10)
        with_key = requests.post(base_url + "/predict", json={"instances": [ROW]}, timeout=10,
                                 headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "lesson-09-test-request-1"})
        health = requests.get(base_url + "/health", timeout=10)
    output = server.stdout.read()
    assert without.status_code == 401 and without.headers["WWW-Authenticate"] == 'Bearer realm="predict"'
    assert with_key.status_code == 200 and with_key.headers["X-Request-ID"] == "lesson-09-test-request-1"
    assert health.status_code == 200
    assert "rows=1 status=200 duration_ms=" in output and "request_id=lesson-09-test-request-1" in output
    assert KEY not in output


def test_settings_in_the_environment_win_over_the_lessons_defaults():
    with running([sys.executable, "app.py"], cwd=LESSON, env={"API_KEYS": "another-key-0123456789"},
                 ready_path="/health") as (base_url, _server):
        lesson_key = requests.post(base_url + "/predict", json={"instances": [ROW]}, timeout=10,
                                   headers={"Authorization": f"Bearer {KEY}"})
        own_key = requests.post(base_url + "/predict", json={"instances": [ROW]}, timeout=10,
                                headers={"Authorization": "Bearer another-key-0123456789"})
    assert (lesson_key.status_code, own_key.status_code) == (401, 200)
