"""Benchmark final_app against a FastAPI reference serving the same model; write RESULTS.md.

Run from the repository root (`make bench` does this, after installing the reference's
own requirements into bench/.venv):

    .venv/bin/python bench/run.py [--rounds 7] [--seconds 5] [--connections 8] [--with-tests]

Both apps run at once on loopback, each on a free port, with 2 workers: final_app under
its own Procfile command with WEB_CONCURRENCY=2, the reference under uvicorn. Each round
loads each app in turn with the same request; the report quotes medians over rounds,
because this machine is shared and noisy. Every server started here is stopped on exit.
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
import psutil
import sklearn.datasets

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # import final_app from this checkout
sys.path.insert(0, str(ROOT / "lessons"))  # lesson_helpers: free_port(), stop()
sys.path.insert(0, str(ROOT / "lessons" / "07_performance"))  # measure: the lesson's tools

from final_app.linear import fast_predict_proba, rows_within_bounds  # noqa: E402
from final_app.artifact import load_model  # noqa: E402
from lesson_helpers import free_port, stop  # noqa: E402
import measure  # noqa: E402

BATCH_ROWS = 1000
DEFAULT_OUTPUT = ROOT / "bench" / "RESULTS.md"
LESSON_NOTEBOOK = ROOT / "lessons" / "07_performance" / "07_performance.ipynb"
TARGETS = {  # name: (what it means, threshold, True if higher is better)
    "single_ratio": ("single-row req/s, final_app / reference", 1.2, True),
    "batch_ratio": ("1000-row rows/s, final_app / reference", 3.0, True),
    "batch_of_limit": ("1000-row rows/s, final_app / in-process limit", 0.30, True),
    "boot_seconds": ("final_app spawn to first /health 200 (s)", 1.5, False),
    "pss_workers_mb": ("final_app PSS of the 2 workers (MB)", 160, False),
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
    parser.add_argument("--load-tool", choices=["wrk", "python"],
                        help="force a load generator (default: wrk if installed)")
    return parser.parse_args(argv)


def sample_rows(count):
    """count real iris measurements (the data set repeated), as lists in model order."""
    features = sklearn.datasets.load_iris().data
    return numpy.resize(features, (count, features.shape[1])).tolist()


def final_app_command():
    """The web command from the Procfile, run by a shell the way Heroku and honcho do."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return ["/bin/sh", "-c", "exec " + line.removeprefix("web:").strip()]
    raise SystemExit("Procfile has no web: line")


def reference_command(python):
    """uvicorn serving bench/reference_app.py with 2 worker processes."""
    return [python, "-m", "uvicorn", "bench.reference_app:app", "--host", "127.0.0.1",
            "--port", "{port}", "--workers", "2"]


