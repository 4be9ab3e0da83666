"""Check a Flask app's repository against what Heroku will do with it, before you push.

Usage:  python -m tools.preflight [ROOT] [--static]

ROOT is the repository's top folder (default: the current folder). Heroku builds what `git push`
sends, your last commit, so that is what is checked: the files of HEAD, and every file the web app
loads committed as it is here (a model folder or helper module left out of the commit crashes the
dyno). The checks that read files run first; then the web process from the Procfile is started in
a copy of the last commit with $PORT set, measured, and stopped with SIGTERM, as on a dyno.
--static skips starting it. Each check prints a line starting with ✓ or ✗, every ✗ followed by
how to fix it, or ? for what cannot be measured on this machine (memory, outside Linux) and why;
the exit code is 1 if any check failed.

It starts the app with the Python running it and the packages installed there, not with a fresh
install of ROOT's requirements: to check another project, run it from that project's environment
(its requirements installed, plus psutil). The file checks follow what Heroku's classic Python
buildpack does (its bin/detect and package-manager choice); pins are read from requirements.txt only.
"""
import argparse
import contextlib
import fnmatch
import functools
import json
import os
import pathlib
import re
import shlex
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata

import psutil

from tools.dyno import DYNO_MEMORY_MB, dyno_environment

# Python versions Heroku supports today (December 2026), the one place to update them.
# Heroku follows Python's own end-of-life dates: 3.9 was removed in January 2026. 3.10 (end of life
# October 2026) still builds, with a deprecation warning, until the Python buildpack drops it on
# 6 January 2027 (lib/python_version.sh: warn_if_deprecated_major_version).
# Keep this in step with https://devcenter.heroku.com/articles/python-support
SUPPORTED_PYTHON = ("3.11", "3.12", "3.13", "3.14")
DEPRECATED_PYTHON = {"3.10": "6 January 2027"}

# Heroku's limits for a Basic/Eco dyno and its builds.
BOOT_LIMIT_S = 60
SHUTDOWN_LIMIT_S = 30
SLUG_LIMIT_MB = 500
# Roughly what the Python interpreter Heroku installs adds to the slug.
PYTHON_RUNTIME_MB = 60
# What installed Python packages shrink to in the slug's archive, on the safe side: this project's pinned
# packages (442 MB) compress to 36 % at gzip's fastest level (zlib level 1, measured file by file).
PACKAGE_COMPRESSION = 0.5

# The files that tell Heroku which Python package manager an app uses.
# What Heroku's classic Python buildpack does (bin/detect, lib/package_manager.sh):
# any of these files at the root makes it build the app as Python ...
PYTHON_PROJECT_FILES = (
    ".python-version", "__init__.py", "app.py", "main.py", "manage.py", "pdm.lock", "Pipfile", "Pipfile.lock",
    "poetry.lock", "pyproject.toml", "requirements.txt", "runtime.txt", "server.py", "setup.cfg", "setup.py",
    "uv.lock", "__pycache__", ".venv", "venv",
)
# ... and the build then needs exactly one of these package-manager files (a Pipfile alone stops it).
PACKAGE_MANAGER_FILES = {
    "Pipfile.lock": "Pipenv",
    "requirements.txt": "pip",
    "poetry.lock": "Poetry",
    "uv.lock": "uv",
}
# Heroku tries the languages in a fixed order (Ruby, Node.js, Clojure, Python, Java, ..., PHP, Go):
# these files make it pick a language that comes before Python. (composer.json, PHP, comes after.)
OTHER_LANGUAGE_FILES = {"Gemfile": "Ruby", "package.json": "Node.js", "project.clj": "Clojure"}

# Requirement names that cannot be installed on a Linux dyno, and what to do instead.
UNINSTALLABLE = {
    "sklearn": "the old name: install scikit-learn instead",
    "pywin32": "Windows only: delete the line",
    "pywin32-ctypes": "Windows only: delete the line",
    "pypiwin32": "Windows only: delete the line",
    "wmi": "Windows only: delete the line",
    "appnope": "macOS only: delete the line",
    "pyobjc": "macOS only: delete the line",
}
# Folders holding a local Python environment: they must not reach Heroku.
ENVIRONMENT_FOLDERS = (".venv", "venv", ".heroku")
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")
MODEL_FILES = ("model.joblib", "model.json")  # what final_app loads from MODEL_DIR, and model.onnx
GRAPH_FILE = "model.onnx"  # when the metadata says the model is served by its compiled graph
PROBE = pathlib.Path(__file__).with_name("web_probe.py")
PROBE_MARKER = "WEB-PROBE-RESULT "


@dataclass
class Check:
    """One line of the checklist: passed or not, what was checked, and the fix if it failed.

    A check that could not be measured here is not failed, but not passed either: measured is
    False and fix says why. A failed check stops the boot checks unless blocks_boot is False.
    """

    ok: bool
    title: str
    fix: str = ""
    measured: bool = True
    blocks_boot: bool = True

    def line(self):
        """Return the check as the text printed for it."""
        if not self.measured:
            return f"? {self.title}\n    why: {self.fix}"
        text = f"{'✓' if self.ok else '✗'} {self.title}"
        return text if self.ok else f"{text}\n    fix: {self.fix}"


