"""Benchmark final_app against lean FastAPI references serving the same models; write RESULTS.md.

Run from the repository root (`make bench` does this, after installing the references'
own requirements into bench/.venv):

    .venv/bin/python bench/run.py [--rounds 7] [--seconds 5] [--connections 8] [--with-tests] [--no-lesson]

Two models, each served by two apps: the iris model (final_app's own; reference
bench/reference_app.py) and lesson 08's penguin classifier, a pipeline fitted on a pandas DataFrame
(final_app with MODEL_DIR set; reference bench/reference_penguins.py). The references are written
the lean way a competent user would: pydantic per row, predict_proba once per request, the label
by argmax over model.classes_. All the apps run at once on loopback, each on a free port, with 2
workers: final_app under its own Procfile command with the environment of a 512 MB classic web dyno
(tools/dyno.py: WEB_CONCURRENCY=2 and the buildpack's GUNICORN_CMD_ARGS, so gunicorn writes its
access log as on Heroku), the references under uvicorn. Each round loads each app in
turn with the same request; the report quotes medians over rounds, because this machine is
shared and noisy. Every server started here is stopped on exit.

In every round, two figures with no web at all are measured too, for each model: the
scikit-learn model's own predict_proba and final_app's engine
(final_app/engines.py: the ONNX graph, or the model itself) on the same rows.

One more final_app server runs with every option of final_app/public.py on (API_KEYS,
CORS_ORIGINS, REQUEST_IDS, PREDICTION_LOG=on): each round loads it and the iris final_app (every
option off) in turn with the same one-row request and the headers a browser client behind
Heroku's router sends (a valid key, a listed Origin, the router's X-Request-ID and X-Forwarded-*),
so the two differ only in the work the options do.

Two more final_app servers serve lesson 08's body-mass model (a HistGradientBoostingRegressor,
which scikit-learn runs on OpenMP threads): one with gunicorn.conf.py's default OMP_NUM_THREADS=1,
one with OMP_NUM_THREADS set to the machine's core count, what OpenMP uses when it is unset. Each
round loads both in turn with the same one-row and 1000-row requests. `--omp-only` measures this
alone and rewrites only its section of the report, leaving the full run's figures in place.
"""
import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy
import pandas
import psutil
import sklearn.datasets
import threadpoolctl
from palmerpenguins import load_penguins  # the data set ships with the package: no download

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # import final_app from this checkout
sys.path.insert(0, str(ROOT / "lessons"))  # lesson_helpers: free_port(), stop()
sys.path.insert(0, str(ROOT / "lessons" / "07_performance"))  # measure: the lesson's tools

from final_app.artifact import load_engine, load_model_and_metadata  # noqa: E402
from final_app.validation import InstanceValidator  # noqa: E402
from lesson_helpers import free_port, stop  # noqa: E402
from tools.dyno import DYNO_MEMORY_MB, dyno_environment  # noqa: E402
import measure  # noqa: E402

BATCH_ROWS = 1000
PENGUINS_DIR = ROOT / "lessons" / "08_own_model" / "models" / "penguins"
PENGUIN_MASS_DIR = ROOT / "lessons" / "08_own_model" / "models" / "penguin_mass"
CORES = os.cpu_count() or 1
# OpenMP threads per model call: gunicorn.conf.py's default (set there, so nothing is set here),
# and one per core, which is what OpenMP starts when OMP_NUM_THREADS is unset.
THREAD_SETTINGS = {"1": {}, str(CORES): {"OMP_NUM_THREADS": str(CORES)}}
THREADS_HEADING = "## Threads inside the model (OMP_NUM_THREADS)"
SIZES = {"single": 1, "batch": BATCH_ROWS}  # the two requests sent to every app: rows per request
LOPSIDED = 0.9  # a load run in which one process did more than this share of its server's work
IN_PROCESS = {"limit": "scikit-learn's predict_proba", "engine": "final_app's engine"}  # figures with no web
DEFAULT_OUTPUT = ROOT / "bench" / "RESULTS.md"
LESSON_NOTEBOOK = ROOT / "lessons" / "07_performance" / "07_performance.ipynb"
TARGETS = {  # name: (what it means, threshold, True if higher is better)
    "single_ratio": ("iris single-row req/s, final_app / lean reference", 1.2, True),
    "batch_ratio": ("iris 1000-row rows/s, final_app / lean reference", 3.0, True),
    "penguins_single_ratio": ("penguins (DataFrame pipeline) single-row req/s, final_app / lean reference", 3.0, True),
    "penguins_batch_ratio": ("penguins (DataFrame pipeline) 1000-row rows/s, final_app / lean reference", 5.0, True),
    "boot_seconds": ("final_app spawn to first /health 200 (s, median)", 1.5, False),
    "pss_workers_mb": ("final_app PSS of the 2 workers, master not counted (MB)", 160, False),
    "options_cost": ("options on cost < 5 % of one-row throughput (iris, all four on / off)", 0.05, False),
}
STRICT_TARGETS = {"options_cost"}  # "less than", not "at most"
# final_app with every option of final_app/public.py on, and what a client sends it through
# Heroku's router: its key, its page's origin, and the headers the router adds. The same headers
# go to final_app with the options off, so that only the server's work differs.
OPTIONS_KEY = "bench-key-0123456789abcdefABCDEF"
OPTIONS_ORIGIN = "https://front-end.example"
OPTIONS_ENV = {"API_KEYS": OPTIONS_KEY, "CORS_ORIGINS": OPTIONS_ORIGIN, "REQUEST_IDS": "on", "PREDICTION_LOG": "on"}
CLIENT_HEADERS = {
    "Authorization": f"Bearer {OPTIONS_KEY}",
    "Origin": OPTIONS_ORIGIN,
    "X-Request-ID": "3f0c8a52-6d1e-4b7a-9c2f-5e8d1a0b7c64",  # the router's: a UUID
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "443",
}
RATIO_TARGETS = {  # the targets that compare final_app with its reference: (model, request size)
    "single_ratio": ("iris", "single"),
    "batch_ratio": ("iris", "batch"),
    "penguins_single_ratio": ("penguins", "single"),
    "penguins_batch_ratio": ("penguins", "batch"),
}


def parse_args(argv):
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="load rounds per app (medians)")
    parser.add_argument("--seconds", type=int, default=5, help="length of each load run")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--reference-python", default=str(ROOT / "bench/.venv/bin/python"),
                        help="a Python with bench/requirements.txt installed")
    parser.add_argument("--gunicorn-args", default="",
                        help="extra gunicorn options for final_app, e.g. '--threads 4'")
    parser.add_argument("--with-tests", action="store_true", help="also time `make test`")
    parser.add_argument("--tests-seconds", type=float, help="record a test-suite time measured elsewhere")
    parser.add_argument("--output", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="where to write the report (the default also re-runs lesson 07)")
    parser.add_argument("--no-lesson", action="store_true",
                        help="do not re-run lesson 07's notebook after writing the default report")
    parser.add_argument("--load-tool", choices=["wrk", "python"],
                        help="force a load generator (default: wrk if installed)")
    parser.add_argument("--options-only", action="store_true",
                        help="measure only what the options cost (final_app options on / off); print it, write nothing")
    parser.add_argument("--omp-only", action="store_true",
                        help="measure only OMP_NUM_THREADS=1 against one thread per core (lesson 08's body-mass"
                             " model); rewrite only that section of the report, keeping the others")
    return parser.parse_args(argv)


