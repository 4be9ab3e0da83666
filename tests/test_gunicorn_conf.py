"""gunicorn.conf.py, read by gunicorn itself: production settings within Heroku's limits, and development mode."""
import datetime
import io
import logging
import os
import re
import runpy
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from gunicorn.app.wsgiapp import WSGIApplication
from gunicorn.glogging import Logger

from conftest import GUNICORN, ROOT, usable_cores
from final_app import logs
from lesson_helpers import running
from test_log_lines import parse_line
from tools import preflight

HEROKU_ROUTER_TIMEOUT_S = 30  # a request still running after 30 s gets H12
HEROKU_SHUTDOWN_S = 30  # SIGKILL follows SIGTERM after 30 s
HEROKU_ROUTER_IDLE_S = 90  # the router closes idle keep-alive connections after 90 s


def gunicorn_settings(monkeypatch, **env):
    """Return gunicorn's resolved settings for the Procfile's command, with exactly env set."""
    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_DEV", "GUNICORN_CMD_ARGS", "LOG_LEVEL", "OMP_NUM_THREADS"):
        # Set, then removed: monkeypatch now remembers each name, so what gunicorn.conf.py sets
        # while it loads (OMP_NUM_THREADS) is undone too when the test ends.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["gunicorn", "--config", "gunicorn.conf.py", "final_app.wsgi:app"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # gunicorn adds the app folder to it
    return WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn").cfg


def test_production_binds_port_on_every_interface(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="43210")
    assert len(settings.bind) == 1
    assert settings.bind[0] in ("[::]:43210", "0.0.0.0:43210")


@pytest.mark.parametrize("given, used", [(None, "1"), ("2", "2")])
def test_the_model_gets_one_thread_per_call_unless_you_say_otherwise(monkeypatch, given, used):
    env = {"PORT": "43210"} if given is None else {"PORT": "43210", "OMP_NUM_THREADS": given}
    gunicorn_settings(monkeypatch, **env)
    assert os.environ["OMP_NUM_THREADS"] == used


@pytest.mark.skipif(usable_cores() < 2, reason="with one core OpenMP starts no extra thread, with or without the setting")
def test_a_served_model_starts_no_threads_of_its_own():
    # lesson 08's HistGradientBoostingRegressor predicts on OpenMP: by default each of the worker's
    # 4 threads that calls it gets a team of one OpenMP thread per core (on 2 cores, 4 more threads).
    command = [GUNICORN, "--config", "gunicorn.conf.py", "final_app.wsgi:app"]
    env = {"WEB_CONCURRENCY": "1", "MODEL_DIR": str(ROOT / "lessons/08_own_model/models/penguin_mass")}
    row = {"species": "Adelie", "island": "Biscoe", "sex": "male", "bill_length_mm": 40.0,
           "bill_depth_mm": 18.0, "flipper_length_mm": 190.0}
    with running(command, cwd=ROOT, env=env, ready_path="/health") as (base_url, server):
        def client():
            with requests.Session() as session:
                for _ in range(8):
                    response = session.post(base_url + "/predict", json={"instances": [row]}, timeout=30)
                    assert response.status_code == 200, response.text
        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        [worker] = psutil.Process(server.pid).children()
        # The worker's main thread and its pool of `threads = 4`, and nothing else.
        assert worker.num_threads() <= 1 + 4, worker.threads()


@pytest.mark.parametrize("web_concurrency, workers", [(None, 2), ("3", 3), ("02", 2)])
def test_workers_come_from_web_concurrency(monkeypatch, web_concurrency, workers):
    env = {"PORT": "43210"}
    if web_concurrency is not None:
        env["WEB_CONCURRENCY"] = web_concurrency
    assert gunicorn_settings(monkeypatch, **env).workers == workers


def test_production_preloads_the_app_and_never_reloads(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="43210", WEB_CONCURRENCY="2")
    assert settings.preload_app is True
    assert settings.reload is False


def test_timeouts_fit_inside_herokus_limits(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="43210")
    assert 0 < settings.timeout < HEROKU_ROUTER_TIMEOUT_S
    assert 0 < settings.graceful_timeout < HEROKU_SHUTDOWN_S
    assert settings.keepalive > HEROKU_ROUTER_IDLE_S