def passed(title):
    """Return a passed check."""
    return Check(True, title)


def failed(title, fix):
    """Return a failed check with its fix."""
    return Check(False, title, fix)


def not_measured(title, why):
    """Return a check that could not be made on this machine, and why."""
    return Check(True, title, why, measured=False)


def not_committed(title, fix):
    """Return a failed check for files the commit lacks: the boot still runs, and shows what they do."""
    return Check(False, title, fix, blocks_boot=False)


# ---- reading the repository -----------------------------------------------------------------

def git(root, *arguments):
    """Run a git command in root; return its output, or None if it fails (not a repository, no commit)."""
    try:
        return subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def names_in(listing):
    """Return the sorted file names of a NUL-separated git listing."""
    return sorted({name for name in listing.split("\0") if name})


def is_git_repository(root):
    """Tell whether root is in a git repository."""
    return git(root, "rev-parse", "--git-dir") is not None


def has_commit(root):
    """Tell whether root's git repository has a commit (HEAD) yet."""
    return git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}") is not None


def files_heroku_receives(root):
    """Return the files `git push` sends, relative to root: the committed tree of HEAD.

    A repository with no commit yet sends nothing (check_has_commit says so): the files a first
    `git add -A` would commit stand in, so the other checks still have something to read. Not a
    git repository at all: every file in the folder, as if it were all committed.
    """
    committed = git(root, "ls-tree", "-r", "--name-only", "-z", "HEAD")
    if committed is not None:
        return names_in(committed)
    to_commit = git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    if to_commit is not None:
        return names_in(to_commit)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def changed_since_commit(root):
    """Return the tracked files that differ from HEAD, staged or not, relative to root."""
    return set(names_in(git(root, "diff", "--name-only", "--relative", "-z", "HEAD") or ""))


def ignored_by_git(root, names):
    """Return those of names that .gitignore (or another exclude file) ignores."""
    return set(names) & set((git(root, "check-ignore", "--", *names) or "").splitlines()) if names else set()


def commit_fix(root, names, message):
    """Return the fix that commits these files: one git command (add -f when .gitignore ignores one)."""
    force = " -f" if ignored_by_git(root, names) else ""
    them = "it" if len(names) == 1 else "them"
    files = " ".join(shlex.quote(name) for name in names)
    return f'commit {them}: git add{force} {files} && git commit -m "{message}"'


def requirement_lines(path, seen=None):
    """Yield (file name, line number, text) for each requirement, following -r includes."""
    seen = seen if seen is not None else set()
    if path in seen or not path.is_file():
        return
    seen.add(path)
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split(" #", 1)[0].strip().rstrip("\\").strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("-r ", "--requirement ")):
            yield from requirement_lines(path.parent / text.split(None, 1)[1], seen)
        elif text.startswith("-") and not text.startswith(("-e", "--editable")):
            continue  # a pip option such as --hash or --index-url, not a requirement
        else:
            yield path.name, number, text


def normalized(name):
    """Return a package name in the form PyPI compares names (lower case, dashes)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(text):
    """Return the package name a requirement line starts with, or None for paths and options."""
    match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    return normalized(match.group(1)) if match else None


def pinned_versions(root):
    """Return {package name: version} for every `name==version` line in requirements.txt."""
    pins = {}
    for _, _, text in requirement_lines(root / "requirements.txt"):
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", text)
        if match:
            pins[normalized(match.group(1))] = match.group(3)
    return pins


def read_procfile(root):
    """Return {process name: command} from the Procfile and a list of lines that do not parse."""
    processes, bad_lines = {}, []
    for number, raw in enumerate((root / "Procfile").read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(\S.*)$", line)
        if match:
            processes[match.group(1)] = match.group(2)
        else:
            bad_lines.append(f"line {number}: {line!r}")
    return processes, bad_lines


def split_command(command):
    """Split a Procfile command into its leading VAR=value settings and the program's argv."""
    words = shlex.split(command)
    settings = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        settings[name] = value
    return settings, words


# ---- static checks --------------------------------------------------------------------------

def check_has_commit(root):
    """A git repository has a commit: `git push` sends commits, and Heroku builds the last one."""
    if not is_git_repository(root) or has_commit(root):
        return []
    return [failed("this git repository has no commit yet: git push would send nothing",
                   'commit your files: git add -A && git commit -m "First commit"')]


def check_package_manager(files):
    """Exactly one package-manager file at the root, as the Python buildpack requires."""
    if "Pipfile" in files and "Pipfile.lock" not in files:
        return [failed("a Pipfile without its Pipfile.lock: Heroku stops the build",
                       "run `pipenv lock` and commit Pipfile.lock, or delete the Pipfile")]
    found = [name for name in PACKAGE_MANAGER_FILES if name in files]
    if len(found) == 1:
        return [passed(f"one package manager: {found[0]}")]
    if not found:
        return [failed("no package-manager file at the root: Heroku stops the build",
                       "add requirements.txt with exact pins (or Pipfile.lock, poetry.lock or uv.lock)")]
    return [failed(f"more than one package manager: {', '.join(found)}: Heroku stops the build",
                   "keep one of them and delete the others")]