def sample_rows(count):
    """count real iris measurements (the data set repeated), as lists in model order."""
    features = sklearn.datasets.load_iris().data
    return numpy.resize(features, (count, features.shape[1])).tolist()


def penguin_table(metadata, count=None):
    """The real penguins the model accepts, its columns only (count rows: the table repeated), as a DataFrame.

    A penguin missing a value the model's schema does not allow to be missing is left out.
    """
    table = load_penguins()[[feature["name"] for feature in metadata["features"]]]
    required = [feature["name"] for feature in metadata["features"] if not feature.get("nullable", True)]
    table = table.dropna(subset=required)
    if count is not None:
        table = table.iloc[numpy.resize(numpy.arange(len(table)), count)]
    return table.reset_index(drop=True)


def penguin_records(table):
    """The rows of a penguin table as JSON objects, a missing value as None (sent as null)."""
    return [{name: None if pandas.isna(value) else value for name, value in row.items()}
            for row in table.to_dict("records")]


def final_app_command():
    """The web command from the Procfile, run by a shell the way Heroku and honcho do."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return ["/bin/sh", "-c", "exec " + line.removeprefix("web:").strip()]
    raise SystemExit("Procfile has no web: line")


def reference_command(python, module="bench.reference_app"):
    """uvicorn serving a reference app module (bench/reference_app.py by default) with 2 worker processes."""
    return [python, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1",
            "--port", "{port}", "--workers", "2"]


def app_environment(port, gunicorn_args, model_dir=None):
    """The environment every server gets: a classic web dyno's (tools/dyno.py), the port, the venv first."""
    env = dict(dyno_environment(memory_mb=DYNO_MEMORY_MB), PORT=str(port), PYTHONUNBUFFERED="1")
    env["PATH"] = f"{ROOT / '.venv/bin'}{os.pathsep}{env.get('PATH', '')}"
    # The model, the options and the threads per model call are chosen here, not by the shell that ran the bench.
    for name in ("FLASK_DEBUG", "MODEL_DIR", "OMP_NUM_THREADS", *OPTIONS_ENV):
        env.pop(name, None)
    if model_dir is not None:
        env["MODEL_DIR"] = str(model_dir)
    # Options given here win over gunicorn.conf.py. Listen on loopback only: nobody else on
    # the network needs to reach a benchmark.
    # (The dyno's own GUNICORN_CMD_ARGS, gunicorn's access log, stays: it is what Heroku runs.)
    env["GUNICORN_CMD_ARGS"] = f"{env['GUNICORN_CMD_ARGS']} --bind 127.0.0.1:{port} {gunicorn_args}".strip()
    return env


class Server:
    """One app under test: how to start it, and the running process once started."""

    def __init__(self, name, command, gunicorn_args="", model_dir=None, extra_env=None):
        self.name = name
        self.command = command
        self.gunicorn_args = gunicorn_args
        self.model_dir = model_dir
        self.extra_env = extra_env or {}
        self.process = None
        self.base_url = None
        self.log = tempfile.TemporaryFile(mode="w+")

    def start(self):
        """Spawn it on a free port; return seconds until /health first answered 200."""
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        argv = [part.replace("{port}", str(port)) for part in self.command]
        seconds, self.process = measure.boot_seconds(
            argv, self.base_url + "/health",
            env=dict(app_environment(port, self.gunicorn_args, self.model_dir), **self.extra_env),
            cwd=ROOT, log=self.log)
        if seconds is None:
            self.stop()
            raise SystemExit(f"{self.name} did not answer /health:\n{self.log_tail()}")
        return seconds

    def stop(self):
        """Stop the whole process group (master and workers)."""
        if self.process is not None:
            stop(self.process)
            self.process = None

    def cpu_seconds_by_process(self):
        """{pid: CPU time (user + system) used so far} for the server's first process and each of its children."""
        processes = [psutil.Process(self.process.pid)]
        processes += processes[0].children(recursive=True)
        return {process.pid: sum(process.cpu_times()[:2]) for process in processes}

    def cpu_seconds(self):
        """CPU time (user + system) used so far by the server and all its processes."""
        return sum(self.cpu_seconds_by_process().values())

    def log_tail(self, lines=30):
        """The last lines the server printed, to explain a failure."""
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])


def post_json(url, payload, headers=None, with_headers=False):
    """POST payload; return (status, decoded JSON body), and the response headers if with_headers."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.status, json.load(response), response.headers
    except urllib.error.HTTPError as error:
        answer = error.code, json.load(error), error.headers
    return answer if with_headers else answer[:2]


class Comparison:
    """One model, the apps that serve it side by side, and the rows the benchmark sends them."""

    def __init__(self, name, model_dir, servers):
        self.name = name
        self.model, self.metadata = load_model_and_metadata(model_dir)
        self.servers = servers
        self.rows = []  # BATCH_ROWS rows as the JSON body holds them; a request sends the first n
        # Calls timed with no web at all, on the same BATCH_ROWS rows: {"limit": (the model's
        # predict_proba, the rows as it takes them), "engine": (final_app's engine, the rows checked)}.
        self.in_process = {}
        self.engine_name = None  # the engine final_app serves this model with (model.json)
        self.check_rows = []  # rows whose answers must be the model's own before any timing
        self.check_input = None  # the same rows as the model takes them
        self.alone = [0]  # the check rows also sent one per request (a row alone may meet other code)
        self.differences = {}  # server name: the largest difference of its probabilities from predict_proba
        self.bad_rows = []  # values of "instances" that both apps must refuse with a 400
        self.rows_described = ""  # what the rows are, for the report


def final_app_and_reference(args, model_dir, reference_module):
    """final_app under the Procfile command and a reference app under uvicorn, both serving model_dir."""
    return [Server("final_app", final_app_command(), args.gunicorn_args, model_dir),
            Server("reference", reference_command(args.reference_python, reference_module), model_dir=model_dir)]


def iris_comparison(args):
    """final_app's own iris model against bench/reference_app.py; rows sent as lists of 4 numbers."""
    comparison = Comparison("iris", None, final_app_and_reference(args, None, "bench.reference_app"))
    comparison.rows = sample_rows(BATCH_ROWS)
    comparison.in_process = in_process_calls(comparison, None, numpy.array(comparison.rows))
    comparison.check_rows = comparison.rows[:50]
    comparison.check_input = numpy.array(comparison.check_rows)
    comparison.bad_rows = [[[1, 2, 3]], [[1, 2, 3, "x"]], [[1, 2, 3, 1e9]], []]
    comparison.rows_described = "real iris measurements (the 150 repeated), sent as lists"
    return comparison


def in_process_calls(comparison, model_dir, model_rows):
    """The calls timed with no web: the model's predict_proba (the limit) and final_app's engine (named in comparison.engine_name)."""
    engine, metadata = load_engine(model_dir)
    comparison.engine_name = engine.name
    checked = InstanceValidator(metadata, max_rows=BATCH_ROWS).checked({"instances": comparison.rows})
    # The engine takes what the validator checked (a list of values per feature, for penguins), so it
    # is called with the request's rows only for in_process_rate to count them.
    return {"limit": (comparison.model.predict_proba, model_rows),
            "engine": (lambda _rows: engine.answers(checked), comparison.rows)}


