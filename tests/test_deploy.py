"""The repository root as Heroku runs it: the Procfile's web process, shutdown, crashes, the build check."""
import json
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests

from conftest import ROOT
from final_app.artifact import load_model_and_metadata
from lesson_helpers import running
from tools.dyno import dyno_environment

VENV_BIN = os.path.dirname(sys.executable)
# What a classic web dyno sets (tools/dyno.py); programs named in the Procfile (gunicorn)
# resolve in this virtualenv, as on the dyno.
ENV = dict(dyno_environment({}), PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.9, 3.0, 5.1, 1.8]]
HEROKU_SHUTDOWN_S = 30


def web_command():
    """Return the Procfile's web command as an argv list."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            return shlex.split(command)
    raise AssertionError("no web line in the Procfile")


def expected_predictions(rows):
    """Return what the saved model itself says for rows: [(label, {class: probability})]."""
    model, metadata = load_model_and_metadata()
    classes = metadata["classes"]
    results = []
    for probabilities in model.predict_proba(rows):
        best = max(range(len(classes)), key=lambda index: probabilities[index])
        results.append((classes[best], dict(zip(classes, probabilities))))
    return results


def assert_predictions_match_the_model(response, rows):
    """The response is a 200 whose predictions equal the model's own, row by row."""
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(rows)
    for prediction, (label, probabilities) in zip(predictions, expected_predictions(rows)):
        assert prediction["label"] == label
        assert prediction["probabilities"] == pytest.approx(probabilities, abs=1e-9)


def collect_output(process):
    """Read the server's output in a thread (so its pipe never fills); return the growing list of lines."""
    lines = []

    def read():
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for(condition, limit, what):
    """Poll condition() every 0.05 s until it is true; fail naming what after limit seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


def worker_pids(master_pid):
    """Return the pids of gunicorn's worker processes."""
    return {child.pid for child in psutil.Process(master_pid).children()}


def test_procfile_is_the_agreed_web_line():
    assert (ROOT / "Procfile").read_text() == "web: gunicorn --config gunicorn.conf.py final_app.wsgi:app\n"


def test_procfile_web_process_under_honcho_serves_predictions(tmp_path):
    # The real .env, minus its fixed PORT: honcho then takes PORT (a free one) from the environment.
    env_file = tmp_path / "env"
    env_file.write_text("".join(line + "\n" for line in (ROOT / ".env").read_text().splitlines()
                                if not line.startswith("PORT=")))
    command = [os.path.join(VENV_BIN, "honcho"), "start", "--env", str(env_file), "web"]
    with running(command, cwd=ROOT, env=ENV, ready_path="/health") as (base_url, process):
        output = collect_output(process)
        health = requests.get(base_url + "/health", timeout=10)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        response = requests.post(base_url + "/predict", json={"instances": ROWS}, timeout=10,
                                 headers={"X-Request-ID": "rehearsal-42"})
        assert_predictions_match_the_model(response, ROWS)
        assert response.json()["model_version"] == health.json()["model_version"]
        wait_for(lambda: any("final_app: ready: model" in line for line in output), 10, "the app's ready line")
        # The buildpack's GUNICORN_CMD_ARGS turns on gunicorn's line per request, in our format.
        wait_for(lambda: any('method=POST path=/predict status=200' in line and "request_id=rehearsal-42" in line
                             for line in output), 10, "gunicorn's access line for the POST")
    assert any(line.startswith(tuple("0123456789")) and "web.1" in line for line in output)