def check_other_languages(files):
    """Heroku detects a Python app, and no language it tries before Python."""
    found = [f"{name} ({language})" for name, language in OTHER_LANGUAGE_FILES.items() if name in files]
    if found:
        return [failed(f"Heroku will build this as another language: {', '.join(found)} at the root",
                       "move that file out of the root, or run `heroku buildpacks:set heroku/python`")]
    if not any(name in files or any(path.startswith(name + "/") for path in files) for name in PYTHON_PROJECT_FILES):
        return [failed("Heroku cannot tell this is a Python app: none of the files it looks for is at the root",
                       "add requirements.txt with exact pins")]
    return [passed("Heroku will detect a Python app")]


def local_path(text):
    """Return the path a requirement line installs from (-e ., a/path, name @ file:...), or None."""
    target = re.sub(r"^(-e|--editable)(\s+|=)", "", text).strip()
    if " @ " in target:
        target = target.split(" @ ", 1)[1].strip()
    if target.startswith("file:"):
        return re.sub(r"^file:(//)?", "", target) or "/"
    if "://" in target or target.startswith(("git+", "hg+", "svn+", "bzr+")):
        return None
    if target.startswith((".", "/", "~")) or "/" in target:
        return target
    return None


def inside_repository(root, path):
    """True when path (relative to root, or absolute) is a folder or file inside the repository."""
    resolved = (root / path).resolve() if not path.startswith(("/", "~")) else pathlib.Path(path).expanduser()
    return resolved.exists() and resolved.is_relative_to(root)


def check_requirements(root):
    """requirements.txt: installable on Linux, every line pinned with ==, gunicorn present."""
    if not (root / "requirements.txt").is_file():
        others = [name for name in PACKAGE_MANAGER_FILES if (root / name).is_file()]
        if not others:
            return []
        return [not_measured(f"requirements in {others[0]} not checked",
                             "this preflight reads requirements.txt only; the app is started below with the "
                             "packages of the Python running the preflight")]
    uninstallable, unpinned, names = [], [], set()
    for file_name, number, text in requirement_lines(root / "requirements.txt"):
        where = f"{file_name}:{number} {text!r}"
        name = requirement_name(text)
        names.add(name)
        path = local_path(text)
        if path is not None and inside_repository(root, path):
            continue  # a folder of the repository itself (-e . and the like): pip installs it on Heroku too
        if path is not None:
            uninstallable.append(f"{where} is a path on your machine (from a conda or pip freeze)")
        elif re.match(r"^[A-Za-z0-9._-]+=[^=]", text):
            uninstallable.append(f"{where} is conda's format, not pip's")
        elif name in UNINSTALLABLE and ";" not in text:  # a marker (; sys_platform...) skips it on Linux
            uninstallable.append(f"{where}: {UNINSTALLABLE[name]}")
        elif not re.match(r"^[A-Za-z0-9._-]+(\[[^\]]*\])?\s*==\s*[^\s*]+$", text.split(";")[0].strip()):
            unpinned.append(where)
    checks = []
    if uninstallable:
        checks.append(failed("requirements.txt has lines Heroku cannot install: " + "; ".join(uninstallable),
                             "write them as `name==version` from PyPI (pip freeze inside the "
                             "project's virtualenv, not conda list), and delete OS-specific ones"))
    else:
        checks.append(passed("requirements.txt: every line installable on Linux"))
    if unpinned:
        checks.append(failed("requirements.txt has unpinned lines: " + "; ".join(unpinned),
                             "pin each one exactly (name==version): the model was trained with "
                             "those versions, and an unpinned line installs whatever is newest"))
    else:
        checks.append(passed("requirements.txt: every requirement pinned with =="))
    if "gunicorn" in names:
        checks.append(passed("gunicorn is in requirements.txt"))
    else:
        checks.append(failed("gunicorn is not in requirements.txt",
                             "add gunicorn==<version>: the Procfile's web process needs it"))
    return checks


