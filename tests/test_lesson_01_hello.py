"""Lesson 01: the smallest Flask app answers "Hello world" at / and nothing else."""
import pathlib
import sys

import pytest
import requests

from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = pathlib.Path(__file__).resolve().parent.parent / "lessons" / "01_hello"
FLASK_COMMAND = str(pathlib.Path(sys.executable).with_name("flask"))


@pytest.fixture
def client():
    """A test client for the lesson's app: no server, no port."""
    return import_lesson_file("01_hello").app.test_client()


def test_root_says_hello_world(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello world"
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("path", ["/hello", "/index.html", "/Hello%20world"])
def test_a_path_without_a_route_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "Not Found" in response.text


def test_posting_to_a_get_route_is_405_with_allow_header(client):
    response = client.post("/")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_python_app_py_serves_hello_world():
    with running([sys.executable, "app.py"], cwd=LESSON) as (base_url, _):
        response = requests.get(base_url + "/", timeout=10)
        missing = requests.get(base_url + "/missing", timeout=10)
    assert (response.status_code, response.text) == (200, "Hello world")
    assert missing.status_code == 404


def test_flask_run_serves_hello_world():
    command = [FLASK_COMMAND, "--app", "app", "run", "--port", "{port}"]
    with running(command, cwd=LESSON) as (base_url, _):
        response = requests.get(base_url + "/", timeout=10)
    assert (response.status_code, response.text) == (200, "Hello world")
