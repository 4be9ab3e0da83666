"""Resolve a gunicorn command's settings and import its app, the way gunicorn would.

tools.preflight runs this in the app's root folder, in a separate process (importing the app
loads its model, and the app must not leak into the checker):

    python tools/web_probe.py --config gunicorn.conf.py final_app.wsgi:app

It prints one line starting with PROBE_MARKER and holding JSON: the settings, whether the app
imported, whether Flask debug is on, and the files from the app's folder it loaded (the sources of
its modules, and every file it read while starting, such as its model). Anything the app itself
prints is ignored.
"""
import contextlib
import io
import json
import os
import pathlib
import sys
import traceback

PROBE_MARKER = "WEB-PROBE-RESULT "
WRITING = os.O_WRONLY | os.O_RDWR


def gunicorn_settings(argv):
    """Return gunicorn's resolved settings for these command-line arguments."""
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = ["gunicorn", *argv]
    application = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn")
    settings = application.cfg
    return {
        "app_uri": application.app_uri,
        "bind": list(settings.bind),
        "workers": settings.workers,
        "reload": settings.reload,
        "preload_app": settings.preload_app,
    }


def import_app(app_uri):
    """Import the WSGI app exactly as gunicorn does and report whether debug is on."""
    from gunicorn.util import import_app as gunicorn_import_app

    app_output = io.StringIO()
    try:
        with contextlib.redirect_stdout(app_output), contextlib.redirect_stderr(app_output):
            app = gunicorn_import_app(app_uri)
    except SystemExit as exit_:  # the app refused to start, after saying why
        said = app_output.getvalue().strip().splitlines() or ["(nothing)"]
        return {"error": f"the app exited while loading (code {exit_.code}): {said[-1]}"}
    return {"imported": True, "debug": bool(getattr(app, "debug", False))}


def last_error_line():
    """Return the last line of the current exception: the part a person can act on."""
    lines = traceback.format_exc().strip().splitlines()
    return lines[-1] if lines else "unknown error"


def record_files_read():
    """Start recording every file this process opens for reading; return the set it fills."""
    read = set()

    def on_event(event, arguments):
        # Python reports each open() as an audit event: (path, mode, flags).
        if event == "open" and isinstance(arguments[0], (str, bytes)) and not arguments[2] & WRITING:
            read.add(os.path.abspath(os.fsdecode(arguments[0])))

    sys.addaudithook(on_event)
    return read


def inside(path, folder):
    """Tell whether path is folder itself or lies below it."""
    return os.path.commonpath([path, folder]) == folder


def files_loaded_from(root, read):
    """Return the files below root the app loaded (module sources and files read), relative to root.

    Left out: this probe, the Python environment (a .venv inside the repository) and __pycache__.
    """
    module_files = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    candidates = read | {os.path.abspath(path) for path in module_files if isinstance(path, str)}
    environments = {os.path.abspath(folder) for folder in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    loaded = set()
    for path in candidates:
        if (inside(path, root) and os.path.isfile(path) and path != os.path.abspath(__file__)
                and not any(inside(path, folder) for folder in environments)
                and "__pycache__" not in pathlib.PurePath(path).parts):
            loaded.add(pathlib.PurePath(path).relative_to(root).as_posix())
    return sorted(loaded)


def main(argv):
    """Probe the command and print the result line."""
    # Import the app from the current folder, as gunicorn does, not from this tools folder.
    sys.path[0] = os.getcwd()
    read = record_files_read()
    result = {}
    gunicorn_messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(gunicorn_messages):
            result.update(gunicorn_settings(argv))
        result.update(import_app(result["app_uri"]))
    except SystemExit:  # gunicorn exits on a bad setting, after printing why
        message = gunicorn_messages.getvalue().strip().splitlines() or ["bad gunicorn settings"]
        result["error"] = "gunicorn: " + message[-1].removeprefix("Error: ")
    except Exception:  # the point is to report any failure, whatever its type
        result["error"] = last_error_line()
    result["loaded_files"] = files_loaded_from(os.getcwd(), read)
    print(PROBE_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