def check_python_version(root):
    """No runtime.txt; .python-version holds one supported major version, like 3.11."""
    checks = []
    if (root / "runtime.txt").exists():
        checks.append(failed("runtime.txt is present (deprecated; it overrides .python-version)",
                             "delete runtime.txt and put the major version, e.g. 3.11, in .python-version"))
    path = root / ".python-version"
    if not path.is_file():
        return checks + [failed(".python-version is missing",
                                f"create it with one line, the major version you test on, e.g. {SUPPORTED_PYTHON[0]}")]
    versions = [line.strip() for line in path.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    if len(versions) != 1 or not re.fullmatch(r"3\.\d+", versions[0]):
        return checks + [failed(f".python-version should hold one major version like 3.11, not {versions!r}",
                                "write only major.minor (3.11): Heroku then installs the latest "
                                "patch release, with its security fixes")]
    if versions[0] in DEPRECATED_PYTHON:
        return checks + [passed(f".python-version: Python {versions[0]} builds, with a deprecation warning, "
                                f"until Heroku drops it on {DEPRECATED_PYTHON[versions[0]]}: move to "
                                f"{SUPPORTED_PYTHON[0]} or newer")]
    if versions[0] not in SUPPORTED_PYTHON:
        return checks + [failed(f".python-version asks for Python {versions[0]}, not one Heroku supports",
                                f"use one of {', '.join(SUPPORTED_PYTHON)} and test on it")]
    return checks + [passed(f".python-version: Python {versions[0]} (supported)")]


def check_no_environment_committed(files):
    """No virtual environment or Heroku build folder among the files git would push."""
    found = sorted({name.split("/")[0] + "/" for name in files
                    if name.split("/")[0] in ENVIRONMENT_FOLDERS or name.endswith("pyvenv.cfg")})
    if not found:
        return [passed("no virtual environment committed (.venv/, venv/, .heroku/)")]
    return [failed(f"a virtual environment would be pushed: {', '.join(found)}",
                   f"add {found[0]} to .gitignore, then `git rm -r --cached {found[0]}`: Heroku "
                   "builds its own environment from requirements.txt")]


def check_procfile(root, files):
    """A Procfile, spelled exactly so, with a web process that runs gunicorn."""
    if "Procfile" not in files:
        look_alikes = [name for name in files if "/" not in name and name.lower().startswith("procfile")]
        hint = f" (found {', '.join(look_alikes)}: the name must be exactly Procfile, no extension)" if look_alikes else ""
        return [failed("no Procfile at the root" + hint,
                       "create Procfile with: web: gunicorn --config gunicorn.conf.py <module>:app")], None
    processes, bad_lines = read_procfile(root)
    checks = []
    if bad_lines:
        checks.append(failed("Procfile lines that are not `name: command`: " + "; ".join(bad_lines),
                             "each line is a process name, a colon, then the command"))
    web = processes.get("web")
    if web is None:
        found = ", ".join(processes) or "none"
        return checks + [failed(f"Procfile has no web process (found: {found}); Heroku gives H14",
                                "name the process that serves HTTP `web:`")], None
    settings, argv = split_command(web)
    if not argv or pathlib.PurePath(argv[0]).name != "gunicorn":
        return checks + [failed(f"the web process does not run gunicorn: {web!r}",
                                "the development server is not for production: "
                                "web: gunicorn --config gunicorn.conf.py <module>:app")], None
    return checks + [passed(f"Procfile web process: {web}")], (settings, argv[1:])


def probe_web_command(root, settings, gunicorn_args, port):
    """Run tools/web_probe.py in root for the web command; return its JSON result."""
    env = dict(dyno_environment(), PORT=str(port), **settings)
    # The dyno's shell expands $PORT and friends in the Procfile command; do the same.
    arguments = [string.Template(argument).safe_substitute(env) for argument in gunicorn_args]
    result = subprocess.run([sys.executable, str(PROBE), *arguments], cwd=root, env=env,
                            capture_output=True, text=True, timeout=120)
    for line in result.stdout.splitlines():
        if line.startswith(PROBE_MARKER):
            return json.loads(line[len(PROBE_MARKER):])
    tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"the check could not run: {tail}"}


def check_web_imports(root, probe):
    """The Procfile's module:object imports with $PORT set (otherwise the dyno crashes: H10)."""
    if "error" in probe:
        error = probe["error"].replace(f"{root}{os.sep}", "")
        if "model check failed" in error:  # final_app.artifact.ModelError: it says what to do
            fix = "do what the message above says"
        else:
            fix = ("do what the error says; if it names a module or attribute, fix the Procfile's "
                   "module:object; run the Procfile's command locally to see the whole error")
        return [failed(f"the web process's app does not load: {error} (on Heroku: H10 app crashed)", fix)]
    return [passed(f"the app {probe['app_uri']} imports")]


def files_the_app_loads(root, probe):
    """Return the files the web app loads, relative to root: what the probe saw, and the model in MODEL_DIR."""
    names = set(probe.get("loaded_files", []))
    folder = model_dir_setting(root)
    if folder and not pathlib.Path(folder).is_absolute():
        names.update(f"{folder}/{name}" for name in model_files(root / folder) if (root / folder / name).is_file())
    return sorted(names)


def model_files(folder):
    """Return the names of the files final_app needs in a model folder: model.onnx too when the metadata says so."""
    try:
        engine = json.loads((folder / "model.json").read_text()).get("engine") or {}
    except (OSError, ValueError, AttributeError):
        engine = {}
    return MODEL_FILES + ((GRAPH_FILE,) if isinstance(engine, dict) and engine.get("name") == "onnx" else ())