def rows_with_missing_values(table):
    """The positions of the first row and of every row with a missing value in a table."""
    return [0] + [position for position, missing in enumerate(table.isna().any(axis=1)) if missing and position]


def penguin_bad_rows(good):
    """Values of "instances" built from one good penguin row, each with one thing wrong."""
    missing_key = {name: value for name, value in good.items() if name != "sex"}
    return [[dict(good, island="Mars")], [dict(good, island=None)], [dict(good, bill_length_mm="x")],
            [dict(good, bill_length_mm=1e9)], [dict(good, wings=2)], [missing_key], []]


def penguins_comparison(args):
    """Lesson 08's penguin classifier (a DataFrame with text and missing values) on both apps."""
    comparison = Comparison("penguins", PENGUINS_DIR,
                            final_app_and_reference(args, PENGUINS_DIR, "bench.reference_penguins"))
    batch = penguin_table(comparison.metadata, BATCH_ROWS)
    comparison.rows = penguin_records(batch)
    comparison.in_process = in_process_calls(comparison, PENGUINS_DIR, batch)
    comparison.check_input = penguin_table(comparison.metadata)  # every penguin, once
    comparison.check_rows = penguin_records(comparison.check_input)
    comparison.alone = rows_with_missing_values(comparison.check_input)
    comparison.bad_rows = penguin_bad_rows(comparison.rows[0])
    with_missing = int(batch.isna().any(axis=1).sum())
    comparison.rows_described = (
        f"real penguins from palmerpenguins.load_penguins() (the {len(comparison.check_rows)} repeated),"
        f" sent as objects with a missing value as null ({with_missing} of the {BATCH_ROWS} rows have"
        " one; the single row has none)")
    return comparison


def threads_comparison(args):
    """Lesson 08's body-mass model on final_app twice: with each of THREAD_SETTINGS, the same rows."""
    servers = [Server(f"OMP_NUM_THREADS={threads}", final_app_command(), args.gunicorn_args, PENGUIN_MASS_DIR,
                      extra_env=extra_env) for threads, extra_env in THREAD_SETTINGS.items()]
    comparison = Comparison("penguin_mass", PENGUIN_MASS_DIR, servers)
    batch = penguin_table(comparison.metadata, BATCH_ROWS)
    comparison.rows = penguin_records(batch)
    comparison.check_input = penguin_table(comparison.metadata)  # every penguin it accepts, once
    comparison.check_rows = penguin_records(comparison.check_input)
    comparison.alone = rows_with_missing_values(comparison.check_input)
    comparison.bad_rows = penguin_bad_rows(comparison.rows[0])
    with_missing = int(batch.isna().any(axis=1).sum())
    single_missing = "has one" if batch.iloc[0].isna().any() else "has none"
    comparison.rows_described = (
        f"real penguins from palmerpenguins.load_penguins(), the {len(comparison.check_rows)} with every"
        f" value the model requires (the table repeated), sent as objects with a missing value as null"
        f" ({with_missing} of the {BATCH_ROWS} rows have one; the single row {single_missing})")
    return comparison


def probability_key(name):
    """A class name as the apps write it as a JSON object key ("setosa"; 1 becomes "1")."""
    return name if isinstance(name, str) else json.dumps(name)


def tolerances(metadata):
    """(relative, absolute) tolerance for probabilities: what save_model proved of the ONNX graph, else exact."""
    engine = metadata.get("engine") or {}
    if engine.get("name") != "onnx":
        return 0.0, 0.0  # the model itself answers: the same float64 arithmetic, bit for bit
    return engine["checked"]["relative_tolerance"], engine["checked"]["absolute_tolerance"]


def predictions_of(server, rows):
    """The predictions a server gives for rows, asserting a 200."""
    status, body = post_json(server.base_url + "/predict", {"instances": rows})
    assert status == 200, f"{server.name}: /predict answered {status}: {body}"
    return body["predictions"]


def check_same_answers(comparison):
    """Both apps must answer like the model itself, for all the rows at once and some alone, and refuse the same bad input.

    Labels and regression values must be equal; probabilities within the tolerance model.json
    records for the engine (float32 ONNX arithmetic differs from scikit-learn's in the last bits).
    """
    model, rows = comparison.model, comparison.check_rows
    regression = comparison.metadata["task"] == "regression"
    predicted = model.predict(comparison.check_input).tolist()  # labels, or the values of a regression
    probabilities = None if regression else model.predict_proba(comparison.check_input)
    keys = [probability_key(name) for name in comparison.metadata.get("classes", [])]
    relative, absolute = tolerances(comparison.metadata)
    for server in comparison.servers:
        where = f"{comparison.name} {server.name}"
        predictions = predictions_of(server, rows)
        for position in comparison.alone:  # a request of one row: its own DataFrame, its own dtypes
            predictions[position] = predictions_of(server, [rows[position]])[0]
        if regression:  # the same float64 arithmetic: exactly equal, whatever the number of threads
            assert [prediction["value"] for prediction in predictions] == predicted, f"{where}: values differ from predict"
        else:
            assert [prediction["label"] for prediction in predictions] == predicted, f"{where}: labels differ"
            got = numpy.array([[prediction["probabilities"][key] for key in keys] for prediction in predictions])
            comparison.differences[server.name] = float(numpy.abs(got - probabilities).max())
            assert numpy.allclose(got, probabilities, rtol=relative, atol=absolute), \
                f"{where}: probabilities differ from predict_proba by {numpy.abs(got - probabilities).max():.3g}"
        for bad in comparison.bad_rows:
            status, body = post_json(server.base_url + "/predict", {"instances": bad})
            assert status == 400 and "message" in body["error"], f"{where}: {bad}: {status}"
    print(f"  {comparison.name}: both apps give the model's own answers on {len(rows)} rows "
          f"({len(comparison.alone)} of them also alone) and refuse {len(comparison.bad_rows)} bad requests", flush=True)


def check_options(off_server, on_server):
    """Both servers answer the client's request alike; only the one with options on checks keys and adds headers."""
    row = {"instances": sample_rows(1)}
    answers = {}
    for state, server in (("off", off_server), ("on", on_server)):
        answers[state] = post_json(server.base_url + "/predict", row, CLIENT_HEADERS, with_headers=True)
        assert answers[state][0] == 200, f"options {state}: /predict answered {answers[state][0]}"
    assert answers["on"][1] == answers["off"][1], "options on and off give different answers"
    on_headers, off_headers = answers["on"][2], answers["off"][2]
    assert on_headers["X-Request-ID"] == CLIENT_HEADERS["X-Request-ID"], "options on: X-Request-ID not sent back"
    assert on_headers["Access-Control-Allow-Origin"] == OPTIONS_ORIGIN, "options on: no CORS header"
    assert "X-Request-ID" not in off_headers and "Access-Control-Allow-Origin" not in off_headers
    without_key = {name: value for name, value in CLIENT_HEADERS.items() if name != "Authorization"}
    status, _ = post_json(on_server.base_url + "/predict", row, without_key)
    assert status == 401, f"options on: a request without the key answered {status}, not 401"
    print("  options: on and off give the same answer; on checks the key and adds its headers", flush=True)


