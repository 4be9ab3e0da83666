"""Benchmark python -m final_app.score on the same rows, in one run, and write bench/SCORE_RESULTS.md.

    .venv/bin/python bench/score_bench.py [--rows 2000000] [--forest-rows 160000]   (make bench runs it)

1. Lesson 08's penguin species classifier (ONNX engine), on a CSV of --rows penguins with 1 % of
   the rows spoiled (lesson 10's penguin_file.py: an unknown island, a decimal comma, an empty
   island): the model's own predict_proba in this process, on the good rows as a DataFrame; the
   local engine (reading, checking, predicting and writing, as a command); and the same command
   on a real `dask scheduler` with two `dask worker` processes on loopback. Each run's output is
   checked: every good row once, in order, the model's own answers within the tolerance model.json
   states, every spoiled row in the errors file with its row number, exit status 1.
2. A model where prediction dominates the work: lesson 08's species pipeline with a random forest
   of 300 trees, saved in a scratch folder: its own predict_proba, the local engine, and Dask
   LocalClusters of one and of two workers (one thread each), started and warmed up before the
   clock starts, so that both measure scoring; the best of three runs each.

Peak memory is the largest sum of the resident memory of the command and its child processes
(and of the scheduler and workers it uses), sampled every 50 ms.
"""
import argparse
import contextlib
import datetime
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pandas as pd
import psutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "lessons" / "10_batch"))
sys.path.insert(0, str(ROOT / "lessons"))
import penguin_file  # noqa: E402
from final_app import score  # noqa: E402
from final_app.artifact import load_model_and_metadata, save_model  # noqa: E402
from lesson_helpers import free_port, stop  # noqa: E402

MODELS = ROOT / "lessons" / "08_own_model" / "models"
SPECIES = MODELS / "penguins"
RESULTS = ROOT / "bench" / "SCORE_RESULTS.md"
BIN = pathlib.Path(sys.executable).parent


class PeakMemory:
    """Sample the summed RSS of some processes and all their children, in a thread, and keep the peak."""

    def __init__(self, *pids):
        self.pids, self.peak, self.running = list(pids), 0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        """Add up the RSS of the processes and their children every 50 ms."""
        while self.running:
            total = 0
            for pid in self.pids:
                with contextlib.suppress(psutil.Error):
                    process = psutil.Process(pid)
                    for each in [process] + process.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            total += each.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def stop(self):
        """Stop sampling; return the peak in MB."""
        self.running = False
        self.thread.join()
        return self.peak / 1e6


