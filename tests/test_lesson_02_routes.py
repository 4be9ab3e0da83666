"""Lesson 02: each route is a URL path; other paths give 404, other methods 405."""
import pathlib
import sys

import pytest
import requests

from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = pathlib.Path(__file__).resolve().parent.parent / "lessons" / "02_routes"
FLASK_COMMAND = str(pathlib.Path(sys.executable).with_name("flask"))


@pytest.fixture
def client():
    """A test client for the lesson's app: no server, no port."""
    return import_lesson_file("02_routes").app.test_client()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/", "Home page"),
        ("/hi", "Hi there!"),
        ("/hello/Ada", "Hello, Ada!"),
        ("/hello/Grace%20Hopper", "Hello, Grace Hopper!"),
        ("/echo", "You sent a GET request"),
    ],
)
def test_each_route_answers_its_path(client, path, body):
    response = client.get(path)
    assert response.status_code == 200
    assert response.text == body


def test_the_name_in_the_url_is_escaped(client):
    response = client.get("/hello/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert response.status_code == 200
    assert "<img" not in response.text
    assert response.text == "Hello, &lt;img src=x onerror=alert(1)&gt;!"


@pytest.mark.parametrize("path", ["/nowhere", "/hi/", "/HI", "/hello", "/hello/", "/hello/a/b"])
def test_a_path_no_route_declares_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "Not Found" in response.text


def test_echo_accepts_post(client):
    response = client.post("/echo")
    assert response.status_code == 200
    assert response.text == "You sent a POST request"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/hi", {"GET", "HEAD", "OPTIONS"}),
        ("DELETE", "/hello/Ada", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/echo", {"GET", "HEAD", "OPTIONS", "POST"}),
    ],
)
def test_a_method_the_route_does_not_allow_is_405(client, method, path, allowed):
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert "Method Not Allowed" in response.text
    assert set(response.headers["Allow"].split(", ")) == allowed


def test_python_app_py_serves_the_routes():
    with running([sys.executable, "app.py"], cwd=LESSON) as (base_url, _):
        hi = requests.get(base_url + "/hi", timeout=10)
        missing = requests.get(base_url + "/nowhere", timeout=10)
        wrong_method = requests.post(base_url + "/hi", timeout=10)
    assert (hi.status_code, hi.text) == (200, "Hi there!")
    assert missing.status_code == 404
    assert wrong_method.status_code == 405


def test_flask_run_serves_the_routes():
    command = [FLASK_COMMAND, "--app", "app", "run", "--port", "{port}"]
    with running(command, cwd=LESSON) as (base_url, _):
        response = requests.get(base_url + "/hello/Ada", timeout=10)
    assert (response.status_code, response.text) == (200, "Hello, Ada!")