def wrk_load(url, body_path, seconds, connections, headers=None):
    """Run wrk with bench/post.lua (and these extra headers); return the same fields as measure.post_load()."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
               "-s", str(ROOT / "bench/post.lua"), url, "--", str(body_path)]
    command += [f"{name}: {value}" for name, value in (headers or {}).items()]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                            check=True).stdout
    match = re.search(r"BENCH_RESULT (.*)", output)
    if not match:
        raise SystemExit(f"wrk gave no result:\n{output}")
    fields = dict(part.split("=") for part in match.group(1).split())
    numbers = {key: int(value) for key, value in fields.items()}
    return {
        "requests": numbers["requests"],
        "not_ok": numbers["not_ok"] + numbers["socket_errors"],
        "requests_per_s": numbers["requests"] / (numbers["duration_us"] / 1e6),
        "p50_ms": numbers["p50_us"] / 1000,
        "p99_ms": numbers["p99_us"] / 1000,
    }


def choose_load_tool(forced):
    """wrk when installed; otherwise the bounded Python generator, saying why."""
    if forced:
        return forced
    if shutil.which("wrk"):
        return "wrk"
    print("wrk is not installed (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk).\n"
          "Falling back to measure.post_load: Python threads with kept-alive connections.\n"
          "It works, but it needs CPU of its own and runs out of steam sooner than wrk,\n"
          "so its absolute numbers are lower; the ratios are still side by side.")
    return "python"


def load(tool, url, body_path, seconds, connections, headers=None):
    """Drive url with the chosen tool; return its result, failed requests counted in not_ok."""
    if tool == "wrk":
        return wrk_load(url, body_path, seconds, connections, headers)
    if headers:
        raise SystemExit("sending extra headers needs wrk")
    return measure.post_load(url, body_path.read_bytes(), seconds, connections)


def write_bodies(comparisons, folder):
    """Write each request body to a file in folder; return {(model, size): path}."""
    bodies = {}
    for comparison in comparisons:
        for size, count in SIZES.items():
            path = pathlib.Path(folder) / f"{comparison.name}-{size}.json"
            path.write_text(json.dumps({"instances": comparison.rows[:count]}))
            bodies[(comparison.name, size)] = path
    return bodies


def run_rounds(args, tool, comparisons, bodies, options_group=None):
    """Each round: each model's in-process figures (where it has them), then each request on each app in turn.

    The order of the apps alternates between rounds, and the in-process figures are measured
    in every round too, so that a busy moment on the machine hits every figure, not just one.
    options_group, if given, is ((server, state), ...) for final_app with the options off and on:
    each round also loads each, in alternating order, with the one-row iris request and CLIENT_HEADERS.
    """
    results = {}
    for round_number in range(args.rounds):
        if options_group is not None:
            group = options_group if round_number % 2 == 0 else options_group[::-1]
            for server, state in group:
                result = load_one(args, tool, server, bodies[("iris", "single")], 1, CLIENT_HEADERS)
                results.setdefault(("options", state), []).append(result)
                print(f"  round {round_number + 1} iris     single options {state:14}  "
                      f"{result['requests_per_s']:9.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                      f"p99 {result['p99_ms']:6.2f} ms  CPU {result['cpu_ms']:6.3f} ms/request", flush=True)
        for comparison in comparisons:
            for kind, (call, rows) in comparison.in_process.items():
                rate = in_process_rate(call, rows)
                results.setdefault((comparison.name, kind), []).append({"rows_per_s": rate})
                print(f"  round {round_number + 1} {comparison.name:8} in-process {kind:6} {rate:10.0f} rows/s",
                      flush=True)
        for comparison in comparisons:
            order = comparison.servers if round_number % 2 == 0 else comparison.servers[::-1]
            for size, rows in SIZES.items():
                for server in order:
                    result = load_one(args, tool, server, bodies[(comparison.name, size)], rows)
                    results.setdefault((comparison.name, server.name, size), []).append(result)
                    print(f"  round {round_number + 1} {comparison.name:8} {size:6} {server.name:9} "
                          f"{result['requests_per_s']:9.0f} req/s {result['rows_per_s']:10.0f} rows/s "
                          f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                          f"CPU {result['cpu_ms']:6.3f} ms/request", flush=True)
    return results


def in_process_rate(call, rows):
    """Rows per second call(rows) handles with no web, on one thread as in a final_app worker."""
    with threadpoolctl.threadpool_limits(limits=1):  # numpy's BLAS and OpenMP would use every core
        return measure.in_process_rate(call, rows)


def load_one(args, tool, server, body_path, rows, headers=None):
    """Load one server with one request body; return the load result with rows/s and CPU per request."""
    cpu_before = server.cpu_seconds_by_process()
    result = load(tool, server.base_url + "/predict", body_path, args.seconds, args.connections, headers)
    if result["not_ok"]:  # refuse results that include failed requests, and say what became of the server
        state = "is still running" if server.process.poll() is None else f"exited with status {server.process.returncode}"
        raise SystemExit(f"{server.name} ({server.base_url}): {result['not_ok']} of {result['requests']} requests "
                         f"failed; the server {state}; its last lines:\n{server.log_tail()}")
    used = [seconds - cpu_before.get(pid, 0.0) for pid, seconds in server.cpu_seconds_by_process().items()]
    result["rows_per_s"] = result["requests_per_s"] * rows
    result["cpu_ms"] = sum(used) * 1000 / result["requests"]
    result["one_process"] = max(used) > LOPSIDED * sum(used)  # one worker did nearly all the work
    return result


def median_of(runs, key):
    """The median of one field over rounds."""
    return statistics.median(run[key] for run in runs)


def median_ratio(runs, other_runs):
    """The median over rounds of rows/s in runs divided by rows/s in other_runs, round by round."""
    return statistics.median(run["rows_per_s"] / other["rows_per_s"]
                             for run, other in zip(runs, other_runs))


def cpu_snapshot(servers):
    """(now, CPU seconds the whole machine has been busy, CPU seconds of this benchmark: servers, load tool, itself)."""
    times = psutil.cpu_times()
    busy = sum(getattr(times, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq", "steal"))
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    own = sum(server.cpu_seconds() for server in servers) + sum(use.ru_utime + use.ru_stime for use in usage)
    return time.perf_counter(), busy, own


def other_work(before, after):
    """How many cores, on average between two snapshots, went to work other than this benchmark's."""
    (start, busy_start, own_start), (end, busy_end, own_end) = before, after
    return max(0.0, (busy_end - busy_start) - (own_end - own_start)) / (end - start)


def time_test_suite():
    """Seconds `make test` takes, and whether it passed."""
    start = time.perf_counter()
    completed = subprocess.run(["make", "test"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    # pytest's summary lines, e.g. "644 passed in 95.3s": make test runs pytest twice (the
    # tests that can share the machine, then the serial ones), so there are two.
    summaries = [line.strip("= ") for line in completed.stdout.splitlines()
                 if re.search(r"\d+ (passed|failed|error)", line)]
    return seconds, completed.returncode == 0, "; then ".join(summaries) or "no pytest summary"


def versions(python):
    """Versions of the packages that matter, as seen by the given Python."""
    names = ["flask", "werkzeug", "gunicorn", "scikit-learn", "numpy", "pandas", "onnxruntime", "fastapi", "starlette",
             "pydantic", "uvicorn", "uvloop", "httptools"]
    code = ("import importlib.metadata as m, json, sys\n"
            "found = {}\n"
            f"for name in {names!r}:\n"
            "    try: found[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(found))")
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                     check=True).stdout)


