"""Lesson 07: what its measurements show, checked by counting the work, or timed alone with wide margins.

The notebook prints the measured numbers without the tests comparing them; the claims it makes
about them are checked here. Timed tests are marked serial: `make test` runs them after the
parallel pass, one at a time, and each asserts a ratio well below what it measures.
"""
import collections
import json
import subprocess
import sys
import timeit
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
from sklearn.datasets import load_iris

from conftest import calls_made
from final_app.app import Predictor
from final_app.artifact import load_engine, load_model_and_metadata
from final_app.engines import SklearnEngine
from final_app.validation import InstanceValidator
from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "07_performance"
ROOT = LESSON.parent.parent
PENGUINS = ROOT / "lessons" / "08_own_model" / "models" / "penguins"
# The notebook's 1000 rows: the 150 iris flowers, repeated.
ROWS = np.resize(load_iris().data, (1000, 4))


@pytest.fixture(scope="module")
def lesson_app():
    """The lesson's app module: the final_app model behind /predict and /predict_each."""
    return import_lesson_file("07_performance", "app")


@pytest.fixture(scope="module")
def parts():
    """The lesson's request_parts.py: final_app's request timed part by part."""
    return import_lesson_file("07_performance", "request_parts")


@pytest.fixture(scope="module")
def iris_engines():
    """(the engine final_app serves the iris model with, the scikit-learn engine, the metadata)."""
    served, metadata = load_engine()
    model, _metadata = load_model_and_metadata()
    return served, SklearnEngine(model, metadata), metadata


@pytest.fixture(scope="module")
def penguin_engines():
    """(served engine, scikit-learn engine, the example penguin as final_app checks it) for lesson 08's classifier."""
    served, metadata = load_engine(PENGUINS)
    model, _metadata = load_model_and_metadata(PENGUINS)
    penguin = InstanceValidator(metadata, max_rows=1).checked({"instances": [metadata["example"]]})
    return served, SklearnEngine(model, metadata), penguin


@pytest.fixture(scope="module")
def final_app_app():
    """final_app as gunicorn serves it: the iris model, answered by its graph."""
    from final_app.app import create_app

    return create_app({"MODEL_DIR": None})  # the package's model, whatever MODEL_DIR says


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


def test_final_app_serves_iris_with_the_graph_and_its_answers_are_the_models_own(iris_engines):
    served, sklearn_engine, metadata = iris_engines
    assert served.name == "onnx" and metadata["engine"]["precision"] == "double"
    proof = metadata["engine"]["checked"]
    assert proof["largest_difference"] <= proof["relative_tolerance"]
    graph_labels, graph_probabilities = served.answers(ROWS)
    model_labels, model_probabilities = sklearn_engine.answers(ROWS)
    assert graph_labels.tolist() == model_labels.tolist()
    assert np.allclose(graph_probabilities, model_probabilities,
                       rtol=proof["relative_tolerance"], atol=proof["absolute_tolerance"])
    assert not np.allclose(graph_probabilities, np.roll(model_probabilities, 1, axis=1),  # the check can fail
                           rtol=proof["relative_tolerance"], atol=proof["absolute_tolerance"])


@pytest.mark.parametrize("size", [1, 1000])
def test_request_parts_times_every_part_of_what_final_app_does(parts, iris_engines, final_app_app, size):
    served, sklearn_engine, metadata = iris_engines
    for engine in (served, sklearn_engine):
        seconds = parts.part_seconds(engine, metadata, ROWS[:size].tolist(), number=1)
        assert list(seconds) == parts.PARTS
        assert all(0 < value < 1 for value in seconds.values())
    assert 0 < parts.whole_request_seconds(final_app_app, ROWS[:size].tolist(), number=1) < 1


def test_the_parts_are_final_apps_own_request(parts, iris_engines, final_app_app):
    # What request_parts times, put together, gives the very answer final_app sends.
    served, _sklearn_engine, metadata = iris_engines
    rows = ROWS[:3].tolist()
    validator = InstanceValidator(metadata, max_rows=10)
    checked = validator.checked(validator.parse(json.dumps({"instances": rows}).encode()))
    predictor = Predictor(parts.Computed(served.answers(checked)), metadata)
    response = final_app_app.test_client().post("/predict", json={"instances": rows})
    assert response.status_code == 200
    expected = {"model_version": metadata["model_version"], "predictions": predictor.predict(checked)}
    assert response.get_json() == expected