def check_app_files_committed(root, files, loaded):
    """Every file the web app loads is committed as it is here: Heroku gets the commit, not this folder."""
    if not has_commit(root):
        return []  # nothing to compare with: check_has_commit has said so
    missing = [name for name in loaded if name not in files]
    changed = sorted(set(loaded) & changed_since_commit(root))
    checks = []
    if missing:
        ignored = sorted(ignored_by_git(root, missing))
        why = f"; .gitignore ignores {', '.join(ignored)}" if ignored else ""
        checks.append(not_committed(f"the app loads files that are not committed: {', '.join(missing)}{why} "
                                    "(git push sends only commits: the dyno will not have them)",
                                    commit_fix(root, missing, "Add the files the app loads")))
    if changed:
        checks.append(not_committed(f"the app loads files changed since your last commit: {', '.join(changed)} "
                                    "(git push sends the committed version)",
                                    commit_fix(root, changed, "Update the files the app loads")))
    return checks or [passed("every file the app loads is committed")]


def check_binds_port(probe, port):
    """Every address gunicorn binds is on $PORT and reachable from outside the dyno."""
    if "bind" not in probe:
        return []
    wrong = [address for address in probe["bind"] if not address.endswith(f":{port}")]
    loopback = [address for address in probe["bind"] if address.startswith(("127.", "localhost", "[::1]"))]
    if wrong:
        return [failed(f"gunicorn binds {', '.join(wrong)}, not $PORT (on Heroku: R10 boot timeout)",
                       "drop the fixed address (gunicorn then binds $PORT itself), or bind 0.0.0.0:$PORT")]
    if loopback:
        return [failed(f"gunicorn binds {', '.join(loopback)}: only this machine can reach it (R10)",
                       "bind every interface: [::]:$PORT or 0.0.0.0:$PORT")]
    return [passed(f"gunicorn binds $PORT: {', '.join(probe['bind'])}")]


def app_source_files(root, app_uri):
    """Return the Python files of the package (or module) the web app lives in."""
    top = app_uri.split(":")[0].split(".")[0]
    package = root / top
    if package.is_dir():
        return sorted(package.rglob("*.py"))
    return [root / f"{top}.py"] if (root / f"{top}.py").is_file() else []


def check_debug_off(root, probe, settings, gunicorn_args):
    """Debug and auto-reload are off for the web process, whatever the environment says."""
    problems = []
    for name in ("FLASK_DEBUG", "DEBUG"):
        if settings.get(name, "").lower() in ("1", "true", "yes", "on"):
            problems.append(f"the Procfile sets {name}={settings[name]}")
    if "--reload" in gunicorn_args or probe.get("reload"):
        problems.append("gunicorn reloads on code changes (a development setting)")
    if probe.get("debug"):
        problems.append("the app has debug on")
    for path in app_source_files(root, probe.get("app_uri", "")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"\bdebug\s*=\s*True\b", line) and not line.lstrip().startswith("#"):
                problems.append(f"{path.relative_to(root)}:{number} {line.strip()!r}")
    if not problems:
        return [passed("debug is off")]
    return [failed("debug is on: " + "; ".join(problems),
                   "never run with debug in production: under `flask run` or `app.run()` it serves "
                   "the debugger, which shows your source and can run any code; under gunicorn it "
                   "changes how errors are handled; remove these settings")]


def model_dir_setting(root):
    """Return MODEL_DIR as set here (as you will set it on Heroku), relative to root, or None.

    The dyno starts the web process in the repository's top folder, so a relative MODEL_DIR
    means the same folder there as here.
    """
    setting = os.environ.get("MODEL_DIR")
    if not setting:
        return None
    folder = pathlib.Path(setting)
    if folder.is_absolute():
        try:
            return folder.resolve().relative_to(root).as_posix()
        except ValueError:
            return setting
    return folder.as_posix().rstrip("/")


def check_model_dir(root, files):
    """When MODEL_DIR is set, the folder it names is pushed, and kept by .slugignore, with its files."""
    folder = model_dir_setting(root)
    if folder is None:
        return []
    if pathlib.Path(folder).is_absolute():
        return [failed(f"MODEL_DIR={folder} is outside the repository: the dyno will not have it",
                       "put the model folder inside the repository and set MODEL_DIR to its path "
                       "from the top folder (heroku config:set MODEL_DIR=that/path)")]
    needed = [f"{folder}/{name}" for name in model_files(root / folder)]
    missing = [name for name in needed if name not in files]
    if any(not (root / name).is_file() for name in missing):
        return [failed(f"MODEL_DIR={folder}: {', '.join(missing)} would not be pushed (on Heroku: H10)",
                       "save the model there with save_model, then commit its files")]
    if missing:
        return [not_committed(f"MODEL_DIR={folder}: {', '.join(missing)} not committed: git push would not send "
                              "them (on Heroku: H10)", commit_fix(root, missing, "Add the model"))]
    patterns = slugignore_patterns(root)
    removed = [name for name in needed if ignored_by_slug(name, patterns)]
    if removed:
        return [failed(f"MODEL_DIR={folder}: .slugignore removes {', '.join(removed)} before the build "
                       "(on Heroku: H10)",
                       "move the model folder out of what .slugignore lists, or change .slugignore")]
    return [passed(f"MODEL_DIR={folder}: {', '.join(name.rsplit('/', 1)[1] for name in needed)} are pushed and kept")]