def machine():
    """What this ran on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 1024**3,
        "cpu": cpu,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def main(argv=None):
    """Run everything, print a summary, write the report."""
    args = parse_args(argv)
    tool = choose_load_tool(args.load_tool)
    if args.options_only:
        return measure_options_only(args, tool)
    if args.omp_only:
        return measure_threads_only(args, tool)
    if not pathlib.Path(args.reference_python).exists():
        raise SystemExit(f"{args.reference_python} not found: `make bench` creates bench/.venv")
    comparisons = [iris_comparison(args), penguins_comparison(args)]
    threads = threads_comparison(args)  # final_app twice: loaded in every round, but its boot and memory are not measured
    servers = [server for comparison in comparisons + [threads] for server in comparison.servers]
    group = options_group(comparisons[0].servers[0], args, tool)
    options_on = [server for server, _ in group[1:]] if group else []  # the off one is among servers
    report = {"tool": tool, "boot": {}, "pss": {}, "servers": len(servers + options_on),
              "rows": {comparison.name: comparison.rows_described for comparison in comparisons},
              "load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory() as scratch:
        bodies = write_bodies(comparisons + [threads], scratch)
        try:
            print("boot: spawn to first 200 on /health ...", flush=True)
            for comparison in comparisons:
                for server in comparison.servers:
                    times = boot_times(server, args.rounds)
                    report["boot"][(comparison.name, server.name)] = times
                    print(f"  {comparison.name} {server.name}: median {statistics.median(times):.2f} s, "
                          f"slowest {max(times):.2f} s", flush=True)
            for server in servers:
                server.start()
            for server in options_on:
                server.start()
            print("answers: the same on both apps, before any timing ...", flush=True)
            for comparison in comparisons + [threads]:
                check_same_answers(comparison)
            for server in options_on:
                check_options(comparisons[0].servers[0], server)
            print(f"load: {tool}, {args.connections} connections, {args.seconds:g} s per run, "
                  f"{args.rounds} rounds", flush=True)
            before = cpu_snapshot(servers + options_on)
            results = run_rounds(args, tool, comparisons + [threads], bodies, group)
            report["others_cores"] = other_work(before, cpu_snapshot(servers + options_on))
            for comparison in comparisons:
                for server in comparison.servers:
                    measure.wait_for_workers(server.process.pid, 2)
                    report["pss"][(comparison.name, server.name)] = \
                        measure.process_tree_pss_mb(server.process.pid)
        finally:
            for server in servers + options_on:
                server.stop()
    report["results"] = results
    report["engines"] = {comparison.name: comparison.engine_name for comparison in comparisons}
    report["differences"] = {comparison.name: comparison.differences for comparison in comparisons}
    if args.with_tests:
        print("timing make test ...", flush=True)
        report["tests"] = time_test_suite()
    elif args.tests_seconds:
        report["tests"] = (args.tests_seconds, None, "measured separately")
    report["threads"] = threads_lines(args, tool, threads, results, alone=False)
    summary = summarize(report)
    text = render(args, report, summary)
    pathlib.Path(args.output).write_text(text)
    print(text)
    if pathlib.Path(args.output) == DEFAULT_OUTPUT:
        if args.no_lesson:
            print(f"{LESSON_NOTEBOOK.relative_to(ROOT)} shows bench/RESULTS.md: re-run it "
                  "(tools/run_notebooks.py) so that its stored output matches", flush=True)
        else:
            refresh_lesson()


# With PREDICTION_LOG on, gunicorn.conf.py's logger leaves out gunicorn's access line for each
# prediction the app has logged. The third server keeps both lines (gunicorn's own logger), so
# that the report also shows what the options' own work costs.
BOTH_LINES = "on, both lines"
BOTH_LINES_ARGS = "--logger-class gunicorn.glogging.Logger"
OPTIONS_STATES = ("off", "on", BOTH_LINES)


def options_group(off, args, tool):
    """((server, state), ...) for OPTIONS_STATES: off (final_app with every option off), then final_app
    with every option on, as gunicorn.conf.py runs it and with both log lines; None (with the
    reason) when the load tool cannot send headers."""
    if tool != "wrk":
        print("the options scenario needs wrk to send its headers: not measured", flush=True)
        return None
    on = Server("final_app, options on", final_app_command(), args.gunicorn_args, extra_env=OPTIONS_ENV)
    both = Server("final_app, options on, both log lines", final_app_command(),
                  f"{args.gunicorn_args} {BOTH_LINES_ARGS}".strip(), extra_env=OPTIONS_ENV)
    return tuple(zip((off, on, both), OPTIONS_STATES))


def options_cost(results, state="on"):
    """(share of one-row throughput lost with the options on, share of CPU per request added), medians."""
    on, off = results[("options", state)], results[("options", "off")]
    throughput = 1 - median_ratio(on, off)
    cpu = median_of(on, "cpu_ms") / median_of(off, "cpu_ms") - 1
    return throughput, cpu


def measure_options_only(args, tool):
    """Load final_app with the options off and on, in turn, for args.rounds rounds; print what they cost."""
    group = options_group(Server("final_app", final_app_command(), args.gunicorn_args), args, tool)
    if group is None:
        raise SystemExit(1)
    off = group[0][0]
    with tempfile.TemporaryDirectory() as scratch, running([server for server, _ in group]):
        body = pathlib.Path(scratch) / "iris-single.json"
        body.write_text(json.dumps({"instances": sample_rows(1)}))
        for server, _ in group[1:]:
            check_options(off, server)
        results = run_rounds(args, tool, [], {("iris", "single"): body}, group)
    for state in OPTIONS_STATES[1:]:
        throughput, cpu = options_cost(results, state)
        print(f"options {state}: cost {throughput:.1%} of one-row throughput (median of the round ratios), "
              f"{cpu:+.1%} server CPU per request (ratio of the medians: "
              f"{median_of(results[('options', state)], 'cpu_ms'):.3f} / "
              f"{median_of(results[('options', 'off')], 'cpu_ms'):.3f} ms)")


@contextlib.contextmanager
def running(servers):
    """Start every server; stop them all on the way out, even after an error."""
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def measure_threads_only(args, tool):
    """Load final_app with each of THREAD_SETTINGS in turn for args.rounds rounds; rewrite only that section of the report."""
    threads = threads_comparison(args)
    with tempfile.TemporaryDirectory() as scratch, running(threads.servers):
        bodies = write_bodies([threads], scratch)
        check_same_answers(threads)
        print(f"load: {tool}, {args.connections} connections, {args.seconds:g} s per run, "
              f"{args.rounds} rounds", flush=True)
        results = run_rounds(args, tool, [threads], bodies)
    section = threads_lines(args, tool, threads, results, alone=True)
    # Lesson 07 shows only the report's date, machine and targets, which this section leaves as they
    # were: its notebook need not be re-run.
    output = pathlib.Path(args.output)
    old = output.read_text() if output.exists() else "# Benchmark results\n"
    output.write_text(with_section(old, section))
    print("\n".join(section))
    print(f"rewrote the section \"{THREADS_HEADING.removeprefix('## ')}\" of {output}; the rest is as it was",
          flush=True)


def with_section(text, section):
    """The report text with the section under section's heading (up to the next "## ") replaced by section.

    When text has no such section, it goes where a full run puts it: before "## Every round", or at the end.
    """
    lines = text.splitlines()
    if section[0] in lines:
        start = lines.index(section[0])
        end = next((number for number in range(start + 1, len(lines)) if lines[number].startswith("## ")),
                   len(lines))
    else:
        start = end = lines.index("## Every round") if "## Every round" in lines else len(lines)
    before = lines[:start] + ([""] if start and lines[start - 1].strip() else [])
    return "\n".join(before + section + lines[end:]).rstrip("\n") + "\n"


def boot_times(server, rounds):
    """Start and stop server rounds times; return the seconds from spawn to first /health 200, each time."""
    times = []
    for _ in range(rounds):
        times.append(server.start())
        server.stop()
    return times


def refresh_lesson():
    """Re-run lesson 07's notebook, which shows RESULTS.md, so its stored output matches."""
    print(f"re-running {LESSON_NOTEBOOK.relative_to(ROOT)}, which shows these results ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "tools/run_notebooks.py"), str(LESSON_NOTEBOOK)],
                   cwd=ROOT, check=True)