def test_for_one_row_the_graph_makes_a_tenth_of_the_calls_of_scikit_learn(iris_engines, penguin_engines):
    served, sklearn_engine, _metadata = iris_engines
    for graph, model, row in [(served, sklearn_engine, ROWS[:1]), penguin_engines]:
        graph.answers(row), model.answers(row)  # the first calls fill caches: count the later ones
        assert 10 * calls_made(lambda: graph.answers(row)) < calls_made(lambda: model.answers(row))


def test_the_penguins_are_served_by_a_float_graph_with_the_models_own_label(penguin_engines):
    served, sklearn_engine, penguin = penguin_engines
    assert served.name == "onnx" and served.float_type == np.float32
    assert served.answers(penguin)[0].tolist() == sklearn_engine.answers(penguin)[0].tolist()


def test_the_web_process_imports_onnxruntime_and_not_scikit_learn():
    script = ("import sys; from final_app.wsgi import app; "
              "print([name for name in ('sklearn', 'scipy', 'pandas', 'onnxruntime') if name in sys.modules])")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['onnxruntime']"


# --- timed, alone, with wide margins ------------------------------------------------------------

@pytest.mark.serial
def test_one_call_for_1000_rows_is_over_100_times_faster_per_row_than_one_call_per_row(lesson_app):
    per_row_batched = best_seconds(lambda: lesson_app.model.predict_proba(ROWS), 20) / len(ROWS)
    per_row_one_by_one = best_seconds(lambda: lesson_app.model.predict_proba(ROWS[:1]), 200)
    # Measured on 2 cores: about 700 times.
    assert per_row_one_by_one > 100 * per_row_batched


@pytest.mark.serial
def test_for_one_row_the_graph_is_over_5_times_as_fast_as_scikit_learn(parts, iris_engines):
    served, sklearn_engine, _metadata = iris_engines
    graph = parts.best_seconds(lambda: served.answers(ROWS[:1]), 200)
    model = parts.best_seconds(lambda: sklearn_engine.answers(ROWS[:1]), 200)
    # Measured on 2 cores: 25 to 45 times.
    assert model > 5 * graph


@pytest.mark.serial
def test_for_one_penguin_the_graph_is_over_50_times_as_fast_as_scikit_learn(parts, penguin_engines):
    served, sklearn_engine, penguin = penguin_engines
    graph = parts.best_seconds(lambda: served.answers(penguin), 200)
    model = parts.best_seconds(lambda: sklearn_engine.answers(penguin), 5)
    # Measured on 2 cores: about 330 times.
    assert model > 50 * graph


@pytest.fixture(scope="module")
def measured(parts, iris_engines, final_app_app):
    """The notebook's table: ({(rows, engine name): {part: seconds}}, {rows: Flask's own seconds})."""
    served, sklearn_engine, metadata = iris_engines
    times, flask = {}, {}
    for size, number in [(1, 200), (1000, 10)]:
        for engine in (served, sklearn_engine):
            times[size, engine.name] = parts.part_seconds(engine, metadata, ROWS[:size].tolist(), number)
        whole = parts.whole_request_seconds(final_app_app, ROWS[:size].tolist(), number)
        flask[size] = whole - sum(times[size, served.name].values())
    return times, flask


@pytest.mark.serial
def test_for_one_row_with_scikit_learn_the_model_is_most_of_the_request(measured):
    times, flask = measured
    one = times[1, "sklearn"]
    rest = sum(one.values()) - one["the model"] + flask[1]
    # Measured on 2 cores: 3 to 4 times.
    assert one["the model"] > 1.5 * rest


@pytest.mark.serial
def test_for_one_row_with_the_graph_flask_costs_more_than_the_model(measured):
    times, flask = measured
    # Measured on 2 cores: about 10 times.
    assert flask[1] > 3 * times[1, "onnx"]["the model"]


@pytest.mark.serial
@pytest.mark.parametrize("engine, margin", [("onnx", 3), ("sklearn", 1.2)])
def test_for_1000_rows_json_checks_and_dicts_cost_more_than_the_model(measured, engine, margin):
    times, _flask = measured
    rows = times[1000, engine]
    # Measured on 2 cores: 5 to 7 times with the graph, 1.5 to 3 times with scikit-learn.
    assert sum(rows.values()) - rows["the model"] > margin * rows["the model"]


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