def model_metadata_files(root, files, app_uri):
    """Return the metadata JSON files (with a "versions" object) beside the web app's models,
    and in the folder MODEL_DIR names."""
    top = app_uri.split(":")[0].split(".")[0] + "/"
    model_dir = model_dir_setting(root)
    found = []
    for name in files:
        path = root / name
        if path.suffix not in MODEL_SUFFIXES:
            continue
        if not name.startswith(top) and not (model_dir and name.startswith(model_dir + "/")):
            continue
        for candidate in sorted(path.parent.glob("*.json")):
            try:
                data = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and isinstance(data.get("versions"), dict) and candidate not in found:
                found.append(candidate)
    return found


def relative_names(root, paths):
    """Return the paths relative to root, separated by commas."""
    return ", ".join(str(path.relative_to(root)) for path in paths)


def version_mismatches(versions, pins, python_major):
    """Return how the versions a model was saved with differ from the pins and .python-version."""
    mismatches = []
    for package, version in versions.items():
        if normalized(package) == "python":
            if python_major and not str(version).startswith(python_major + "."):
                mismatches.append(f"python {version} vs .python-version {python_major}")
        elif pins.get(normalized(package)) != str(version):
            pinned = pins.get(normalized(package), "not pinned")
            mismatches.append(f"{package}: model {version}, requirements.txt {pinned}")
    return mismatches


def check_model_versions(root, files, app_uri):
    """The library versions recorded with the model equal the versions requirements.txt pins."""
    metadata_files = model_metadata_files(root, files, app_uri) if app_uri else []
    if not metadata_files:
        return [passed("no model metadata with library versions found beside the app (nothing to compare)")]
    if not (root / "requirements.txt").is_file():
        names = relative_names(root, metadata_files)
        return [not_measured(f"model metadata versions ({names}) not compared with the pins",
                             "this preflight reads pins from requirements.txt only")]
    pins = pinned_versions(root)
    python_file = root / ".python-version"
    python_major = python_file.read_text().strip() if python_file.is_file() else None
    mismatches, mismatched_files = [], []
    for path in metadata_files:
        found = version_mismatches(json.loads(path.read_text())["versions"], pins, python_major)
        if found:
            mismatched_files.append(path)
            mismatches += [mismatch for mismatch in found if mismatch not in mismatches]
    if not mismatches:
        return [passed(f"model metadata versions equal the pins ({relative_names(root, metadata_files)})")]
    return [failed("the model was saved with other versions than requirements.txt installs "
                   f"({relative_names(root, mismatched_files)}): "
                   + "; ".join(mismatches) + " (on Heroku: the app refuses to start, H10)",
                   "pin the versions the model was trained with, or retrain with the pinned ones")]