def test_logs_go_to_the_standard_streams(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="43210")
    assert settings.errorlog == "-"
    assert "request_id=%({x-request-id}i)s" in settings.access_log_format
    assert settings.loglevel == "info"
    assert gunicorn_settings(monkeypatch, PORT="43210", LOG_LEVEL="WARNING").loglevel == "warning"


# --- the access line: every value escaped, so no request can forge or split a line ---------------

class Sent:
    """What gunicorn's worker hands the logger about a response: its status, length and headers."""

    status, sent, headers = "404 NOT FOUND", 120, [("Content-Type", "application/json")]


def access_line(monkeypatch, path, request_id, method="GET"):
    """Return the access line gunicorn.conf.py's logger writes for a request with this path and X-Request-ID."""
    settings = gunicorn_settings(monkeypatch, PORT="43210")
    logger = settings.logger_class(settings)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(logger.access_fmt))  # as gunicorn's own handler writes it
    monkeypatch.setattr(logger.access_log, "handlers", [handler])
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "RAW_URI": path,
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.1.2.3", "HTTP_X_REQUEST_ID": request_id}
    logger.access(Sent, [("X-REQUEST-ID", request_id)], environ, datetime.timedelta(microseconds=1500))
    return stream.getvalue()


HOSTILE_ACCESS = {
    "a line break and fields in the path": ('/x\nmethod=POST path="/predict" status=200', "plain-request-id-0001"),
    "a request id that adds fields": ("/health", "abcdefghijklmnopqrstu status=500 forged=id"),
    "backslash, quote, DEL, NEL, bytes that are not UTF-8": ('/a\\b"c\x7f\x85\xff', 'id\\"\x85\r'),
}


@pytest.mark.parametrize("path, request_id", HOSTILE_ACCESS.values(), ids=HOSTILE_ACCESS.keys())
def test_the_access_line_escapes_what_the_client_sent(monkeypatch, path, request_id):
    line = access_line(monkeypatch, path, request_id)
    assert line.endswith("\n") and line[:-1].isascii() and line[:-1].isprintable()  # one line, plain ASCII
    kind, _, fields = parse_line(line[:-1])
    assert (kind, fields["path"], fields["request_id"], fields["status"]) == ("access", path, request_id, "404")


def test_a_huge_path_or_header_keeps_the_access_line_within_a_pipe_write(monkeypatch):
    line = access_line(monkeypatch, "/" + "\x85" * 8000, "\xff" * 8000, method="X" * 4000)
    assert len(line.encode()) <= logs.MAX_LINE_BYTES
    fields = parse_line(line[:-1])[2]
    assert fields["path"].endswith("...") and fields["request_id"].endswith("...")


ATOMS = ["m", "U", "s", "B", "M", "{x-request-id}i", "{X-Request-ID}i", "{accept}i", "h", "r", "q", "H", "b", "D",
         "{content-type}o", "{path_info}e", "{nothing}i", "x"]


@pytest.mark.parametrize("request_headers", [[("X-REQUEST-ID", "first"), ("ACCEPT", "*/*"), ("X-REQUEST-ID", "last")],
                                             {"X-REQUEST-ID": "only"}, []])
def test_the_access_line_atoms_are_gunicorns_own(monkeypatch, request_headers):
    # LogfmtAtoms looks up the atoms the format names instead of letting gunicorn copy every header
    # and environ value for each request: each must be the value gunicorn's atoms() gives, escaped.
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    settings = gunicorn_settings(monkeypatch, PORT="43210")
    logger = settings.logger_class(settings)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "QUERY_STRING": "a=b c", "RAW_URI": "/predict",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "10.1.2.3", "HTTP_X_REQUEST_ID": "x"}
    took = datetime.timedelta(seconds=2, microseconds=345678)
    gunicorns = Logger.atoms(logger, Sent, request_headers, environ, took)
    atoms = config["LogfmtAtoms"](logger, Sent, request_headers, environ, took)
    for name in ATOMS:
        expected = gunicorns.get(name.lower() if name.startswith("{") else name, "-")
        assert atoms[name] == config["logfmt_value"](expected), name
    assert atoms["M"] == "2345" and atoms["s"] == "404"


