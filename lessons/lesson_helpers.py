"""Run a lesson's app as a real server on a free loopback port, and always stop it.

The notebooks and the tests both use this, so what a notebook shows is what the tests check:

    with running([sys.executable, "app.py"]) as (base_url, process):  # app.py reads $PORT
        print(requests.get(base_url + "/").text)

It needs Linux or macOS (on Windows, use WSL), like gunicorn itself.
"""
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


class ServerOutput:
    """A server's output, collected by a thread as it comes, and read like the pipe it replaces.

    A pipe that nobody reads fills up (64 KiB) and then blocks the server at its next log line,
    so a long-running server must have its output read all the time.
    """

    def __init__(self, pipe):
        self._lines = []
        self._finished = False
        self._position = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._collect, args=(pipe,), daemon=True).start()

    def _collect(self, pipe):
        """Append each line of the pipe as it arrives; note when the server closes it."""
        for line in pipe:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        pipe.close()
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    def readline(self):
        """Return the next line, waiting for it; "" once the server has closed its output."""
        with self._changed:
            self._changed.wait_for(lambda: self._position < len(self._lines) or self._finished)
            if self._position == len(self._lines):
                return ""
            self._position += 1
            return self._lines[self._position - 1]

    def __iter__(self):
        return iter(self.readline, "")

    def read(self):
        """Return everything not read yet, waiting until the server has closed its output."""
        return "".join(self)

    def close(self):
        """Nothing to release: the collecting thread closes the pipe itself."""


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url, process=None, timeout=30.0):
    """Poll url until it answers (any HTTP status); fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered, just not with 200
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no answer from {url} within {timeout} s")


def stop(process, timeout=10.0, again_after=2.0):
    """Send SIGTERM to the process group, once more after again_after s, then SIGKILL after timeout.

    The second SIGTERM is for a gunicorn worker forked at the moment of the first: until it sets its
    own signal handlers it still has the master's, which only note a signal for the master's loop
    (gunicorn's arbiter.py spawn_worker, then workers/base.py init_process: init_signals), so it
    would serve on until the master's graceful timeout (20 s in gunicorn.conf.py) and be killed.
    """
    if os.name == "nt" and process.poll() is None:  # Windows has no process groups: end the tree
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True)
        process.wait()
    for signal_number, wait in ((signal.SIGTERM, again_after), (signal.SIGTERM, timeout - again_after),
                                (signal.SIGKILL, None)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal_number)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
    return process.returncode


def loopback_gunicorn_args(port, existing=""):
    """Return GUNICORN_CMD_ARGS that make gunicorn listen on 127.0.0.1:port, keeping existing options.

    gunicorn gives these options priority over its config file, and options on its command line
    priority over these. An address already in existing is kept: two would both be listened on.
    """
    options = shlex.split(existing or "")
    if any(option in ("-b", "--bind") or option.startswith(("-b", "--bind=")) for option in options):
        return existing
    return f"--bind 127.0.0.1:{port} {existing or ''}".strip()


@contextlib.contextmanager
def running(command, cwd=None, env=None, ready_path="/", port=None, timeout=30.0):
    """Run command (a list; "{port}" in it is replaced) and yield (base_url, process).

    The server gets PORT in its environment too, and gunicorn is told to listen on
    127.0.0.1 only. Output is captured and printed if it fails to start, so a broken
    server explains itself in the test report.
    """
    port = port or free_port()
    full_env = dict(os.environ, PORT=str(port), PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    # Like a dyno, gunicorn listens on $PORT; unlike a dyno, only this machine can reach it.
    full_env["GUNICORN_CMD_ARGS"] = loopback_gunicorn_args(port, full_env.get("GUNICORN_CMD_ARGS", ""))
    argv = [part.replace("{port}", str(port)) for part in command]
    process = subprocess.Popen(
        argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    process.stdout = ServerOutput(process.stdout)  # read as before: .read(), or line by line
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_http(base_url + ready_path, process, timeout)
        except (RuntimeError, TimeoutError) as error:
            stop(process)
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"{error}\n--- server output ---\n{output}") from None
        yield base_url, process
    finally:
        stop(process)
        if process.stdout:
            process.stdout.close()

