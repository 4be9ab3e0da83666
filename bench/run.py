"""Benchmark final_app against a FastAPI reference serving the same model; write RESULTS.md.

Run from the repository root (`make bench` does this, after installing the reference's
own requirements into bench/.venv):

    .venv/bin/python bench/run.py [--rounds 7] [--seconds 5] [--connections 8] [--with-tests]

Two models, each served by two apps: the iris model (final_app's own; reference
bench/reference_app.py) and lesson 08's penguin classifier, fitted on a pandas DataFrame
(final_app with MODEL_DIR set; reference bench/reference_penguins.py). All four apps run at
once on loopback, each on a free port, with 2 workers: final_app under its own Procfile
command with the environment of a 512 MB classic web dyno (tools/dyno.py: WEB_CONCURRENCY=2 and
the buildpack's GUNICORN_CMD_ARGS, so gunicorn writes its access log as on Heroku), the
references under uvicorn. Each round loads each app in
turn with the same request; the report quotes medians over rounds, because this machine is
shared and noisy. Every server started here is stopped on exit.

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
import importlib.metadata
import json
import os
import pathlib
import platform
import re
import shlex
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
from palmerpenguins import load_penguins  # the data set ships with the package: no download

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # import final_app from this checkout
sys.path.insert(0, str(ROOT / "lessons"))  # lesson_helpers: free_port(), stop()
sys.path.insert(0, str(ROOT / "lessons" / "07_performance"))  # measure: the lesson's tools

from final_app.linear import fast_predict, rows_within_bounds  # noqa: E402
from final_app.artifact import load_model_and_metadata  # noqa: E402
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
DEFAULT_OUTPUT = ROOT / "bench" / "RESULTS.md"
LESSON_NOTEBOOK = ROOT / "lessons" / "07_performance" / "07_performance.ipynb"
TARGETS = {  # name: (what it means, threshold, True if higher is better)
    "single_ratio": ("iris single-row req/s, final_app / reference", 1.2, True),
    "batch_ratio": ("iris 1000-row rows/s, final_app / reference", 3.0, True),
    "batch_of_limit": ("iris 1000-row rows/s, final_app / in-process limit", 0.30, True),
    "penguins_single_ratio": ("penguins single-row req/s, final_app / reference", 1.0, True),
    "penguins_batch_ratio": ("penguins 1000-row rows/s, final_app / reference", 1.0, True),
    "boot_seconds": ("final_app spawn to first /health 200 (s)", 1.5, False),
    "pss_workers_mb": ("final_app PSS of the 2 workers (MB)", 160, False),
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

    def cpu_seconds(self):
        """CPU time (user + system) used so far by the server and all its processes."""
        processes = [psutil.Process(self.process.pid)]
        processes += processes[0].children(recursive=True)
        return sum(sum(process.cpu_times()[:2]) for process in processes)

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
        self.model_rows = None  # the same rows as the model takes them, for the in-process figure
        self.in_process = None  # what the apps ask of the model, timed on model_rows with no web (None: not timed)
        self.check_rows = []  # rows whose answers must be the model's own before any timing
        self.check_input = None  # the same rows as the model takes them
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
    comparison.model_rows = numpy.array(comparison.rows)
    comparison.in_process = comparison.model.predict_proba  # the limit, as the targets define it
    comparison.check_rows = comparison.rows[:50]
    comparison.check_input = numpy.array(comparison.check_rows)
    comparison.bad_rows = [[[1, 2, 3]], [[1, 2, 3, "x"]], [[1, 2, 3, 1e9]], []]
    comparison.rows_described = "real iris measurements (the 150 repeated), sent as lists"
    return comparison


def predict_and_predict_proba(model):
    """Return a function of X that makes both calls the apps make for a classifier."""
    def both(X):
        return model.predict(X), model.predict_proba(X)
    return both


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
    comparison.model_rows = batch
    comparison.in_process = predict_and_predict_proba(comparison.model)
    comparison.check_input = penguin_table(comparison.metadata)  # every penguin, once
    comparison.check_rows = penguin_records(comparison.check_input)
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


def check_same_answers(comparison):
    """Both apps must answer exactly like the model itself, and refuse the same bad input."""
    model, rows = comparison.model, comparison.check_rows
    regression = comparison.metadata["task"] == "regression"
    predicted = model.predict(comparison.check_input).tolist()  # labels, or the values of a regression
    probabilities = None if regression else model.predict_proba(comparison.check_input)
    keys = [probability_key(name) for name in comparison.metadata.get("classes", [])]
    for server in comparison.servers:
        where = f"{comparison.name} {server.name}"
        status, body = post_json(server.base_url + "/predict", {"instances": rows})
        assert status == 200, f"{where}: /predict answered {status}: {body}"
        predictions = body["predictions"]
        if regression:  # the same float64 arithmetic: exactly equal, whatever the number of threads
            assert [prediction["value"] for prediction in predictions] == predicted, f"{where}: values differ from predict"
        else:
            assert [prediction["label"] for prediction in predictions] == predicted, f"{where}: labels differ"
            got = numpy.array([[prediction["probabilities"][key] for key in keys] for prediction in predictions])
            assert numpy.array_equal(got, probabilities), f"{where}: probabilities differ from predict_proba"
        for bad in comparison.bad_rows:
            status, body = post_json(server.base_url + "/predict", {"instances": bad})
            assert status == 400 and "message" in body["error"], f"{where}: {bad}: {status}"
    print(f"  {comparison.name}: both apps give the model's own answers on {len(rows)} rows "
          f"and refuse {len(comparison.bad_rows)} bad requests", flush=True)


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
    """Drive url with the chosen tool; refuse results that include failed requests."""
    if tool == "wrk":
        result = wrk_load(url, body_path, seconds, connections, headers)
    elif headers:
        raise SystemExit("sending extra headers needs wrk")
    else:
        result = measure.post_load(url, body_path.read_bytes(), seconds, connections)
    if result["not_ok"]:
        raise SystemExit(f"{url}: {result['not_ok']} of {result['requests']} requests failed")
    return result


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
    """Each round: each model's in-process figure (where it has one), then each request on each app in turn.

    The order of the apps alternates between rounds, and the in-process figures are measured
    in every round too, so that a busy moment on the machine hits every figure, not just one.
    options_group, if given, is ((server, state), ...) for final_app with the options off and on:
    each round also loads each, in alternating order, with the one-row iris request and CLIENT_HEADERS.
    """
    results = {}
    timed_in_process = [comparison for comparison in comparisons if comparison.in_process is not None]
    for round_number in range(args.rounds):
        if options_group is not None:
            group = options_group if round_number % 2 == 0 else options_group[::-1]
            for server, state in group:
                result = load_one(args, tool, server, bodies[("iris", "single")], 1, CLIENT_HEADERS)
                results.setdefault(("options", state), []).append(result)
                print(f"  round {round_number + 1} iris     single options {state:14}  "
                      f"{result['requests_per_s']:9.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                      f"p99 {result['p99_ms']:6.2f} ms  CPU {result['cpu_ms']:6.3f} ms/request", flush=True)
        for comparison in timed_in_process:
            rate = measure.in_process_rate(comparison.in_process, comparison.model_rows)
            results.setdefault((comparison.name, "limit"), []).append({"rows_per_s": rate})
            print(f"  round {round_number + 1} {comparison.name:8} in-process {rate:10.0f} rows/s",
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


def load_one(args, tool, server, body_path, rows, headers=None):
    """Load one server with one request body; return the load result with rows/s and CPU per request."""
    cpu_before = server.cpu_seconds()
    result = load(tool, server.base_url + "/predict", body_path, args.seconds, args.connections, headers)
    result["rows_per_s"] = result["requests_per_s"] * rows
    result["cpu_ms"] = (server.cpu_seconds() - cpu_before) * 1000 / result["requests"]
    return result


def median_of(runs, key):
    """The median of one field over rounds."""
    return statistics.median(run[key] for run in runs)


def median_ratio(runs, other_runs):
    """The median over rounds of rows/s in runs divided by rows/s in other_runs, round by round."""
    return statistics.median(run["rows_per_s"] / other["rows_per_s"]
                             for run, other in zip(runs, other_runs))


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
    names = ["flask", "werkzeug", "gunicorn", "scikit-learn", "numpy", "pandas", "fastapi", "starlette",
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
              "rows": {comparison.name: comparison.rows_described for comparison in comparisons}}
    with tempfile.TemporaryDirectory() as scratch:
        bodies = write_bodies(comparisons + [threads], scratch)
        try:
            print("boot: spawn to first 200 on /health ...", flush=True)
            for comparison in comparisons:
                for server in comparison.servers:
                    seconds = median_boot_seconds(server, args.rounds)
                    report["boot"][(comparison.name, server.name)] = seconds
                    print(f"  {comparison.name} {server.name}: {seconds:.2f} s", flush=True)
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
            results = run_rounds(args, tool, comparisons + [threads], bodies, group)
            for comparison in comparisons:
                for server in comparison.servers:
                    measure.wait_for_workers(server.process.pid, 2)
                    report["pss"][(comparison.name, server.name)] = \
                        measure.process_tree_pss_mb(server.process.pid)
        finally:
            for server in servers + options_on:
                server.stop()
    report["results"] = results
    # final_app's own model call for iris, for context: the limit stays predict_proba, as the targets say.
    iris = comparisons[0]
    direct = fast_predict(iris.model, rows_within_bounds(iris.metadata["features"]))
    report["direct_rows_per_s"] = measure.in_process_rate(direct, iris.model_rows) if direct else None
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


def median_boot_seconds(server, rounds):
    """Start and stop server rounds times; return the median seconds from spawn to first /health 200."""
    times = []
    for _ in range(rounds):
        times.append(server.start())
        server.stop()
    return statistics.median(times)


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
        for key, runs in results.items() if key[1] != "limit" and key[0] != "options"
    }
    medians.update({key: {field: median_of(runs, field) for field in ("requests_per_s", "p50_ms", "p99_ms", "cpu_ms")}
                    for key, runs in results.items() if key[0] == "options"})
    report["in_process_rows_per_s"] = {key[0]: median_of(runs, "rows_per_s")
                                       for key, runs in results.items() if key[1] == "limit"}
    report["limit_rows_per_s"] = report["in_process_rows_per_s"]["iris"]
    measured, by_cpu = {}, {}
    for name, (model, size) in RATIO_TARGETS.items():
        final, reference = (model, "final_app", size), (model, "reference", size)
        measured[name] = median_ratio(results[final], results[reference])
        # What the same ratio would be if each server were limited by CPU alone, as on a quiet
        # machine: rows per CPU-second, from the median CPU time per request.
        by_cpu[name] = medians[reference]["cpu_ms"] / medians[final]["cpu_ms"]
    iris_batch = ("iris", "final_app", "batch")
    measured["batch_of_limit"] = median_ratio(results[iris_batch], results[("iris", "limit")])
    limit_cpu_ms = BATCH_ROWS * 1000 / report["limit_rows_per_s"]
    by_cpu["batch_of_limit"] = limit_cpu_ms / medians[iris_batch]["cpu_ms"]
    if ("options", "on") in results:
        measured["options_cost"], by_cpu["options_cost"] = options_cost(results)
        own_cost = options_cost(results, BOTH_LINES)
    else:
        measured["options_cost"] = by_cpu["options_cost"] = own_cost = None
    measured["boot_seconds"] = report["boot"][("iris", "final_app")]
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
    if name == "batch_of_limit":
        return f"{value:.0%}"
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
        "Written by `make bench` (bench/run.py). Two models, each served by final_app and by a",
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
        "- final_app: " + ", ".join(f"{k} {v}" for k, v in final_versions.items()
                                    if k in ("flask", "werkzeug", "gunicorn", "scikit-learn", "numpy",
                                             "pandas")),
        f"  under the Procfile command, as on a 512 MB classic web dyno (tools/dyno.py: WEB_CONCURRENCY=2, "
        f"GUNICORN_CMD_ARGS=`--access-logfile -`, FORWARDED_ALLOW_IPS, DYNO)"
        + (f", GUNICORN_CMD_ARGS=`{args.gunicorn_args}`" if args.gunicorn_args else "")
        + f"; for penguins with MODEL_DIR={PENGUINS_DIR.relative_to(ROOT)}",
        "- references (bench/reference_app.py for iris, bench/reference_penguins.py for penguins): "
        + ", ".join(f"{k} {v}" for k, v in reference_versions.items()
                    if k in ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "pandas")),
        "  under `uvicorn --workers 2`",
        f"- load: {report['tool']}, {args.connections} connections, {args.seconds:g} s per run",
        f"- iris rows: {report['rows']['iris']}",
        f"- penguins rows: {report['rows']['penguins']}",
        "- before any timing, both apps of each model answered a batch of its rows exactly as the",
        "  model's own predict and predict_proba do, and refused the same bad requests with 400",
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
    ]


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
    measured, medians = summary["measured"], summary["medians"]
    in_process = report["in_process_rows_per_s"]
    penguins_final = medians[("penguins", "final_app", "batch")]["rows_per_s"]
    penguins_reference = medians[("penguins", "reference", "batch")]["rows_per_s"]
    boot, pss = report["boot"], report["pss"]
    lines = [
        "## The limit, start-up and memory",
        "",
        f"- iris: in-process `predict_proba` on the same {BATCH_ROWS} rows (no web at all): "
        f"{in_process['iris']:.0f} rows/s on one core; final_app's batch rate is "
        f"{measured['batch_of_limit']:.0%} of it",
        (f"- iris: final_app's own model call on the same rows (final_app/linear.py: the same "
         f"probabilities, computed without scikit-learn's input checks): "
         f"{report['direct_rows_per_s']:.0f} rows/s on one core"
         if report.get("direct_rows_per_s") else
         "- iris: final_app calls predict_proba itself: its model is not the one final_app/linear.py computes"),
        f"- penguins: in-process `predict` then `predict_proba` (both apps make both calls) on the same "
        f"{BATCH_ROWS} rows as a DataFrame: {in_process['penguins']:.0f} rows/s on one core; the "
        f"1000-row rate is {penguins_final / in_process['penguins']:.0%} of it for final_app, "
        f"{penguins_reference / in_process['penguins']:.0%} for the reference (medians, 2 workers)",
    ]
    for model in MODEL_NAMES:
        lines.append(f"- {model}: spawn to first 200 on /health: final_app {boot[(model, 'final_app')]:.2f} s, "
                     f"reference {boot[(model, 'reference')]:.2f} s")
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
        wanted = f"{threshold:.0%}" if name in ("batch_of_limit", "options_cost") else f"{threshold:g}"
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


def round_lines(report):
    """Every round's rows/s, so a disturbed round can be seen."""
    lines = ["## Every round", "", "| what | rows/s in each round |", "|---|---|"]
    results = report["results"]
    for model in MODEL_NAMES:
        keys = [(model, app, size) for size in SIZES for app in ("final_app", "reference")]
        for key in keys + [(model, "limit")]:
            name = f"{model} in-process" if key[1] == "limit" else f"{model} {key[2]}: {key[1]}"
            lines.append(f"| {name} | " + ", ".join(f"{run['rows_per_s']:.0f}" for run in results[key]) + " |")
    for state in OPTIONS_STATES:
        if ("options", state) in results:
            lines.append(f"| iris single, client headers: final_app options {state} | "
                         + ", ".join(f"{run['rows_per_s']:.0f}" for run in results[("options", state)]) + " |")
    return lines


if __name__ == "__main__":
    main()