def slugignore_patterns(root):
    """Return the patterns in .slugignore (files Heroku removes before building)."""
    path = root / ".slugignore"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def ignored_by_slug(name, patterns):
    """Tell whether a pushed file is removed by one of the .slugignore patterns."""
    parts = name.split("/")
    for pattern in patterns:
        anchored = pattern.startswith("/")
        pattern = pattern.strip("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        candidates = prefixes if anchored else prefixes + parts
        if any(fnmatch.fnmatch(candidate, pattern) for candidate in candidates):
            return True
    return False


@functools.lru_cache(maxsize=None)  # reading thousands of file sizes takes a while; lessons and tests check often
def installed_size_mb(package):
    """Return the size on disk of an installed distribution, in MB (0 if not installed here)."""
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return 0.0
    total = 0
    for file in distribution.files or []:
        path = pathlib.Path(distribution.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total / 1e6


def check_slug_size(root, files):
    """Estimate the slug: pushed files minus .slugignore, the pinned packages, and Python."""
    patterns = slugignore_patterns(root)
    source_mb = sum((root / name).stat().st_size for name in files
                    if (root / name).is_file() and not ignored_by_slug(name, patterns)) / 1e6
    packages_mb = sum(installed_size_mb(name) for name in pinned_versions(root))
    total = source_mb + packages_mb + PYTHON_RUNTIME_MB
    # Heroku's limit applies to the compressed slug ("The maximum allowed slug size (after compression)
    # is 500 MB", Dev Center: Slug Compiler). Packages are counted at PACKAGE_COMPRESSION of their size,
    # your own files (models, data) at their full size: they may not compress at all.
    compressed = source_mb + (packages_mb + PYTHON_RUNTIME_MB) * PACKAGE_COMPRESSION
    title = (f"slug estimate {compressed:.0f} MB compressed ({total:.0f} MB unpacked), limit {SLUG_LIMIT_MB} MB "
             f"compressed (your files {source_mb:.0f}, packages {packages_mb:.0f}, Python about {PYTHON_RUNTIME_MB})")
    if compressed < SLUG_LIMIT_MB:
        return [passed(title)]
    return [failed(title, "keep data, notebooks and images out with .slugignore, and move "
                          "development-only packages to requirements-dev.txt")]


# ---- booting the web process ----------------------------------------------------------------

def free_port():
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answering(url, process, limit):
    """Poll url until any HTTP answer; return the seconds it took, or None if it never did."""
    start = time.monotonic()
    while time.monotonic() - start < limit and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - start
        except urllib.error.HTTPError:
            return time.monotonic() - start  # an error page is still an answer
        except OSError:
            time.sleep(0.2)
    return None


def process_tree(process):
    """Return the psutil processes of the server: gunicorn's master (or a shell) and all below it."""
    try:
        root = psutil.Process(process.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:  # it has exited
        return []


class MemoryUnknown(Exception):
    """The server's memory cannot be measured on this machine; the message says why."""


def process_pss(member):
    """Return one process's PSS in bytes, or raise MemoryUnknown saying why it cannot be read."""
    try:
        info = member.memory_full_info()
    except psutil.AccessDenied:
        raise MemoryUnknown(f"not allowed to read the memory of process {member.pid}") from None
    if not hasattr(info, "pss"):
        raise MemoryUnknown("psutil measures PSS on Linux only (Heroku's dynos run Linux), not on this "
                            "system; its USS leaves out shared memory and would look too small")
    return info.pss


def memory_mb(process):
    """Return the memory the server's processes use together (PSS, shared pages counted once), in MB.

    Raises MemoryUnknown where that cannot be measured: PSS is Linux only, and a process may be
    unreadable. A number that leaves part of the memory out would pass a check it should fail.
    """
    members = process_tree(process)
    if not members:
        raise MemoryUnknown("the web process had exited")
    total = 0
    for member in members:
        try:
            total += process_pss(member)
        except psutil.NoSuchProcess:  # exited between listing and reading: it holds no memory now
            continue
    return total / 2**20


def settled_memory_mb(process, limit=15.0):
    """Return memory_mb once it stops growing: workers may still be loading the app and model."""
    deadline = time.monotonic() + limit
    reading = memory_mb(process)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        previous, reading = reading, memory_mb(process)
        if reading <= previous * 1.01:
            break
    return reading


def gunicorn_process_count(process):
    """Return how many of the server's processes are gunicorn's (the master and its workers)."""
    count = 0
    for member in process_tree(process):
        try:
            count += "gunicorn" in " ".join(member.cmdline())
        except psutil.Error:  # a worker that exited between listing and reading
            continue
    return count


def wait_for_workers(process, count, limit=15.0):
    """Wait until the server runs at least count worker processes (or time runs out)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and process.poll() is None:
        if gunicorn_process_count(process) > count:
            return
        time.sleep(0.2)


def seconds_to_stop(process, limit):
    """Send SIGTERM to every process of the server (as Heroku does); return seconds until it exits."""
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=limit)
        return time.monotonic() - start
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def last_line(path):
    """Return the last non-empty line of a text file, or a note that it is empty."""
    lines = [line.strip() for line in pathlib.Path(path).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def memory_check(process, workers):
    """Check that the web process and its workers fit in a dyno's memory; "not measured" where unknown."""
    title = f"memory with WEB_CONCURRENCY={workers}"
    try:
        used = settled_memory_mb(process)
    except MemoryUnknown as reason:
        return not_measured(f"{title}: unknown", str(reason))
    title = f"{title}: {used:.0f} MB of {DYNO_MEMORY_MB} MB"
    if used < DYNO_MEMORY_MB:
        return passed(title)
    return failed(title + " (on Heroku: R14 memory quota exceeded)",
                  "preload the app (preload_app = True) so workers share the model, or lower WEB_CONCURRENCY")


def boot_checks(root, web_command, log_path, boot_limit_s=BOOT_LIMIT_S, shutdown_limit_s=SHUTDOWN_LIMIT_S,
                environ=None, from_commit=False):
    """Start the web command in root with $PORT set; check boot time (within boot_limit_s), memory and SIGTERM.

    environ defaults to this process's environment; from_commit says root holds the last commit.
    """
    port = free_port()
    # What a classic web dyno sets (tools/dyno.py): WEB_CONCURRENCY, the access log and the rest.
    env = dict(dyno_environment(environ), PORT=str(port), PYTHONUNBUFFERED="1")
    # Commands such as `gunicorn` resolve in this Python's environment, as on the dyno.
    env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    with open(log_path, "w") as log:
        process = subprocess.Popen(["bash", "-c", web_command], cwd=root, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        seconds = wait_until_answering(f"http://127.0.0.1:{port}/", process, boot_limit_s)
        if seconds is None:
            if process.poll() is not None:
                said = last_line(log_path).replace(f"{root}{os.sep}", "")
                state = f"crashed at boot (on Heroku: H10); its last line: {said}"
            else:
                state = f"did not answer on $PORT within {boot_limit_s} s (on Heroku: R10)"
            if from_commit:
                return [failed(f"the web process, started from your last commit (what git push sends), {state}",
                               "commit every file the app needs, then run the Procfile command locally "
                               "(make rehearse) and read its first error")]
            return [failed(f"the web process {state}",
                           "run the Procfile command locally (make rehearse) and read its first error")]
        boots = "boots from your last commit" if from_commit else "boots"
        checks = [passed(f"{boots} and answers on $PORT in {seconds:.1f} s (limit {boot_limit_s} s)")]
        wait_for_workers(process, int(env["WEB_CONCURRENCY"]))
        checks.append(memory_check(process, int(env["WEB_CONCURRENCY"])))
        stop_seconds = seconds_to_stop(process, shutdown_limit_s)
        if stop_seconds is None:
            checks.append(failed(f"still running {shutdown_limit_s} s after SIGTERM (Heroku then kills it)",
                                 f"set graceful_timeout below {shutdown_limit_s} in gunicorn.conf.py"))
        else:
            checks.append(passed(f"stops {stop_seconds:.1f} s after SIGTERM (limit {shutdown_limit_s} s)"))
        return checks
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def committed_tree(root):
    """Yield a temporary folder holding HEAD's files (what git push sends); removed afterwards.

    Without a commit (outside a git repository), yield root itself: the folder is all there is.
    """
    if not has_commit(root):
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="preflight-commit-") as folder:
        archive = subprocess.run(["git", "-C", str(root), "archive", "HEAD"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield pathlib.Path(folder)


def environment_for(root, tree):
    """Return this process's environment with a MODEL_DIR inside root pointing at the same folder in tree."""
    environ = dict(os.environ)
    folder = model_dir_setting(root)
    if folder and not pathlib.Path(folder).is_absolute():
        environ["MODEL_DIR"] = str(tree / folder)
    return environ


def boot_committed_tree(root):
    """Run the boot, memory and SIGTERM checks on a copy of the last commit with its Procfile, as a dyno does."""
    with committed_tree(root) as tree, tempfile.TemporaryDirectory() as logs:
        web_command = read_procfile(tree)[0].get("web")
        if web_command is None:
            return [failed("the Procfile of your last commit has no web process (on Heroku: H14)",
                           'commit your Procfile: git add Procfile && git commit -m "Procfile"')]
        return boot_checks(tree, web_command, pathlib.Path(logs) / "web.log",
                           environ=environment_for(root, tree), from_commit=tree != root)


# ---- putting it together --------------------------------------------------------------------

def run_checks(root, static=False, report=print):
    """Run every check on the repository at root, report each line, and return the checks."""
    root = pathlib.Path(root).resolve()
    files = files_heroku_receives(root)
    results = []

    def record(checks):
        for check in checks:
            results.append(check)
            report(check.line())

    record(check_has_commit(root))
    record(check_package_manager(files))
    record(check_other_languages(files))
    record(check_requirements(root))
    record(check_python_version(root))
    record(check_no_environment_committed(files))
    procfile_checks, web = check_procfile(root, files)
    record(procfile_checks)
    app_uri = None
    if web is not None:
        settings, gunicorn_args = web
        port = free_port()
        probe = probe_web_command(root, settings, gunicorn_args, port)
        app_uri = probe.get("app_uri")
        record(check_web_imports(root, probe))
        record(check_app_files_committed(root, files, files_the_app_loads(root, probe)))
        record(check_binds_port(probe, port))
        record(check_debug_off(root, probe, settings, gunicorn_args))
    record(check_model_dir(root, files))
    record(check_model_versions(root, files, app_uri))
    record(check_slug_size(root, files))
    if static:
        report("- boot, memory and SIGTERM checks skipped (--static)")
    elif web is not None and all(check.ok or not check.blocks_boot for check in results):
        record(boot_committed_tree(root))
    else:
        report("- boot, memory and SIGTERM checks skipped: fix the failures above first")
    return results


def main(argv=None):
    """Parse the arguments, run the checks, and return the exit code."""
    parser = argparse.ArgumentParser(description="Check a repository against what Heroku will do with it.")
    parser.add_argument("root", nargs="?", default=".", help="the repository's top folder (default: .)")
    parser.add_argument("--static", action="store_true", help="only read files; do not start the app")
    arguments = parser.parse_args(argv)
    print(f"Preflight for Heroku: {pathlib.Path(arguments.root).resolve()}", flush=True)
    print(f"(the app is started with this Python and its installed packages: {sys.executable})", flush=True)
    results = run_checks(arguments.root, static=arguments.static,
                         report=lambda line: print(line, flush=True))
    failures = sum(not check.ok for check in results)
    unknown = sum(not check.measured for check in results)
    summary = f"{len(results)} checks, {failures} failed"
    if unknown:
        summary += f", {unknown} not measured on this machine (?)"
    print(summary + ("" if failures or unknown else ": ready to deploy"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