def app_environment(port, gunicorn_args):
    """The environment both servers get: the Heroku-like settings, the port, the venv first."""
    env = dict(os.environ, PORT=str(port), WEB_CONCURRENCY="2", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{ROOT / '.venv/bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("FLASK_DEBUG", None)
    # Options given here win over gunicorn.conf.py. Listen on loopback only: nobody else on
    # the network needs to reach a benchmark.
    env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{port} {gunicorn_args}".strip()
    return env


class Server:
    """One app under test: how to start it, and the running process once started."""

    def __init__(self, name, command, gunicorn_args=""):
        self.name = name
        self.command = command
        self.gunicorn_args = gunicorn_args
        self.process = None
        self.base_url = None
        self.log = tempfile.TemporaryFile(mode="w+")

    def start(self):
        """Spawn it on a free port; return seconds until /health first answered 200."""
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        argv = [part.replace("{port}", str(port)) for part in self.command]
        seconds, self.process = measure.boot_seconds(
            argv, self.base_url + "/health", env=app_environment(port, self.gunicorn_args),
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


def post_json(url, payload):
    """POST payload; return (status, decoded JSON body)."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def check_same_answers(servers, model, classes, rows):
    """Both apps must answer like the model itself, and reject the same bad input."""
    expected = model.predict_proba(numpy.array(rows))
    for server in servers:
        status, body = post_json(server.base_url + "/predict", {"instances": rows})
        assert status == 200, f"{server.name}: /predict answered {status}: {body}"
        for row, prediction in zip(expected, body["predictions"]):
            assert prediction["label"] == classes[int(row.argmax())], server.name
            got = [prediction["probabilities"][name] for name in classes]
            assert numpy.allclose(got, row), f"{server.name}: {got} != {row}"
        for bad in ([[1, 2, 3]], [[1, 2, 3, "x"]], [[1, 2, 3, 1e9]], []):
            status, body = post_json(server.base_url + "/predict", {"instances": bad})
            assert status == 400 and "message" in body["error"], f"{server.name}: {bad}: {status}"


def wrk_load(url, body_path, seconds, connections):
    """Run wrk with bench/post.lua; return the same fields as measure.post_load()."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
               "-s", str(ROOT / "bench/post.lua"), url, "--", str(body_path)]
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


def load(tool, url, body_path, seconds, connections):
    """Drive url with the chosen tool; refuse results that include failed requests."""
    if tool == "wrk":
        result = wrk_load(url, body_path, seconds, connections)
    else:
        result = measure.post_load(url, body_path.read_bytes(), seconds, connections)
    if result["not_ok"]:
        raise SystemExit(f"{url}: {result['not_ok']} of {result['requests']} requests failed")
    return result


def run_rounds(args, tool, servers, bodies, predict_proba, batch):
    """Each round: the in-process limit, then each scenario on each app in turn.

    The order of the apps alternates between rounds, and the limit is measured in every
    round too, so that a busy moment on the machine hits every figure, not just one.
    """
    results = {(server.name, scenario): [] for server in servers for scenario in bodies}
    results["limit"] = []
    for round_number in range(args.rounds):
        rate = measure.in_process_rate(predict_proba, batch)
        results["limit"].append({"rows_per_s": rate})
        print(f"  round {round_number + 1} in-process limit {rate:10.0f} rows/s", flush=True)
        order = servers if round_number % 2 == 0 else servers[::-1]
        for scenario, (body_path, rows) in bodies.items():
            for server in order:
                cpu_before = server.cpu_seconds()
                result = load(tool, server.base_url + "/predict", body_path,
                              args.seconds, args.connections)
                result["rows_per_s"] = result["requests_per_s"] * rows
                result["cpu_ms"] = (server.cpu_seconds() - cpu_before) * 1000 / result["requests"]
                results[(server.name, scenario)].append(result)
                print(f"  round {round_number + 1} {scenario:6} {server.name:9} "
                      f"{result['requests_per_s']:9.0f} req/s {result['rows_per_s']:10.0f} rows/s "
                      f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                      f"CPU {result['cpu_ms']:6.3f} ms/request", flush=True)
    return results


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
    names = ["flask", "werkzeug", "gunicorn", "scikit-learn", "numpy", "fastapi", "starlette",
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
    if not pathlib.Path(args.reference_python).exists():
        raise SystemExit(f"{args.reference_python} not found: `make bench` creates bench/.venv")
    tool = choose_load_tool(args.load_tool)
    model = load_model()
    metadata = json.loads((ROOT / "final_app/model/model.json").read_text())
    rows = sample_rows(BATCH_ROWS)

    batch = numpy.array(rows)
    servers = [Server("final_app", final_app_command(), args.gunicorn_args),
               Server("reference", reference_command(args.reference_python))]
    report = {"tool": tool, "boot": {}, "pss": {}}
    with tempfile.TemporaryDirectory() as scratch:
        bodies = {}
        for scenario, count in (("single", 1), ("batch", BATCH_ROWS)):
            path = pathlib.Path(scratch) / f"{scenario}.json"
            path.write_text(json.dumps({"instances": rows[:count]}))
            bodies[scenario] = (path, count)
        try:
            print("boot: spawn to first 200 on /health ...", flush=True)
            for server in servers:
                times = []
                for _ in range(args.rounds):
                    times.append(server.start())
                    server.stop()
                report["boot"][server.name] = statistics.median(times)
                print(f"  {server.name}: {report['boot'][server.name]:.2f} s", flush=True)
            for server in servers:
                server.start()
            check_same_answers(servers, model, metadata["classes"], rows[:50])
            print(f"load: {tool}, {args.connections} connections, {args.seconds:g} s per run, "
                  f"{args.rounds} rounds", flush=True)
            results = run_rounds(args, tool, servers, bodies, model.predict_proba, batch)
            for server in servers:
                measure.wait_for_workers(server.process.pid, 2)
                report["pss"][server.name] = measure.process_tree_pss_mb(server.process.pid)
        finally:
            for server in servers:
                server.stop()
    report["results"] = results
    # final_app's own model call, for context: the limit stays predict_proba, as the targets say.
    direct = fast_predict_proba(model, rows_within_bounds(metadata["features"]))
    report["direct_rows_per_s"] = measure.in_process_rate(direct, batch) if direct else None
    if args.with_tests:
        print("timing make test ...", flush=True)
        report["tests"] = time_test_suite()
    elif args.tests_seconds:
        report["tests"] = (args.tests_seconds, None, "measured separately")
    summary = summarize(report)
    text = render(args, report, summary)
    pathlib.Path(args.output).write_text(text)
    print(text)
    if pathlib.Path(args.output) == DEFAULT_OUTPUT:
        refresh_lesson()


def refresh_lesson():
    """Re-run lesson 07's notebook, which shows RESULTS.md, so its stored output matches."""
    print(f"re-running {LESSON_NOTEBOOK.relative_to(ROOT)}, which shows these results ...", flush=True)
    subprocess.run([sys.executable, str(ROOT / "tools/run_notebooks.py"), str(LESSON_NOTEBOOK)],
                   cwd=ROOT, check=True)


def summarize(report):
    """Medians per app and scenario, ratios, and each target's verdict."""
    results = dict(report["results"])
    limit = results.pop("limit")
    medians = {
        key: {field: median_of(runs, field)
              for field in ("requests_per_s", "rows_per_s", "p50_ms", "p99_ms", "cpu_ms")}
        for key, runs in results.items()
    }
    report["limit_rows_per_s"] = median_of(limit, "rows_per_s")
    final, reference = "final_app", "reference"
    measured = {
        "single_ratio": median_ratio(results[(final, "single")], results[(reference, "single")]),
        "batch_ratio": median_ratio(results[(final, "batch")], results[(reference, "batch")]),
        "batch_of_limit": median_ratio(results[(final, "batch")], limit),
        "boot_seconds": report["boot"][final],
        "pss_workers_mb": report["pss"][final]["workers_mb"],
    }
    # What the same ratios would be if each server were limited by CPU alone, as on a quiet
    # machine: rows per CPU-second, from the median CPU time per request.
    limit_cpu_ms = BATCH_ROWS * 1000 / report["limit_rows_per_s"]
    by_cpu = {
        "single_ratio": medians[(reference, "single")]["cpu_ms"] / medians[(final, "single")]["cpu_ms"],
        "batch_ratio": medians[(reference, "batch")]["cpu_ms"] / medians[(final, "batch")]["cpu_ms"],
        "batch_of_limit": limit_cpu_ms / medians[(final, "batch")]["cpu_ms"],
    }
    return {"medians": medians, "measured": measured, "verdicts": verdicts_for(measured),
            "by_cpu": by_cpu, "cpu_verdicts": verdicts_for(by_cpu)}


def verdicts_for(values):
    """True for each value that meets its target."""
    return {name: (value >= TARGETS[name][1]) if TARGETS[name][2] else (value <= TARGETS[name][1])
            for name, value in values.items()}


def shown(name, value):
    """A measured value as the targets table shows it."""
    if name == "batch_of_limit":
        return f"{value:.0%}"
    return f"{value:.0f}" if name == "pss_workers_mb" else f"{value:.2f}"


def render(args, report, summary):
    """The Markdown report."""
    facts = machine()
    final_versions = versions(sys.executable)
    reference_versions = versions(args.reference_python)
    medians, measured, verdicts = summary["medians"], summary["measured"], summary["verdicts"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/run.py). Both apps ran at the same time on loopback,",
        "each with 2 worker processes, loaded in turn with the same requests; each figure is",
        f"the median of {args.rounds} rounds. Ratios are what count: absolute numbers depend",
        "on the machine, and this one is shared with other work.",
        "",
        f"- date: {now}",
        f"- machine: {facts['cores']} cores ({facts['cpu']}), {facts['memory_gb']:.1f} GB memory, "
        f"{facts['system']}, Python {facts['python']}",
        "- final_app: " + ", ".join(f"{k} {v}" for k, v in final_versions.items()
                                    if k in ("flask", "werkzeug", "gunicorn", "scikit-learn", "numpy")),
        f"  under the Procfile command, WEB_CONCURRENCY=2"
        + (f", GUNICORN_CMD_ARGS=`{args.gunicorn_args}`" if args.gunicorn_args else ""),
        "- reference (bench/reference_app.py): " + ", ".join(
            f"{k} {v}" for k, v in reference_versions.items()
            if k in ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools")),
        "  under `uvicorn --workers 2`",
        f"- load: {report['tool']}, {args.connections} connections, {args.seconds:g} s per run;"
        f" rows are real iris measurements sent as lists",
        "",
        "## Throughput and latency (medians)",
        "",
        "| scenario | app | requests/s | rows/s | p50 ms | p99 ms | server CPU ms per request |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario in ("single", "batch"):
        label = "1 row" if scenario == "single" else f"{BATCH_ROWS} rows"
        for app in ("final_app", "reference"):
            row = medians[(app, scenario)]
            lines.append(f"| {label} | {app} | {row['requests_per_s']:.0f} | {row['rows_per_s']:.0f}"
                         f" | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_ms']:.3f} |")
        final, reference = medians[("final_app", scenario)], medians[("reference", scenario)]
        ratio = median_ratio(report["results"][("final_app", scenario)],
                             report["results"][("reference", scenario)])
        lines.append(f"| {label} | **final_app / reference** | **{ratio:.2f}x** | | "
                     f"{final['p50_ms'] / reference['p50_ms']:.2f}x | "
                     f"{final['p99_ms'] / reference['p99_ms']:.2f}x | "
                     f"{final['cpu_ms'] / reference['cpu_ms']:.2f}x |")
    pss = report["pss"]
    lines += [
        "",
        "The throughput ratio is the median of the ratios measured round by round; latency",
        "and CPU ratios are ratios of the medians: below 1, final_app is faster or cheaper.",
        "Server CPU per request (all processes of the server, user + system) suffers less from",
        "a busy machine than requests/s do, so it is the cross-check for the throughput ratios.",
        "",
        "## The limit, start-up and memory",
        "",
        f"- in-process `predict_proba` on the same {BATCH_ROWS} rows (no web at all): "
        f"{report['limit_rows_per_s']:.0f} rows/s on one core; final_app's batch rate is "
        f"{measured['batch_of_limit']:.0%} of it",
        (f"- final_app's own model call on the same rows (final_app/linear.py: the same "
         f"probabilities, computed without scikit-learn's input checks): "
         f"{report['direct_rows_per_s']:.0f} rows/s on one core"
         if report.get("direct_rows_per_s") else
         "- final_app calls predict_proba itself: its model is not the one final_app/linear.py computes"),
        f"- spawn to first 200 on /health: final_app {report['boot']['final_app']:.2f} s, "
        f"reference {report['boot']['reference']:.2f} s",
        f"- memory (PSS, after the load): final_app {pss['final_app']['workers_mb']:.0f} MB for "
        f"{pss['final_app']['workers']} workers + {pss['final_app']['master_mb']:.0f} MB master; "
        f"reference {pss['reference']['workers_mb']:.0f} MB for {pss['reference']['workers']} "
        f"child processes + {pss['reference']['master_mb']:.0f} MB master",
    ]
    if "tests" in report:
        seconds, passed, note = report["tests"]
        state = {True: "passed", False: "FAILED", None: "measured separately"}[passed]
        lines.append(f"- test suite (`make test`): {seconds:.0f} s, {state} ({note})")
    else:
        lines.append("- test suite: not timed in this run (add `--with-tests`)")
    lines += [
        "",
        "## Targets",
        "",
        "The throughput ratios are the targets as defined. The column after them asks the same",
        "question of the CPU time per request: the ratio each would have if both servers were",
        "limited by CPU alone, as on a machine doing nothing else. When the two verdicts differ,",
        "the machine was too busy for the throughput ratio to be trusted on its own.",
        "",
        "| target | wanted | measured | met? | from CPU per request | met? |",
        "|---|---:|---:|---|---:|---|",
    ]
    by_cpu, cpu_verdicts = summary["by_cpu"], summary["cpu_verdicts"]
    for name, (meaning, threshold, higher) in TARGETS.items():
        sign = ">=" if higher else "<="
        wanted = f"{threshold:.0%}" if name == "batch_of_limit" else f"{threshold:g}"
        row = f"| {meaning} | {sign} {wanted} | {shown(name, measured[name])} | " \
              f"{'met' if verdicts[name] else 'NOT met'} |"
        if name in by_cpu:
            row += f" {shown(name, by_cpu[name])} | {'met' if cpu_verdicts[name] else 'NOT met'} |"
        else:
            row += " | |"
        lines.append(row)
    lines += ["", "## Every round", "", "| what | rows/s in each round |", "|---|---|"]
    for key, runs in report["results"].items():
        name = "in-process limit" if key == "limit" else f"{key[1]}: {key[0]}"
        lines.append(f"| {name} | " + ", ".join(f"{run['rows_per_s']:.0f}" for run in runs) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