def summarize(report):
    """Medians per model, app and request size, ratios, and each target's verdict."""
    results = report["results"]
    medians = {
        key: {field: median_of(runs, field)
              for field in ("requests_per_s", "rows_per_s", "p50_ms", "p99_ms", "cpu_ms")}
        for key, runs in results.items() if key[1] not in IN_PROCESS and key[0] != "options"
    }
    medians.update({key: {field: median_of(runs, field) for field in ("requests_per_s", "p50_ms", "p99_ms", "cpu_ms")}
                    for key, runs in results.items() if key[0] == "options"})
    report["in_process_rows_per_s"] = {key: median_of(runs, "rows_per_s")
                                       for key, runs in results.items() if key[1] in IN_PROCESS}
    measured, by_cpu = {}, {}
    for name, (model, size) in RATIO_TARGETS.items():
        final, reference = (model, "final_app", size), (model, "reference", size)
        measured[name] = median_ratio(results[final], results[reference])
        # What the same ratio would be if each server were limited by CPU alone, as on a quiet
        # machine: rows per CPU-second, from the median CPU time per request.
        by_cpu[name] = medians[reference]["cpu_ms"] / medians[final]["cpu_ms"]
    if ("options", "on") in results:
        measured["options_cost"], by_cpu["options_cost"] = options_cost(results)
        own_cost = options_cost(results, BOTH_LINES)
    else:
        measured["options_cost"] = by_cpu["options_cost"] = own_cost = None
    measured["boot_seconds"] = statistics.median(report["boot"][("iris", "final_app")])
    measured["pss_workers_mb"] = report["pss"][("iris", "final_app")]["workers_mb"]
    return {"medians": medians, "measured": measured, "verdicts": verdicts_for(measured),
            "by_cpu": by_cpu, "cpu_verdicts": verdicts_for(by_cpu), "options_own_cost": own_cost}


def verdicts_for(values):
    """True for each value that meets its target; None where the value could not be measured."""
    return {name: None if value is None else
            (value >= TARGETS[name][1]) if TARGETS[name][2] else
            (value < TARGETS[name][1]) if name in STRICT_TARGETS else (value <= TARGETS[name][1])
            for name, value in values.items()}


VERDICT_WORDS = {True: "met", False: "NOT met", None: "unknown"}


def shown(name, value):
    """A measured value as the targets table shows it."""
    if value is None:
        return "unknown"
    if name == "options_cost":
        return f"{value:.1%}"
    return f"{value:.0f}" if name == "pss_workers_mb" else f"{value:.2f}"


MODEL_NAMES = ("iris", "penguins")  # the order of the report


def render(args, report, summary):
    """The Markdown report."""
    return "\n".join(header_lines(args, report) + throughput_lines(report, summary)
                     + context_lines(report, summary) + target_lines(summary)
                     + report["threads"] + round_lines(report)) + "\n"


def header_lines(args, report):
    """The report's title, how it was measured, and on what."""
    facts = machine()
    final_versions = versions(sys.executable)
    reference_versions = versions(args.reference_python)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/run.py). Two models, each served by final_app and by a lean",
        "FastAPI reference, plus final_app with its options on, twice, plus final_app serving lesson 08's",
        f"body-mass model with one OpenMP thread per call and with one per core: all {report['servers']} servers ran at",
        "the same time on loopback, each with 2 worker",
        "processes, loaded in turn with the same requests; each figure is the median of",
        f"{args.rounds} rounds. Ratios are what count: absolute numbers depend on the machine, and",
        "this one is shared with other work. Every section is from this run, except one that says",
        "it was written later by a run of its scenario alone (`bench/run.py --omp-only`).",
        "",
        f"- date: {now}",
        f"- machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory_gb']:.1f} GB memory, "
        f"{facts['system']}, Python {facts['python']}",
        busy_line(report),
        "- final_app: " + ", ".join(f"{k} {v}" for k, v in final_versions.items()
                                    if k in ("flask", "werkzeug", "gunicorn", "scikit-learn", "numpy",
                                             "pandas", "onnxruntime")),
        f"  under the Procfile command, as on a 512 MB classic web dyno (tools/dyno.py: WEB_CONCURRENCY=2, "
        f"GUNICORN_CMD_ARGS=`--access-logfile -`, FORWARDED_ALLOW_IPS, DYNO)"
        + (f", GUNICORN_CMD_ARGS=`{args.gunicorn_args}`" if args.gunicorn_args else "")
        + f"; for penguins with MODEL_DIR={PENGUINS_DIR.relative_to(ROOT)}; engines (model.json): "
        + ", ".join(f"{model} {engine}" for model, engine in report["engines"].items()),
        "- references (bench/reference_app.py for iris, bench/reference_penguins.py for penguins): "
        + ", ".join(f"{k} {v}" for k, v in reference_versions.items()
                    if k in ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "pandas")),
        "  under `uvicorn --workers 2`; written the lean way: pydantic per row, the rows as the model was fitted",
        "  (a list of lists for iris, a DataFrame with the training dtypes for penguins), predict_proba once per",
        "  request, each label by argmax over model.classes_",
        f"- load: {report['tool']}, {args.connections} connections, {args.seconds:g} s per run",
        f"- iris rows: {report['rows']['iris']}",
        f"- penguins rows: {report['rows']['penguins']}",
        "- before any timing, both apps of each model answered a batch of its rows, and some of them sent",
        "  alone (every penguin with a missing value), as the model's own predict and predict_proba do:",
        "  labels identical, probabilities within the tolerance model.json records for final_app's engine",
        "  (largest difference found: " + "; ".join(
            f"{model} " + ", ".join(f"{name} {difference:.1g}" for name, difference in found.items())
            for model, found in report["differences"].items()) + "); and both refused the same bad requests with 400",
        "- options: the iris final_app (every option off) and one more final_app with API_KEYS,",
        "  CORS_ORIGINS, REQUEST_IDS and PREDICTION_LOG=on, loaded in turn with the one-row request",
        "  and the same headers, as a browser page's request arrives through Heroku's router:",
        "  " + ", ".join(f"`{name}`" for name in CLIENT_HEADERS) + " (a valid key, a listed origin);",
        "  before timing, both gave the same answer, and only the second checked the key (401",
        "  without it) and sent back X-Request-ID and Access-Control-Allow-Origin. With PREDICTION_LOG",
        "  on, gunicorn.conf.py's logger leaves out gunicorn's access line for each logged prediction;",
        f"  a third final_app, options on with `{BOTH_LINES_ARGS}` (\"{BOTH_LINES}\"), writes both",
        "  lines, to show what the options' own work costs",
        "",
    ]