def send_request_head_and_half_the_body(port, body):
    """Open a connection and send a POST /predict whose body is only half sent; return the socket."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=HEROKU_SHUTDOWN_S)
    head = ("POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    connection.sendall(head.encode() + body[: len(body) // 2])
    return connection


def finish_request(connection, body):
    """Send the rest of the body and return (status code, JSON body) of the response."""
    connection.sendall(body[len(body) // 2:])
    received = b""
    for _ in range(10_000):  # bounded: a response is a few kB
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    connection.close()
    assert received, "the server closed the connection without answering"
    head, _, payload = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def accepted_by_a_worker(master_pid, connection):
    """Tell whether a gunicorn worker (not just the kernel's queue) holds this connection."""
    client_port = connection.getsockname()[1]
    for pid in worker_pids(master_pid):
        for held in psutil.Process(pid).net_connections(kind="tcp"):
            if held.raddr and held.raddr.port == client_port:
                return True
    return False


def test_sigterm_lets_requests_in_flight_finish_and_exits_in_time():
    body = json.dumps({"instances": ROWS}).encode()
    with running(web_command(), cwd=ROOT, env=ENV, ready_path="/health") as (base_url, process):
        output = collect_output(process)
        port = int(base_url.rsplit(":", 1)[1])
        wait_for(lambda: len(worker_pids(process.pid)) == 2, 15, "two workers")
        in_flight = [send_request_head_and_half_the_body(port, body) for _ in range(3)]
        try:
            for connection in in_flight:
                wait_for(lambda: accepted_by_a_worker(process.pid, connection), 10, "a worker to take the request")
            # Heroku sends SIGTERM to every process of the dyno at once, and SIGKILL 30 s later.
            signalled = time.monotonic()
            os.killpg(process.pid, signal.SIGTERM)
            wait_for(lambda: any("Handling signal: term" in line for line in output), 10, "gunicorn to see SIGTERM")
            results = [finish_request(connection, body) for connection in in_flight]
        finally:
            for connection in in_flight:
                connection.close()
        time_left = signalled + HEROKU_SHUTDOWN_S - time.monotonic()
        try:
            process.wait(timeout=max(time_left, 0))
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn still running {HEROKU_SHUTDOWN_S} s after SIGTERM: Heroku would kill it")
        assert process.returncode == 0
    # Each worker left cleanly: gunicorn logs a worker that exits with a status or dies of a signal
    # (arbiter.py, reap_workers), and one that tore down onnxruntime after the fork would abort.
    assert not [line for line in output if "exited with code" in line or "was sent SIG" in line
                or "terminate called" in line]
    expected_labels = [label for label, _ in expected_predictions(ROWS)]
    for status, payload in results:
        assert status == 200
        assert [prediction["label"] for prediction in payload["predictions"]] == expected_labels


def test_a_worker_killed_under_load_is_replaced_and_only_requests_in_flight_are_lost():
    clients = 4
    results = {"ok": 0, "failed": 0, "ok_after_replacement": 0}
    lock = threading.Lock()
    stop_load = threading.Event()
    replaced = threading.Event()

    def client(base_url):
        """Send predictions one after another until told to stop."""
        while not stop_load.is_set():
            try:
                response = requests.post(base_url + "/predict", json={"instances": ROWS[:1]}, timeout=10)
                outcome = "ok" if response.status_code == 200 else "failed"
            except requests.RequestException:
                outcome = "failed"
            with lock:
                results[outcome] += 1
                if outcome == "ok" and replaced.is_set():
                    results["ok_after_replacement"] += 1

    with running(web_command(), cwd=ROOT, env=ENV, ready_path="/health") as (base_url, process):
        collect_output(process)
        wait_for(lambda: len(worker_pids(process.pid)) == 2, 15, "two workers")
        threads = [threading.Thread(target=client, args=(base_url,)) for _ in range(clients)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: results["ok"] >= 40, 30, "some load")
            victim = sorted(worker_pids(process.pid))[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: victim not in worker_pids(process.pid) and len(worker_pids(process.pid)) == 2,
                     15, "gunicorn to replace the killed worker")
            replaced.set()
            wait_for(lambda: results["ok_after_replacement"] >= 20, 30, "requests served after the replacement")
        finally:
            stop_load.set()
            for thread in threads:
                thread.join(timeout=30)
        # Each client has at most one request in flight, so the kill can cost at most one per client.
        assert results["failed"] <= clients, results
        for _ in range(5):
            assert_predictions_match_the_model(
                requests.post(base_url + "/predict", json={"instances": ROWS}, timeout=10), ROWS)


def test_post_compile_checks_the_model_and_passes_on_this_repository():
    result = subprocess.run(["bash", "bin/post_compile"], cwd=ROOT, env=dict(os.environ, **ENV),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    assert "setosa" in result.stdout


def test_post_compile_fails_the_build_on_a_tampered_model(tmp_path):
    shutil.copytree(ROOT / "final_app", tmp_path / "final_app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bin", tmp_path / "bin")
    model_file = tmp_path / "final_app" / "model" / "model.joblib"
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    result = subprocess.run(["bash", "bin/post_compile"], cwd=tmp_path, env=dict(os.environ, **ENV),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "model.joblib" in result.stdout
    assert "sha256" in result.stdout.lower()


def test_app_json_describes_a_deployable_app():
    app_json = json.loads((ROOT / "app.json").read_text())
    assert app_json["name"] and app_json["description"] and app_json["keywords"]
    assert app_json["buildpacks"] == [{"url": "heroku/python"}]
    assert app_json["formation"]["web"]["quantity"] >= 1
    assert app_json["formation"]["web"]["size"] in ("eco", "basic", "standard-1x")
    assert app_json["environments"]["test"]["scripts"]["test"] == "python -m final_app.check"


def test_dot_env_is_for_local_runs_on_the_readme_port():
    settings = dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
                    if line and not line.startswith("#"))
    assert settings["PORT"] == "5006"
    assert "WEB_CONCURRENCY" not in settings  # the dyno's own value, from tools/dyno.py, as on Heroku
    assert "-m tools.dyno --loopback-port $(REHEARSE_PORT) $(BIN)/honcho start --env .env web" in \
        (ROOT / "Makefile").read_text()


SLOW_APP = '''
import time

def app(environ, start_response):
    time.sleep(float(environ["QUERY_STRING"] or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
'''


def test_gunicorns_timeout_ends_a_slow_request_under_sync_but_not_under_gthread(tmp_path):
    # gunicorn's master kills a worker that has not checked in for `timeout` seconds. A sync worker
    # serves one request at a time and checks in between requests; a gthread worker (ours) checks
    # in about every second from its main loop while its threads serve, so a slow request runs to its
    # end. A timeout of 1 s would leave that loop no slack on a busy machine, so this one is 2 s and
    # the request takes 4.5 s: the sync worker is killed 2 to 3 s in (the master looks once a second).
    (tmp_path / "slow.py").write_text(SLOW_APP)
    (tmp_path / "empty.conf.py").write_text("")
    gunicorn = str(pathlib.Path(sys.executable).parent / "gunicorn")
    answers = {}

    def serve(worker_class):
        command = [gunicorn, "--config", "empty.conf.py", "--worker-class", worker_class, "--timeout", "2",
                   "--bind", "127.0.0.1:{port}", "slow:app"]
        with running(command, cwd=tmp_path, env={"GUNICORN_CMD_ARGS": ""}) as (base_url, server):
            try:
                answers[worker_class] = requests.get(base_url + "/?4.5", timeout=10).status_code
            except requests.ConnectionError:
                answers[worker_class] = "connection closed"
        answers[worker_class + " log"] = server.stdout.read()  # all of it, now that it has stopped

    threads = [threading.Thread(target=serve, args=(name,)) for name in ("sync", "gthread")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers["gthread"] == 200 and "WORKER TIMEOUT" not in answers["gthread log"]
    assert answers["sync"] != 200 and "WORKER TIMEOUT" in answers["sync log"]
