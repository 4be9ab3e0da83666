"""Fixtures and set-up shared by every test module."""
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Python 3.11+ debugpy warns about frozen modules in every kernel it starts; the kernels
# nbval starts inherit this environment, so set it before any of them is launched.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

# lessons/lesson_helpers.py starts and stops real servers; notebooks and tests share it.
sys.path.insert(0, str(ROOT / "lessons"))


# The gunicorn installed next to the Python running the tests (.venv/bin under `make test`).
GUNICORN = str(pathlib.Path(sys.executable).parent / "gunicorn")

# The two ways a lesson's app.py is started, as its notebook and README say: {port} is filled in by running().
LESSON_APP_COMMANDS = {
    "python app.py": [sys.executable, "app.py"],
    "flask --app app run": [str(pathlib.Path(sys.executable).parent / "flask"), "--app", "app", "run", "--port", "{port}"],
}


# --- how many processes share the work -----------------------------------------------------------
import pytest  # noqa: E402  (kept with the hooks and fixtures it serves)

MAX_WORKERS = 6  # the longest files (the preflight, lessons 05 and 06) take 30-40 s each: more cannot help


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: unknown when it is off (-p no:xdist)
def pytest_xdist_auto_num_workers(config):
    """`make test` runs `pytest -n auto`: one process more than the cores this process may use.

    Most tests start a server, a kernel or a browser and wait for it, and a process that waits
    leaves its core idle: on 2 cores, 3 processes finished the suite about 10 % sooner than 2
    (4 no sooner than 3). PYTEST_XDIST_AUTO_NUM_WORKERS, when set, decides instead.
    """
    given = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return min(usable_cores() + 1, MAX_WORKERS)


def usable_cores():
    """Return how many cores this process may run on (Linux's affinity mask where there is one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_collection_finish(session):
    """Give the models this process runs one thread per call, as gunicorn.conf.py gives final_app's.

    The test modules imported scikit-learn while collecting, so its OpenMP and numpy's OpenBLAS
    are loaded now. Several test processes share the cores, so a model's own threads only compete
    with them: under that load, 200 one-row requests to lesson 08's HistGradientBoosting model
    took 19.4 s with the default threads and 0.9 s with one. Servers the tests start are
    separate processes: gunicorn.conf.py decides for final_app's, by OMP_NUM_THREADS.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


# --- final_app fixtures -------------------------------------------------------------------------


@pytest.fixture
def app():
    """A fresh final_app, built exactly as gunicorn builds it (create_app with no config)."""
    from final_app.app import create_app

    return create_app()


@pytest.fixture
def logged():
    """Everything final_app logs during the test, formatted as on stdout (a StringIO)."""
    import io
    import logging

    from final_app.app import LOG, create_app

    create_app()  # makes sure final_app's stdout handler, and so its formatter, exists
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LOG.handlers[0].formatter)
    LOG.addHandler(handler)
    yield stream
    LOG.removeHandler(handler)


@pytest.fixture
def client(app):
    """A test client for the app fixture: requests without a server or a port."""
    return app.test_client()


@pytest.fixture(scope="session")
def trained():
    """(model, metadata) loaded through the same verification the app uses."""
    from final_app.artifact import load_model_and_metadata

    return load_model_and_metadata()


@pytest.fixture(scope="session")
def iris_rows():
    """Every row of the iris data set, as plain Python lists of floats in model order."""
    from sklearn.datasets import load_iris

    return load_iris().data.tolist()


# --- fuzzing: shared by test_fuzz.py (iris) and test_examples.py (other models) -----------------

def fuzz_settings(examples):
    """Hypothesis settings: repeatable examples, a bounded count, no timing assertions."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def api_schema(app):
    """schemathesis's view of app's own OpenAPI document, for tests that call every operation."""
    import schemathesis

    # Over-long "instances" arrays break the schema's maxItems and are refused with 413, as documented.
    config = schemathesis.config.SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": ["400", "405", "413", "415"]}}})
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


# Hypothesis keeps a cache in ./.hypothesis by default; a folder of that name at the top makes
# pytest warn (an error here) on every later run, so keep the cache with pytest's own.
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

set_hypothesis_home_dir(ROOT / ".pytest_cache" / "hypothesis")


def calls_made(function):
    """Return how many function calls (Python and C) function() makes: its work, counted rather than timed."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        count += event in ("call", "c_call")

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return count


def assert_same_answers(predictions, labels, probabilities, metadata):
    """Assert the API's answers are the model's own: labels identical, numbers within the engine's tolerance.

    labels and probabilities (None for a regressor, whose labels are its values) come from the
    scikit-learn model itself; the tolerance is the one model.json states for the engine serving it.
    """
    import numpy as np

    checked = metadata.get("engine", {}).get("checked") or metadata["checked"]
    close = {"rtol": checked["relative_tolerance"], "atol": checked["absolute_tolerance"]}
    if metadata["task"] == "regression":
        assert np.allclose([answer["value"] for answer in predictions], labels, **close)
        return
    assert [answer["label"] for answer in predictions] == np.asarray(labels).tolist()
    if probabilities is not None:
        served = [list(answer["probabilities"].values()) for answer in predictions]
        assert np.allclose(served, probabilities, **close)
