"""Lesson 07: what its measurements show, checked by counting the work, or timed alone with wide margins.

The notebook prints the measured numbers without the tests comparing them; the claims it makes
about them are checked here. Timed tests are marked serial: `make test` runs them after the
parallel pass, one at a time, and each asserts a ratio several times below what it measures.
"""
import collections
import json
import sys
import timeit
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
from sklearn.datasets import load_iris

from conftest import calls_made
from final_app.linear import fast_predict_proba, rows_within_bounds
from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "07_performance"
# The notebook's 1000 rows: the 150 iris flowers, repeated.
ROWS = np.resize(load_iris().data, (1000, 4))


@pytest.fixture(scope="module")
def lesson_app():
    """The lesson's app module: the final_app model behind /predict and /predict_each."""
    return import_lesson_file("07_performance", "app")


@pytest.fixture(scope="module")
def direct(lesson_app):
    """final_app's predict_proba without the input checks, for the lesson's model."""
    function = fast_predict_proba(lesson_app.model, rows_within_bounds(lesson_app.metadata["features"]))
    assert function is not None
    return function


def best_seconds(function, number):
    """Return the fastest of 5 rounds of number calls, in seconds per call: the least disturbed by load."""
    return min(timeit.repeat(function, number=number, repeat=5)) / number


# --- counted: the same on any machine, however busy ---------------------------------------------

def test_predict_calls_the_model_once_per_request_and_predict_each_once_per_row(lesson_app, monkeypatch):
    calls = []
    real_predict_proba = lesson_app.model.predict_proba

    def counting_predict_proba(rows):
        calls.append(len(rows))
        return real_predict_proba(rows)

    monkeypatch.setattr(lesson_app.model, "predict_proba", counting_predict_proba)
    client = lesson_app.app.test_client()
    body = {"instances": ROWS[:100].tolist()}
    batched = client.post("/predict", json=body)
    assert batched.status_code == 200
    assert calls == [100]
    calls.clear()
    one_by_one = client.post("/predict_each", json=body)
    assert one_by_one.status_code == 200
    assert calls == [1] * 100
    labels = [[p["label"] for p in answer.get_json()["predictions"]] for answer in (batched, one_by_one)]
    assert labels[0] == labels[1] and len(labels[0]) == 100


def test_predict_proba_does_the_same_work_for_1000_rows_as_for_one_outside_its_arithmetic(lesson_app):
    lesson_app.model.predict_proba(ROWS[:1])  # the first call fills caches: count the later ones
    one_row = calls_made(lambda: lesson_app.model.predict_proba(ROWS[:1]))
    thousand_rows = calls_made(lambda: lesson_app.model.predict_proba(ROWS))
    assert thousand_rows < 1.1 * one_row, (thousand_rows, one_row)


def test_without_the_input_checks_one_row_takes_a_tenth_of_the_calls(lesson_app, direct):
    lesson_app.model.predict_proba(ROWS[:1])
    direct(ROWS[:1])
    checked = calls_made(lambda: lesson_app.model.predict_proba(ROWS[:1]))
    unchecked = calls_made(lambda: direct(ROWS[:1]))
    assert checked > 10 * unchecked, (checked, unchecked)


# --- timed, alone, with wide margins ------------------------------------------------------------

@pytest.mark.serial
def test_one_call_for_1000_rows_is_over_100_times_faster_per_row_than_one_call_per_row(lesson_app):
    per_row_batched = best_seconds(lambda: lesson_app.model.predict_proba(ROWS), 20) / len(ROWS)
    per_row_one_by_one = best_seconds(lambda: lesson_app.model.predict_proba(ROWS[:1]), 200)
    # Measured on 2 cores: about 700 times.
    assert per_row_one_by_one > 100 * per_row_batched


@pytest.mark.serial
def test_without_the_input_checks_one_row_is_over_10_times_faster(lesson_app, direct):
    checked = best_seconds(lambda: lesson_app.model.predict_proba(ROWS[:1]), 200)
    unchecked = best_seconds(lambda: direct(ROWS[:1]), 200)
    # Measured on 2 cores: about 28 times.
    assert checked > 10 * unchecked


@pytest.mark.serial
def test_over_http_predict_answers_100_rows_over_5_times_faster_than_predict_each():
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", "127.0.0.1:{port}", "app:app"]
    body = json.dumps({"instances": ROWS[:100].tolist()})
    headers = {"Content-Type": "application/json"}
    with running(command, cwd=LESSON, ready_path="/health") as (base_url, _server), requests.Session() as session:
        def post(path):
            response = session.post(base_url + path, data=body, headers=headers, timeout=30)
            assert response.status_code == 200
        batched = best_seconds(lambda: post("/predict"), 10)
        one_by_one = best_seconds(lambda: post("/predict_each"), 2)
    # Measured on 2 cores: about 15 times.
    assert one_by_one > 5 * batched


class FakeProcess:
    """A psutil process with one child, whose memory_full_info gives another system's fields, or raises."""

    def __init__(self, pid, fields=None, error=None, children=()):
        self.pid, self.fields, self.error, self._children = pid, fields, error, list(children)

    def children(self, recursive=False):
        return self._children

    def memory_full_info(self):
        if self.error:
            raise self.error
        return collections.namedtuple("pfullmem", self.fields)(**self.fields)


MACOS_INFO = {"rss": 2**26, "vms": 2**28, "pfaults": 0, "pageins": 0, "uss": 2**25}  # no pss
LINUX_INFO = {"rss": 2**26, "vms": 2**28, "uss": 2**25, "pss": 2**25 + 2**24, "swap": 0}


@pytest.mark.parametrize("master, reason", [
    (FakeProcess(1, MACOS_INFO, children=[FakeProcess(2, MACOS_INFO)]), "PSS is measured on Linux only"),
    (FakeProcess(1, LINUX_INFO, children=[FakeProcess(2, error=psutil.AccessDenied(2))]),
     "not allowed to read the memory of process 2"),
], ids=["no PSS on this system", "a worker we may not read"])
def test_memory_that_cannot_be_read_is_unknown_with_the_reason(monkeypatch, master, reason):
    measure = import_lesson_file("07_performance", "measure")
    monkeypatch.setattr(measure.psutil, "Process", lambda pid: master)
    memory = measure.process_tree_pss_mb(1)
    assert (memory["master_mb"], memory["workers_mb"], memory["workers"]) == (None, None, 1)
    assert reason in memory["unknown"]


def test_memory_is_the_pss_where_linux_reports_it(monkeypatch):
    measure = import_lesson_file("07_performance", "measure")
    master = FakeProcess(1, LINUX_INFO, children=[FakeProcess(2, LINUX_INFO)])
    monkeypatch.setattr(measure.psutil, "Process", lambda pid: master)
    assert measure.process_tree_pss_mb(1) == {"master_mb": 48.0, "workers_mb": 48.0, "workers": 1, "unknown": None}