def test_the_access_format_adds_no_quotes_of_its_own(monkeypatch):
    # Each value comes quoted when it must be: quotes in the format would double them.
    assert '"' not in gunicorn_settings(monkeypatch, PORT="43210").access_log_format


@pytest.mark.parametrize("text", ["/health", "", "-", "a b", 'q"uote', "back\\slash", "line\nbreak", "\x00\x1f\x7f\x85",
                                  "caf\xe9", "\u2028", "\U0001F600", "x" * 700, "\U0001F600" * 300, "k=v"])
def test_the_config_and_final_app_write_a_value_alike(text):
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert config["logfmt_value"](text, 600) == logs.logfmt_value(text, 600)


def test_access_log_is_on_everywhere_as_on_a_dyno(monkeypatch):
    assert gunicorn_settings(monkeypatch, PORT="43210").accesslog == "-"
    assert gunicorn_settings(monkeypatch, PORT="8000", GUNICORN_DEV="1").accesslog == "-"
    # What the buildpack sets on a classic dyno: the same.
    on_a_dyno = gunicorn_settings(monkeypatch, PORT="43210", GUNICORN_CMD_ARGS="--access-logfile -")
    assert on_a_dyno.accesslog == "-"


def test_the_way_to_drop_the_access_log_on_heroku_works(tmp_path):
    # The config file's advice: accesslog = None in the file, and GUNICORN_CMD_ARGS set to
    # something of your own, so that the buildpack leaves it alone. In a separate Python, as
    # gunicorn would read the edited file afresh.
    text = (ROOT / "gunicorn.conf.py").read_text()
    assert text.count('accesslog = "-"') == 1
    (tmp_path / "gunicorn.conf.py").write_text(text.replace('accesslog = "-"', "accesslog = None"))
    script = ("import sys\nfrom gunicorn.app.wsgiapp import WSGIApplication\n"
              "sys.argv = ['gunicorn', '--config', 'gunicorn.conf.py', 'final_app.wsgi:app']\n"
              "settings = WSGIApplication('%(prog)s', prog='gunicorn').cfg\n"
              "print(settings.accesslog, settings.loglevel)\n")
    env = {"PATH": os.environ["PATH"], "PORT": "43210"}
    answers = []
    for cmd_args in ("--log-level info", "--access-logfile -"):  # yours; the buildpack's
        result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                                env=dict(env, GUNICORN_CMD_ARGS=cmd_args), timeout=60)
        assert result.returncode == 0, result.stderr
        answers.append(result.stdout.strip())
    assert answers == ["None info", "- info"]


def test_each_worker_freezes_what_is_loaded_before_serving():
    # In a separate Python: freezing is for good, and this test process should stay as it was.
    def frozen_after(load):
        script = (
            "import gc, runpy\n"
            "hooks = runpy.run_path('gunicorn.conf.py')\n"
            f"{load}\n"
            "assert gc.get_freeze_count() == 0\n"
            "hooks['post_worker_init'](None)\n"
            "print(gc.get_freeze_count())\n"
        )
        env = {key: value for key, value in os.environ.items() if key != "GUNICORN_DEV"}
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[-1])

    # Everything the app loaded (Flask, numpy, ONNX Runtime, the model): far more than a bare Python has.
    assert frozen_after("import final_app.wsgi") > 2 * frozen_after("pass")


def test_no_control_socket_is_left_in_the_home_folder(monkeypatch):
    assert gunicorn_settings(monkeypatch, PORT="43210").control_socket_disable is True


def test_worker_class_and_threads_are_set_in_one_place(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="43210")
    assert settings.worker_class_str == "gthread"
    assert settings.threads >= 1
    text = (ROOT / "gunicorn.conf.py").read_text()
    assert text.count("worker_class =") == 1 and text.count("threads =") == 1


def test_development_mode_is_one_reloading_worker_on_the_loopback(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="8000", GUNICORN_DEV="1", WEB_CONCURRENCY="4")
    assert settings.bind == ["127.0.0.1:8000"]
    assert settings.workers == 1
    assert settings.reload is True
    assert settings.preload_app is False  # a preloaded app could not be reloaded


