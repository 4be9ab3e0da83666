"""Small tools to measure a model-serving web app: the same ones `make bench` uses.

    rate = in_process_rate(model.predict_proba, rows)          # the limit: no web at all
    load = post_load(url + "/predict", body, seconds=5)         # requests/s and latency
    memory = process_tree_pss_mb(server.pid)                    # what the dyno pays for (Linux)
    seconds, server = boot_seconds(command, url + "/health")    # spawn to first 200

Every loop here is bounded by a time limit, and everything talks to one URL you give it.
"""
import http.client
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psutil


def in_process_rate(predict, rows, seconds=0.5):
    """Rows per second predict() handles when called directly, median of repeated calls."""
    predict(rows)  # the first call warms caches; do not count it
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        start = time.perf_counter()
        predict(rows)
        rates.append(len(rows) / (time.perf_counter() - start))
    return statistics.median(rates)


def percentile(values, percent):
    """The value below which `percent` % of the values fall (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, round(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def post_forever(url, body, stop_at, results):
    """POST body to url over one kept-alive connection until stop_at; record each request."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                connection.request("POST", parts.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                connection.close()  # a dropped connection counts as a failure; reconnect
                status = 0
            results.append((time.perf_counter() - start, status))
    finally:
        connection.close()


def post_load(url, body, seconds=5.0, connections=8):
    """Send body to url from `connections` threads for `seconds`; return rate and latency."""
    results = []
    start = time.perf_counter()
    stop_at = start + seconds
    threads = [
        threading.Thread(target=post_forever, args=(url, body, stop_at, results))
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies = [latency for latency, _ in results]
    return {
        "requests": len(results),
        "not_ok": sum(1 for _, status in results if status != 200),
        "requests_per_s": len(results) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def wait_for_workers(pid, count, timeout=30.0):
    """Wait until process pid has count child processes; return how many it has.

    A server may answer its first request before all of its workers have started.
    """
    deadline = time.perf_counter() + timeout
    children = psutil.Process(pid).children(recursive=True)
    while len(children) < count and time.perf_counter() < deadline:
        time.sleep(0.05)
        children = psutil.Process(pid).children(recursive=True)
    return len(children)


class PssUnknown(Exception):
    """The PSS of a process cannot be read here; the message says why."""


def pss_mb(process):
    """Return one process's PSS in MB, or raise PssUnknown saying why it cannot be read.

    psutil reports PSS on Linux only (macOS and Windows give USS, which leaves out shared pages).
    """
    try:
        info = process.memory_full_info()
    except psutil.AccessDenied:
        raise PssUnknown(f"not allowed to read the memory of process {process.pid}") from None
    if not hasattr(info, "pss"):
        raise PssUnknown("PSS is measured on Linux only (as on a Heroku dyno), not on this system")
    return info.pss / (1024 * 1024)


def process_tree_pss_mb(pid):
    """Proportional memory (PSS, MB) of a server process and of its children, separately.

    PSS splits memory shared between processes (a preloaded model, say) fairly among
    them, so adding it up over a master and its workers counts each page once. Where it
    cannot be read, master_mb and workers_mb are None and "unknown" says why.
    """
    master = psutil.Process(pid)
    workers = master.children(recursive=True)
    try:
        return {"master_mb": pss_mb(master), "workers_mb": sum(pss_mb(worker) for worker in workers),
                "workers": len(workers), "unknown": None}
    except PssUnknown as reason:
        return {"master_mb": None, "workers_mb": None, "workers": len(workers), "unknown": str(reason)}


def answers_ok(url):
    """True if url answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def boot_seconds(command, health_url, env=None, cwd=None, timeout=30.0, log=None):
    """Start command; return (seconds until health_url first answers 200, the process).

    The caller owns the process and must stop it (lesson_helpers.stop does that).
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log or subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, start_new_session=True)
    while not answers_ok(health_url):
        if process.poll() is not None or time.perf_counter() - start > timeout:
            return None, process
        time.sleep(0.01)
    return time.perf_counter() - start, process