def busy_line(report):
    """What else the machine was doing: the load average before the benchmark, and other work during its load rounds."""
    one, five, _fifteen = report["load_average"]
    return (f"- other work on the machine (shared with other people's tests): load average {one:.1f} (1 min), "
            f"{five:.1f} (5 min) before the benchmark started; during its load rounds, work other than the "
            f"benchmark's own used {report['others_cores']:.2f} of the {os.cpu_count()} cores on average")


def throughput_lines(report, summary):
    """The table of medians per model, request size and app, with the ratios."""
    medians = summary["medians"]
    lines = [
        "## Throughput and latency (medians)",
        "",
        "| scenario | app | requests/s | rows/s | p50 ms | p99 ms | server CPU ms per request |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for model in MODEL_NAMES:
        for size, rows in SIZES.items():
            label = f"{model}, {rows} row{'s' if rows > 1 else ''}"
            for app in ("final_app", "reference"):
                row = medians[(model, app, size)]
                lines.append(f"| {label} | {app} | {row['requests_per_s']:.0f} | {row['rows_per_s']:.0f}"
                             f" | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_ms']:.3f} |")
            final, reference = medians[(model, "final_app", size)], medians[(model, "reference", size)]
            ratio = median_ratio(report["results"][(model, "final_app", size)],
                                 report["results"][(model, "reference", size)])
            lines.append(f"| {label} | **final_app / reference** | **{ratio:.2f}x** | | "
                         f"{final['p50_ms'] / reference['p50_ms']:.2f}x | "
                         f"{final['p99_ms'] / reference['p99_ms']:.2f}x | "
                         f"{final['cpu_ms'] / reference['cpu_ms']:.2f}x |")
    lines += options_lines(report, medians)
    return lines + [
        "",
        "The throughput ratio is the median of the ratios measured round by round; latency",
        "and CPU ratios are ratios of the medians: below 1, final_app is faster or cheaper.",
        "Server CPU per request (all processes of the server, user + system) suffers less from",
        "a busy machine than requests/s do, so it is the cross-check for the throughput ratios.",
        "",
    ] + lopsided_lines(report)


def options_lines(report, medians):
    """Rows of the throughput table for final_app with the options off and on (none if not measured)."""
    if ("options", "on") not in medians:
        return []
    label = "iris, 1 row, client headers"
    lines = []
    for state in OPTIONS_STATES:
        row = medians[("options", state)]
        lines.append(f"| {label} | final_app, options {state} | {row['requests_per_s']:.0f} | {row['requests_per_s']:.0f}"
                     f" | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_ms']:.3f} |")
    off = medians[("options", "off")]
    for state in OPTIONS_STATES[1:]:
        on = medians[("options", state)]
        ratio = median_ratio(report["results"][("options", state)], report["results"][("options", "off")])
        lines.append(f"| {label} | **options {state} / off** | **{ratio:.2f}x** | | {on['p50_ms'] / off['p50_ms']:.2f}x | "
                     f"{on['p99_ms'] / off['p99_ms']:.2f}x | {on['cpu_ms'] / off['cpu_ms']:.2f}x |")
    return lines


def context_lines(report, summary):
    """The in-process figures, start-up, memory and the test suite."""
    boot, pss = report["boot"], report["pss"]
    lines = ["## The limit, start-up and memory", ""]
    for model in MODEL_NAMES:
        lines += in_process_lines(model, report, summary["medians"])
    for model in MODEL_NAMES:
        final, reference = boot[(model, "final_app")], boot[(model, "reference")]
        lines.append(f"- {model}: spawn to first 200 on /health, median (slowest) of {len(final)} starts, one server "
                     f"at a time: final_app {statistics.median(final):.2f} s ({max(final):.2f} s), reference "
                     f"{statistics.median(reference):.2f} s ({max(reference):.2f} s)")
    for model in MODEL_NAMES:
        final, reference = pss[(model, "final_app")], pss[(model, "reference")]
        if final["workers_mb"] is None or reference["workers_mb"] is None:
            reason = final.get("unknown") or reference.get("unknown")
            lines.append(f"- {model}: memory (PSS): unknown here ({reason})")
            continue
        lines.append(
            f"- {model}: memory (PSS, after the load): final_app {final['workers_mb']:.0f} MB for "
            f"{final['workers']} workers + {final['master_mb']:.0f} MB master; reference "
            f"{reference['workers_mb']:.0f} MB for {reference['workers']} child processes + "
            f"{reference['master_mb']:.0f} MB master")
    if "tests" in report:
        seconds, passed, note = report["tests"]
        state = {True: "passed", False: "FAILED", None: "measured separately"}[passed]
        lines.append(f"- test suite (`make test`): {seconds:.0f} s, {state} ({note})")
    else:
        lines.append("- test suite: not timed in this run (add `--with-tests`)")
    return lines + [""]


def in_process_lines(model, report, medians):
    """One model's in-process figures, and how much of them each app's 1000-row rate reaches."""
    calls = {"limit": "the model's `predict_proba` (the limit)",
             "engine": f"final_app's engine, {report['engines'][model]} (`engine.answers`)"}
    lines = []
    for kind, call in calls.items():
        rate = report["in_process_rows_per_s"][(model, kind)]
        served = (medians[(model, app, "batch")]["rows_per_s"] / rate for app in ("final_app", "reference"))
        lines.append(f"- {model}, no web at all, one thread, the same {BATCH_ROWS} rows: {call} {rate:.0f} rows/s;"
                     " the 1000-row rate over HTTP (2 workers) is "
                     + "{:.0%} of it for final_app, {:.0%} for the reference".format(*served))
    return lines


def target_lines(summary):
    """The targets table: each target's verdict from throughput and from CPU per request."""
    measured, verdicts = summary["measured"], summary["verdicts"]
    by_cpu, cpu_verdicts = summary["by_cpu"], summary["cpu_verdicts"]
    lines = [
        "## Targets",
        "",
        "The throughput ratios are the targets as defined. The column after them asks the same",
        "question of the CPU time per request: the ratio each would have if both servers were",
        "limited by CPU alone, as on a machine doing nothing else. When the two verdicts differ,",
        "the machine was too busy for the throughput ratio to be trusted on its own.",
        "The options' cost is 1 - (requests/s with the options on / off), median of the rounds;",
        "from CPU, the CPU per request with them on / off - 1 (ratio of the medians).",
        "Start-up and memory are final_app's with the iris model.",
        "",
        "| target | wanted | measured | met? | from CPU per request | met? |",
        "|---|---:|---:|---|---:|---|",
    ]
    for name, (meaning, threshold, higher) in TARGETS.items():
        sign = ">=" if higher else "<" if name in STRICT_TARGETS else "<="
        wanted = f"{threshold:.0%}" if name == "options_cost" else f"{threshold:g}"
        row = f"| {meaning} | {sign} {wanted} | {shown(name, measured[name])} | {VERDICT_WORDS[verdicts[name]]} |"
        if name in by_cpu:
            row += f" {shown(name, by_cpu[name])} | {VERDICT_WORDS[cpu_verdicts[name]]} |"
        else:
            row += " | |"
        lines.append(row)
    if summary["options_own_cost"] is not None:
        throughput, cpu = summary["options_own_cost"]
        lines += ["", f"With gunicorn's access line kept as well (\"{BOTH_LINES}\"), the options cost "
                  f"{throughput:.1%} of one-row throughput ({cpu:+.1%} CPU per request): their own work."]
    return lines + [""]


def threads_lines(args, tool, threads, results, alone):
    """The section on OMP_NUM_THREADS: who wrote it, both servers' medians and the ratios, the method, every round.

    alone: True when this scenario ran by itself (--omp-only) and the rest of the report is older.
    """
    names = [server.name for server in threads.servers]
    runs = {(name, size): results[(threads.name, name, size)] for name in names for size in SIZES}
    one, per_core = THREAD_SETTINGS
    labels = {one: f"{one} (gunicorn.conf.py's default)", per_core: f"{per_core} (one per core, as when unset)"}
    ratios = {size: median_ratio(runs[(names[0], size)], runs[(names[1], size)]) for size in SIZES}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rounds = f"{args.rounds} round{'s' if args.rounds > 1 else ''}"
    lines = [
        THREADS_HEADING,
        "",
        f"Written by `bench/run.py --omp-only` on {now}, {rounds}: this scenario alone, run after the full"
        " run dated at the top of this file, which wrote every other section." if alone else
        f"Written by the full run dated at the top of this file, {rounds}, like every other section.",
        "",
        "| request | OMP_NUM_THREADS | requests/s | rows/s | p50 ms | p99 ms | server CPU ms per request |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for size, rows in SIZES.items():
        label = f"{rows} row{'s' if rows > 1 else ''}"
        medians = {name: {field: median_of(runs[(name, size)], field)
                          for field in ("requests_per_s", "rows_per_s", "p50_ms", "p99_ms", "cpu_ms")}
                   for name in names}
        for threads_per_call, name in zip(THREAD_SETTINGS, names):
            row = medians[name]
            lines.append(f"| {label} | {labels[threads_per_call]} | {row['requests_per_s']:.0f} | {row['rows_per_s']:.0f}"
                         f" | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_ms']:.3f} |")
        first, second = medians[names[0]], medians[names[1]]
        lines.append(f"| {label} | **{one} / {per_core}** | **{ratios[size]:.2f}x** | | "
                     f"{first['p50_ms'] / second['p50_ms']:.2f}x | {first['p99_ms'] / second['p99_ms']:.2f}x | "
                     f"{first['cpu_ms'] / second['cpu_ms']:.2f}x |")
    lines += [
        "",
        f"With {one} OpenMP thread per model call, final_app served {ratios['single']:.2f} times as many one-row",
        f"requests per second as with {per_core}, and {ratios['batch']:.2f} times as many {BATCH_ROWS}-row requests",
        "(throughput: the median of the ratios measured round by round; latency and CPU: ratios of the medians).",
        "",
    ]
    return lines + threads_method_lines(args, tool, threads) + [
        "",
        "| what | rows/s in each round |",
        "|---|---|",
    ] + [f"| {size}: OMP_NUM_THREADS={threads_per_call} | "
         + ", ".join(f"{run['rows_per_s']:.0f}" for run in runs[(name, size)]) + " |"
         for size in SIZES for threads_per_call, name in zip(THREAD_SETTINGS, names)] + [""]


def threads_method_lines(args, tool, threads):
    """How the OMP_NUM_THREADS section was measured, and on what: its own, as it may be newer than the header."""
    one, per_core = THREAD_SETTINGS
    facts = machine()
    load_tool = tool if tool == "wrk" else (
        f"{tool} (measure.post_load: threads in the benchmark's own process, which take CPU from the servers;"
        + (" chosen with --load-tool)" if shutil.which("wrk") else " wrk was not installed)"))
    return [
        f"- model: lesson 08's body mass ({PENGUIN_MASS_DIR.relative_to(ROOT)}, a "
        f"{type(threads.model).__name__}: scikit-learn runs it on OpenMP threads)",
        "- servers: final_app twice, at the same time, both under the Procfile command as on a 512 MB classic",
        "  web dyno (tools/dyno.py: WEB_CONCURRENCY=2, GUNICORN_CMD_ARGS=`--access-logfile -`, FORWARDED_ALLOW_IPS,",
        "  DYNO" + (f", GUNICORN_CMD_ARGS=`{args.gunicorn_args}`" if args.gunicorn_args else "")
        + f"); one with OMP_NUM_THREADS unset, so gunicorn.conf.py sets it to {one}, the other with",
        f"  OMP_NUM_THREADS={per_core}, the machine's core count: what OpenMP starts when the variable is unset",
        f"- on: {facts['cores']} cores ({facts['cpu']}), {facts['system']}, Python {facts['python']}, "
        + ", ".join(f"{k} {v}" for k, v in versions(sys.executable).items() if k in ("gunicorn", "scikit-learn", "numpy")),
        f"- load: {load_tool}, {args.connections} connections, {args.seconds:g} s per run; each round loads each server",
        f"  in turn (the order alternating between rounds) with the same request, one row then {BATCH_ROWS} rows",
        f"- rows: {threads.rows_described}",
        f"- before any timing, both answered {len(threads.check_rows)} penguins exactly as the model's own predict",
        f"  does, and refused the same {len(threads.bad_rows)} bad requests with 400",
    ]


def lopsided_lines(report):
    """How many load runs of each app had one process doing nearly all of its server's work."""
    counts = {}
    for key, runs in report["results"].items():
        if key[0] in MODEL_NAMES and key[1] not in IN_PROCESS:
            found = counts.setdefault(key[1], [0, 0])
            found[0] += sum(run["one_process"] for run in runs)
            found[1] += len(runs)
    return [
        "In some load runs one worker process did over {:.0%} of its server's work while the other".format(LOPSIDED),
        "sat nearly idle (a worker keeps each connection it accepts, under gunicorn's gthread and uvicorn",
        "alike, and wrk opens its connections afresh for each run): " + "; ".join(
            f"{app} {lopsided} of {total} runs" for app, (lopsided, total) in counts.items())
        + ". Such a run is marked * under \"Every round\"; it lowers throughput, not CPU per request.",
        "",
    ]


def round_lines(report):
    """Every round's rows/s, so a disturbed round can be seen; * marks a run in which one process did nearly all the work."""
    lines = ["## Every round", "", "| what | rows/s in each round |", "|---|---|"]
    results = report["results"]
    keys = [(model, app, size) for model in MODEL_NAMES for size in SIZES for app in ("final_app", "reference")]
    keys += [(model, kind) for model in MODEL_NAMES for kind in IN_PROCESS]
    keys += [("options", state) for state in OPTIONS_STATES if ("options", state) in results]
    for key in keys:
        lines.append(f"| {round_name(key)} | " + ", ".join(
            f"{run['rows_per_s']:.0f}" + ("*" if run.get("one_process") else "") for run in results[key]) + " |")
    return lines


def round_name(key):
    """The name of a row of the table of every round."""
    if key[0] == "options":
        return f"iris single, client headers: final_app options {key[1]}"
    if key[1] in IN_PROCESS:
        return f"{key[0]} in-process: {IN_PROCESS[key[1]]}"
    return f"{key[0]} {key[2]}: {key[1]}"


if __name__ == "__main__":
    main()