def run_command(args, model_dir, watch=()):
    """Run python -m final_app.score; return (exit status, its output, wall seconds, peak MB)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "final_app.score", *map(str, args)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, MODEL_DIR=str(model_dir)))
    memory = PeakMemory(process.pid, *watch)
    output = process.communicate(timeout=1800)[0]
    seconds = time.perf_counter() - start
    return process.returncode, output, seconds, memory.stop()


def command_seconds(output):
    """Return the seconds the command says it took (after Python and its imports started)."""
    return float(re.search(r"^time ([0-9.]+) s", output, re.M).group(1))


def species_frame(path, metadata, spoiled):
    """Return the CSV's good rows as the model's training DataFrame (dtypes from the metadata)."""
    frame = pd.read_csv(path).drop(index=spoiled)
    return frame.astype({feature["name"]: feature["dtype"] for feature in metadata["features"]})


def timed(function):
    """Return (function's result, seconds it took)."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def check_output(output_path, errors_path, good_labels, good_probabilities, spoiled, metadata, status):
    """Return the problems with a run's output ("" when it is right): rows, answers, errors, status."""
    checked = metadata["engine"]["checked"]
    scored = pd.read_csv(output_path)
    errors = pd.read_csv(errors_path, usecols=["row"])
    problems = []
    if status != 1:
        problems.append(f"exit status {status}")
    if scored["label"].tolist() != good_labels.tolist():
        problems.append("labels differ")
    if not np.allclose(scored.filter(like="probability_"), good_probabilities, rtol=checked["relative_tolerance"],
                       atol=checked["absolute_tolerance"]):
        problems.append("probabilities beyond the tolerance")
    if errors["row"].tolist() != spoiled.tolist():
        problems.append("errors file rows differ")
    return "; ".join(problems) or "ok"


@contextlib.contextmanager
def real_cluster(workers=2):
    """Yield (scheduler address, pids) of a `dask scheduler` and `dask worker` processes on loopback."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    quiet = dict(env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], **quiet)]
    try:
        processes += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny",
                                        "--no-dashboard", "--host", "127.0.0.1"], **quiet) for _ in range(workers)]
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)
            yield address, [process.pid for process in processes]
            client.shutdown()
    finally:
        for process in reversed(processes):
            stop(process)


def dask_rate(path, model_dir, workers, rows, tries=3):
    """Score path on a LocalCluster of `workers` one-thread workers, started and warmed up first; return the best rows/s."""
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as scratch, \
            LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster:
        warm = pathlib.Path(scratch) / "warm.csv"
        pd.read_csv(path, nrows=1000).to_csv(warm, index=False)
        score.score_file(warm, pathlib.Path(scratch) / "warm_out.csv", model_dir=model_dir, engine="dask",
                         scheduler=cluster.scheduler_address, chunk_rows=50)  # every worker loads the model
        best = None
        for _ in range(tries):
            result, seconds = timed(lambda: score.score_file(
                path, pathlib.Path(scratch) / "out.csv", model_dir=model_dir, engine="dask",
                scheduler=cluster.scheduler_address, chunk_rows=min(score.DEFAULT_CHUNK_ROWS, rows // 16)))
            assert result.rows == rows and len(result.workers) == workers, result
            best = min(best or seconds, seconds)
    return rows / best


def forest_model(scratch):
    """Fit lesson 08's species pipeline with a random forest of 300 trees instead, save it (scikit-learn engine)."""
    from sklearn.ensemble import RandomForestClassifier

    sys.path.insert(0, str(ROOT / "lessons" / "08_own_model"))
    import train_examples

    X_train, _X_test, y_train, _y_test = train_examples.species_data()
    pipeline = train_examples.penguin_species_model()
    pipeline.steps[-1] = ("forest", RandomForestClassifier(n_estimators=300, n_jobs=1, random_state=0))
    pipeline.fit(X_train, y_train)
    folder = scratch / "forest"
    save_model(pipeline, X_train, folder, name="penguins-forest", title="Penguin species (forest)",
                     target="species", engine="sklearn")
    return folder


def species_runs(scratch, rows):
    """The species classifier: in-process predict_proba, the local engine, two workers on a real scheduler."""
    model, metadata = load_model_and_metadata(SPECIES)
    path = scratch / "penguins.csv"
    spoiled = penguin_file.write_csv(path, rows)
    good = species_frame(path, metadata, spoiled)
    (labels, probabilities), predict_seconds = timed(lambda: (model.predict(good), model.predict_proba(good)))
    _probabilities, proba_seconds = timed(lambda: model.predict_proba(good))
    lines = {"rows": rows, "good": len(good), "predict_proba rate": len(good) / proba_seconds}
    status, output, seconds, peak = run_command([path, scratch / "local.csv"], SPECIES)
    lines["local"] = dict(status=status, seconds=seconds, command_seconds=command_seconds(output), peak=peak,
                          check=check_output(scratch / "local.csv", scratch / "local.errors.csv", labels,
                                             probabilities, spoiled, metadata, status))
    with real_cluster(2) as (address, pids):
        status, output, seconds, peak = run_command(
            [path, scratch / "dask.csv", "--engine", "dask", "--scheduler", address], SPECIES, watch=pids)
    lines["dask"] = dict(status=status, seconds=seconds, command_seconds=command_seconds(output), peak=peak,
                         workers=output.count("on 2 Dask workers"),
                         check=check_output(scratch / "dask.csv", scratch / "dask.errors.csv", labels,
                                            probabilities, spoiled, metadata, status))
    return lines


def forest_runs(scratch, rows):
    """A random forest, where prediction dominates: its own predict_proba, the local engine, Dask 1 and 2 workers."""
    folder = forest_model(scratch)
    model, metadata = load_model_and_metadata(folder)
    path = scratch / "forest.csv"
    spoiled = penguin_file.write_csv(path, rows)
    good = species_frame(path, metadata, spoiled)
    _probabilities, predict_seconds = timed(lambda: model.predict_proba(good))
    status, output, _seconds, peak = run_command([path, scratch / "forest_out.csv"], folder)
    return {"rows": rows, "predict rate": len(good) / predict_seconds, "local": rows / command_seconds(output),
            "local peak": peak, "dask 1": dask_rate(path, folder, 1, rows), "dask 2": dask_rate(path, folder, 2, rows),
            "status": status}


def report(species, forest, started):
    """Return SCORE_RESULTS.md's text."""
    local, dask = species["local"], species["dask"]
    rows = species["rows"]
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"""# `python -m final_app.score`: measured

Written by `bench/score_bench.py` (`make bench`) on {started:%Y-%m-%d %H:%M} UTC: {platform.python_version()},
{psutil.cpu_count()} cores (load average at the end: {load}; other work on the machine slows every line alike).
Every number comes from this one run, on the same rows.

## 1. The penguin species classifier (ONNX engine), {rows:,} rows, 1 % spoiled

The model of the issue's "done when": categories, nullable numbers, and three kinds of bad rows
(an unknown island, a decimal comma in a number, an empty required island).

| what | rows/s | time | peak memory | output checked |
|---|---:|---:|---:|---|
| the model's own `predict_proba`, in-process, on the {species['good']:,} good rows as a DataFrame | {species['predict_proba rate']:,.0f} | | | |
| local engine: `python -m final_app.score in.csv out.csv` (read, check, predict, write) | {rows / local['command_seconds']:,.0f} | {local['command_seconds']:.1f} s ({local['seconds']:.1f} s with Python's start) | {local['peak']:.0f} MB | {local['check']} |
| Dask: the same command with `--scheduler`, a `dask scheduler` and two `dask worker` processes on loopback | {rows / dask['command_seconds']:,.0f} | {dask['command_seconds']:.1f} s ({dask['seconds']:.1f} s) | {dask['peak']:.0f} MB (command, scheduler, workers) | {dask['check']}{'' if dask['workers'] else ' (not on 2 workers!)'} |

The local engine scores at **{100 * rows / local['command_seconds'] / species['predict_proba rate']:.0f} %** of the in-process
`predict_proba` rate (target: at least 20 %), reading, checking and writing included. "Output
checked" means: exit status 1, every good row once and in order, labels identical to the model's
own and probabilities within the tolerance `model.json` states for the ONNX engine, every spoiled
row in the errors file with its row number.

## 2. A random forest (scikit-learn engine), {forest['rows']:,} rows, 1 % spoiled

For the one-worker-against-two comparison, a model where prediction dominates: lesson 08's species
pipeline with a random forest of 300 trees in place of the logistic regression, saved by
`save_model(..., engine="sklearn")` in a scratch folder. Its own `predict_proba` manages
{forest['predict rate']:,.0f} rows/s in one call on all the good rows; the scikit-learn engine calls
`predict` and then `predict_proba` on each chunk, 300 trees each time, so prediction takes most of the
time. The LocalClusters were started and warmed up (each worker loaded the model) before the clock
started; each worker has one thread, and each Dask line is the best of three runs.

| what | rows/s |
|---|---:|
| the model's own `predict_proba`, in-process | {forest['predict rate']:,.0f} |
| local engine (peak {forest['local peak']:.0f} MB) | {forest['local']:,.0f} |
| Dask, 1 worker | {forest['dask 1']:,.0f} |
| Dask, 2 workers | {forest['dask 2']:,.0f} |

Two workers on two cores score **{forest['dask 2'] / forest['dask 1']:.2f}x** as many rows a second as one.
"""


def main(argv=None):
    """Run both parts and write SCORE_RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--forest-rows", type=int, default=160_000)
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="score-bench-") as scratch:
        species = species_runs(pathlib.Path(scratch), args.rows)
        print(species, flush=True)
        forest = forest_runs(pathlib.Path(scratch), args.forest_rows)
        print(forest, flush=True)
    RESULTS.write_text(report(species, forest, started))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