def test_development_mode_needs_exactly_1(monkeypatch):
    settings = gunicorn_settings(monkeypatch, PORT="8000", GUNICORN_DEV="yes")
    assert settings.reload is False and settings.preload_app is True


# --- preload_app: measured with the Procfile's command, as lessons 05 and 07 show it -------------

def wait_for_lines(output, text, count, limit):
    """Wait (at most limit seconds) until count lines of output contain text; tell whether they did."""
    seen = threading.Event()

    def watch():
        found = 0
        for line in output:
            found += text in line
            if found == count:
                seen.set()
                return

    threading.Thread(target=watch, daemon=True).start()
    return seen.wait(limit)


def measured_memory(config, ready_lines):
    """Serve final_app with config and 2 workers once ready_lines have logged; return its memory in MB.

    Returns (master and workers together, the workers alone, what one more worker adds). PSS
    splits shared pages among the processes sharing them; a worker's USS (the pages only it
    holds) is what one more worker adds.
    """
    command = [GUNICORN, "--config", str(config), "final_app.wsgi:app"]
    with running(command, cwd=ROOT, env={"WEB_CONCURRENCY": "2"}, ready_path="/health") as (_url, server):
        # The app logs this line each time it is built: once in the master with preload, once per
        # worker without; then every worker has loaded the model, however busy the machine is.
        assert wait_for_lines(server.stdout, "final_app: ready: model", ready_lines, limit=60)
        master = psutil.Process(server.pid)
        deadline = time.monotonic() + 60
        while len(master.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(master.children()) == 2
        preflight.settled_memory_mb(server)
        workers = [worker.memory_full_info() for worker in master.children()]
        workers_mb = sum(info.pss for info in workers) / 2**20
        total_mb = master.memory_full_info().pss / 2**20 + workers_mb
        return total_mb, workers_mb, max(info.uss for info in workers) / 2**20


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    """final_app's memory with gunicorn.conf.py as it is, and with preload_app turned off."""
    no_preload = tmp_path_factory.mktemp("config") / "no_preload.conf.py"
    no_preload.write_text((ROOT / "gunicorn.conf.py").read_text() + "\npreload_app = False\n")
    return {"preload": measured_memory(ROOT / "gunicorn.conf.py", ready_lines=1),
            "no preload": measured_memory(no_preload, ready_lines=2)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS is measured on Linux only")
def test_preload_shares_the_model_so_master_and_workers_use_less_memory(memory):
    total_preload, _, _ = memory["preload"]
    total_plain, _, _ = memory["no preload"]
    # Measured on 2 cores, the iris model served by its ONNX graph: about 79 MB against 113 MB.
    assert total_preload < 0.8 * total_plain, memory
    assert total_plain < 512, memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS is measured on Linux only")
def test_with_preload_one_more_worker_costs_less_than_half(memory):
    _, _, worker_preload = memory["preload"]
    _, _, worker_plain = memory["no preload"]
    assert worker_preload < 0.5 * worker_plain, memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PSS is measured on Linux only")
def test_the_workers_alone_would_overstate_what_preload_saves(memory):
    total_preload, workers_preload, _ = memory["preload"]
    total_plain, workers_plain, _ = memory["no preload"]
    # With preload the master holds the model too: measured on 2 cores, about 2.8 against 1.4.
    assert workers_plain / workers_preload > 1.2 * (total_plain / total_preload), memory


def test_gunicorn_reads_this_file_from_its_folder_even_without_config():
    # gunicorn's --config defaults to ./gunicorn.conf.py: the Procfile names it only to be plain.
    result = subprocess.run([GUNICORN, "--print-config", "final_app.wsgi:app"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, GUNICORN_CMD_ARGS=""))
    assert result.returncode == 0, result.stderr
    settings = dict(re.findall(r"^(\w+) +=[ ]?(.*)$", result.stdout, re.MULTILINE))
    assert (settings["config"], settings["preload_app"], settings["worker_class"]) == \
        ("./gunicorn.conf.py", "True", "gthread")
