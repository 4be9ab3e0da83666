"""The preflight passes on this repository and, in a temporary copy, fails naming each planted mistake.

Every repository here is a temporary git repository with a commit: the preflight checks the last
commit (what git push sends), so a mistake is planted and then committed, unless the test is about
what the commit lacks.
"""
import collections
import copy as copying
import hashlib
import inspect
import json
import os
import shutil
import subprocess

import psutil
import pytest

from conftest import ROOT
from tools import preflight

WEB = "web: gunicorn --config gunicorn.conf.py final_app.wsgi:app"


# Files the web probe (tools/web_probe.py) never reads: it runs this Python, not what these install,
# and the app reads no notes or notebooks.
NOT_READ_BY_THE_PROBE = {"requirements.txt", "requirements-dev.txt", "runtime.txt", ".python-version", "Pipfile",
                         "Pipfile.lock", "uv.lock", "poetry.lock", "package.json", "composer.json", ".gitignore",
                         ".slugignore", "app.json", "README.md", "notes.txt", "notebooks/explore.ipynb"}
PROBED = {}  # what the probe answered, by everything it could have read


def probe_inputs(root, settings, gunicorn_args):
    """Return a digest of all the probe could read: the environment, the command, every other file."""
    environ = sorted(item for item in os.environ.items() if item[0] != "PYTEST_CURRENT_TEST")
    digest = hashlib.sha256(json.dumps([environ, sorted(settings.items()), gunicorn_args]).encode())
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_file() and not name.startswith(".git/") and name not in NOT_READ_BY_THE_PROBE:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def probe_once_per_input(real_probe):
    """Wrap preflight.probe_web_command: probe again only when something it reads has changed.

    The probe imports the app and its model in a new Python (about 2 s). Most planted mistakes are
    in files it never reads, so its answer for the unchanged copy holds for them; only the port
    it was given differs, and that is written back in. A failed probe is never reused: its
    message names the folder it ran in.
    """
    def probe(root, settings, gunicorn_args, port):
        key = probe_inputs(root, settings, gunicorn_args)
        if key not in PROBED:
            result = real_probe(root, settings, gunicorn_args, port)
            if "error" in result:
                return result
            PROBED[key] = (port, result)
        probed_port, result = PROBED[key]
        result = copying.deepcopy(result)
        if "bind" in result:
            result["bind"] = [address.removesuffix(f":{probed_port}") + f":{port}"
                              if address.endswith(f":{probed_port}") else address for address in result["bind"]]
        return result

    return probe


def git(root, *arguments):
    """Run git in root with a test identity; return its output."""
    identity = ["-c", "user.name=Preflight test", "-c", "user.email=preflight@example.com",
                "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", "-C", str(root), *identity, *arguments], check=True, capture_output=True,
                          text=True).stdout


def commit_all(root, message="planted"):
    """Commit everything in root, as a learner does before git push."""
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)


def files_to_commit(root):
    """The files `git add -A` would commit in root: tracked or new and not ignored, and still there."""
    listing = git(root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return sorted(name for name in set(listing.split("\0")) if name and (root / name).is_file())


def copy_files(names, destination):
    """Copy these files of this repository into destination, keeping their folders."""
    for name in names:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)


def slug_copy(destination):
    """Copy into a new git repository, uncommitted, what this repository would put in a slug (no lessons, no tests)."""
    patterns = preflight.slugignore_patterns(ROOT)
    copy_files([name for name in files_to_commit(ROOT)
                if not preflight.ignored_by_slug(name, patterns) and "__pycache__" not in name], destination)
    git(destination, "init", "-q")
    return destination


@pytest.fixture
def cached_probe(monkeypatch):
    """Reuse the probe's answer while nothing it reads has changed (see probe_once_per_input)."""
    monkeypatch.setattr(preflight, "probe_web_command", probe_once_per_input(preflight.probe_web_command))


@pytest.fixture
def repo_copy(tmp_path, cached_probe):
    """A git repository whose one commit holds what this repository would put in a slug."""
    copy = slug_copy(tmp_path / "repo")
    commit_all(copy, "the app")
    return copy


def static_checks(root, commit=True):
    """Run the static checks on root, first committing everything (unless told not to); return the failed ones."""
    if commit:
        commit_all(root)
    lines = []
    results = preflight.run_checks(root, static=True, report=lines.append)
    assert len(lines) == len(results) + 1  # every check reported, plus the "skipped" line
    return [check for check in results if not check.ok]


def replace_in(path, old, new):
    """Replace old by new in the file at path (old must be there)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_preflight_passes_on_this_repository_including_boot_memory_and_sigterm(tmp_path):
    # This repository as it is now, committed: in CI a clean clone, on a developer's machine it may hold changes.
    copy = tmp_path / "this"
    copy_files(files_to_commit(ROOT), copy)
    git(copy, "init", "-q")
    commit_all(copy, "this repository")
    lines = []
    results = preflight.run_checks(copy, report=lines.append)
    failures = [check.line() for check in results if not check.ok]
    assert failures == []
    titles = " | ".join(check.title for check in results)
    for measured in ("every file the app loads is committed", "boots from your last commit and answers on $PORT in",
                     "memory with WEB_CONCURRENCY=2:", "after SIGTERM"):
        assert measured in titles
    assert "s (limit 60 s) | memory" in titles and titles.endswith("s after SIGTERM (limit 30 s)")


def test_the_unchanged_copy_passes_and_main_exits_0(repo_copy, capsys):
    assert preflight.main([str(repo_copy), "--static"]) == 0
    output = capsys.readouterr().out
    assert "✗" not in output
    assert "0 failed: ready to deploy" in output


def test_main_exits_1_and_prints_the_fix_when_a_check_fails(repo_copy, capsys):
    (repo_copy / "runtime.txt").write_text("python-3.11.7\n")
    commit_all(repo_copy)
    assert preflight.main([str(repo_copy), "--static"]) == 1
    output = capsys.readouterr().out
    assert "✗ runtime.txt is present" in output
    assert "    fix: delete runtime.txt" in output


def plant_conda_freeze_line(root):
    with (root / "requirements.txt").open("a") as file:
        file.write("pandas @ file:///home/conda/feedstock_root/build_artifacts/pandas_1700000000/work\n")


def plant_old_sklearn_name(root):
    with (root / "requirements.txt").open("a") as file:
        file.write("sklearn==0.0.post12\n")


def plant_windows_package(root):
    with (root / "requirements.txt").open("a") as file:
        file.write("pywin32==306\n")


def plant_unpinned_line(root):
    replace_in(root / "requirements.txt", "flask==3.1.3", "flask>=3")


def plant_no_gunicorn(root):
    replace_in(root / "requirements.txt", "gunicorn==", "# gunicorn==")


def plant_runtime_txt(root):
    (root / "runtime.txt").write_text("python-3.11.7\n")


def plant_full_python_version(root):
    (root / ".python-version").write_text("3.11.7\n")


def plant_unsupported_python(root):
    (root / ".python-version").write_text("3.9\n")


def plant_pipfile_without_lock(root):
    (root / "Pipfile").write_text('[packages]\nflask = "*"\n')


def plant_second_package_manager(root):
    (root / "uv.lock").write_text("version = 1\n")


def plant_local_path_outside_the_repository(root):
    with (root / "requirements.txt").open("a") as file:
        file.write("-e /Users/me/projects/helpers\n")


def plant_no_python_file(root):
    for name in ["requirements.txt", ".python-version", "runtime.txt"]:
        (root / name).unlink(missing_ok=True)


def plant_node_package_file(root):
    (root / "package.json").write_text('{"private": true}\n')


def plant_committed_venv(root):
    replace_in(root / ".gitignore", ".venv/\n", "")
    (root / ".venv").mkdir()
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")


def plant_procfile_misnamed(root):
    (root / "Procfile").rename(root / "Procfile.txt")


def plant_procfile_module_typo(root):
    (root / "Procfile").write_text(WEB.replace("final_app.wsgi:app", "final_app.ap:app") + "\n")


def plant_procfile_missing_colon(root):
    (root / "Procfile").write_text(WEB.replace("web:", "web") + "\n")


def plant_no_web_process(root):
    (root / "Procfile").write_text(WEB.replace("web:", "worker:") + "\n")


def plant_development_server(root):
    (root / "Procfile").write_text("web: flask --app final_app.app run\n")


def plant_fixed_port(root):
    (root / "Procfile").write_text(WEB.replace("--config", "--bind 0.0.0.0:5000 --config") + "\n")


def plant_loopback_bind(root):
    (root / "Procfile").write_text(WEB.replace("--config", "--bind 127.0.0.1:$PORT --config") + "\n")


def plant_flask_debug(root):
    (root / "Procfile").write_text(WEB.replace("web: ", "web: FLASK_DEBUG=1 ") + "\n")


def plant_reload(root):
    (root / "Procfile").write_text(WEB.replace("--config", "--reload --config") + "\n")


def plant_debug_in_code(root):
    with (root / "final_app" / "app.py").open("a") as file:
        file.write("\nif __name__ == '__main__':\n    app.run(debug=True)\n")


def plant_metadata_version_mismatch(root):
    path = root / "final_app" / "model" / "model.json"
    data = json.loads(path.read_text())
    data["versions"]["scikit-learn"] = "1.8.0"
    path.write_text(json.dumps(data, indent=2))


PLANTED = [
    # (what a learner did, how to plant it, words the failed check must contain)
    ("conda freeze line", plant_conda_freeze_line, ["cannot install", "pandas @ file:", "path on your machine"]),
    ("old sklearn name", plant_old_sklearn_name, ["cannot install", "sklearn==0.0.post12", "scikit-learn"]),
    ("Windows-only package", plant_windows_package, ["cannot install", "pywin32", "Windows only"]),
    ("unpinned line", plant_unpinned_line, ["unpinned", "flask>=3"]),
    ("no gunicorn", plant_no_gunicorn, ["gunicorn is not in requirements.txt"]),
    ("runtime.txt", plant_runtime_txt, ["runtime.txt is present", "deprecated"]),
    ("full Python version", plant_full_python_version, [".python-version", "3.11.7"]),
    ("unsupported Python", plant_unsupported_python, ["Python 3.9", "not one Heroku supports"]),
    ("Pipfile without its lock", plant_pipfile_without_lock, ["Pipfile without its Pipfile.lock", "pipenv lock"]),
    ("second package manager", plant_second_package_manager,
     ["more than one package manager", "requirements.txt, uv.lock"]),
    ("-e a path on your machine", plant_local_path_outside_the_repository,
     ["cannot install", "-e /Users/me/projects/helpers", "path on your machine"]),
    ("nothing Heroku recognises as Python", plant_no_python_file,
     ["cannot tell this is a Python app"]),
    ("package.json at the root", plant_node_package_file, ["another language", "package.json", "Node.js"]),
    ("committed .venv", plant_committed_venv, ["virtual environment", ".venv/"]),
    ("Procfile.txt", plant_procfile_misnamed, ["no Procfile", "Procfile.txt"]),
    ("Procfile module typo", plant_procfile_module_typo, ["does not load", "final_app.ap", "H10"]),
    ("Procfile missing colon", plant_procfile_missing_colon, ["not `name: command`", "line 1"]),
    ("no web process", plant_no_web_process, ["no web process", "worker", "H14"]),
    ("development server", plant_development_server, ["does not run gunicorn", "flask --app"]),
    ("fixed port", plant_fixed_port, ["0.0.0.0:5000", "not $PORT", "R10"]),
    ("loopback only", plant_loopback_bind, ["127.0.0.1", "only this machine"]),
    ("FLASK_DEBUG in the Procfile", plant_flask_debug, ["debug is on", "FLASK_DEBUG=1"]),
    ("reload in production", plant_reload, ["debug is on", "reloads"]),
    ("debug=True in the code", plant_debug_in_code, ["debug is on", "final_app/app.py", "debug=True"]),
    ("model metadata version", plant_metadata_version_mismatch,
     ["other versions", "scikit-learn: model 1.8.0, requirements.txt 1.9.1"]),
]


@pytest.mark.parametrize("plant, words", [(p, w) for _, p, w in PLANTED], ids=[name for name, _, _ in PLANTED])
def test_preflight_fails_naming_each_planted_mistake(repo_copy, plant, words):
    plant(repo_copy)
    failures = static_checks(repo_copy)
    assert failures, "the planted mistake was not caught"
    matching = [check for check in failures if all(word in check.line() for word in words)]
    assert matching, f"no failed check names {words}: {[check.line() for check in failures]}"
    assert all(check.fix for check in failures)


@pytest.mark.parametrize("lines", [
    ['pywin32==306; sys_platform == "win32"'],  # the marker skips it on Linux
    ["flask==3.1.3 \\", "    --hash=sha256:0123456789abcdef"],  # pip's hash-checking format
    ["--index-url https://pypi.org/simple", "gunicorn==27.0.1  # the server"],
    ["scikit-learn[benchmark]==1.9.1"],
])
def test_requirement_lines_heroku_installs_are_accepted(tmp_path, lines):
    (tmp_path / "requirements.txt").write_text("gunicorn==27.0.1\n" + "\n".join(lines) + "\n")
    assert [check.line() for check in preflight.check_requirements(tmp_path) if not check.ok] == []


def test_requirements_pin_for_scikit_learn_equals_the_model_metadata():
    pins = preflight.pinned_versions(ROOT)
    metadata = json.loads((ROOT / "final_app" / "model" / "model.json").read_text())
    for package in ("scikit-learn", "numpy", "scipy", "joblib"):
        assert pins[package] == metadata["versions"][package], package


def test_slugignore_keeps_lessons_and_tests_out_but_the_app_in():
    patterns = preflight.slugignore_patterns(ROOT)
    for name in ("lessons/04_model/app.py", "tests/test_preflight.py", "images/form.png",
                 "requirements-dev.txt"):
        assert preflight.ignored_by_slug(name, patterns), name
    for name in ("final_app/app.py", "final_app/model/model.joblib", "Procfile", "gunicorn.conf.py",
                 "requirements.txt", ".python-version", "bin/post_compile"):
        assert not preflight.ignored_by_slug(name, patterns), name


# --- MODEL_DIR: the model a learner serves instead of iris ---------------------------------------

PENGUINS = ROOT / "lessons" / "08_own_model" / "models" / "penguins"


def failed_lines(root):
    """The lines of the static checks that failed on root."""
    return [check.line() for check in static_checks(root)]


def test_model_dir_under_a_slugignored_folder_fails(repo_copy, monkeypatch):
    shutil.copytree(PENGUINS, repo_copy / "lessons" / "mine")
    shutil.copy2(ROOT / ".slugignore", repo_copy / ".slugignore")
    monkeypatch.setenv("MODEL_DIR", "lessons/mine")
    assert any(".slugignore removes lessons/mine/model.joblib" in line for line in failed_lines(repo_copy))


def test_model_dir_outside_the_repository_fails(repo_copy, monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "elsewhere"))
    assert any("is outside the repository" in line for line in failed_lines(repo_copy))


def test_model_dir_without_its_files_fails(repo_copy, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", "models/penguins")
    assert any("models/penguins/model.joblib, models/penguins/model.json would not be pushed" in line
               for line in failed_lines(repo_copy))


def test_model_dir_model_needs_its_pandas_pin(repo_copy, monkeypatch):
    shutil.copytree(PENGUINS, repo_copy / "models" / "penguins")
    monkeypatch.setenv("MODEL_DIR", "models/penguins")
    pandas = json.loads((PENGUINS / "model.json").read_text())["versions"]["pandas"]
    # This repository pins pandas (the batch command needs it): an app without that pin, here.
    requirements = repo_copy / "requirements.txt"
    requirements.write_text(requirements.read_text().replace(f"pandas=={pandas}\n", ""))
    # Only the metadata that needs pandas is named, not final_app/model/model.json beside it.
    assert [line.splitlines()[0] for line in failed_lines(repo_copy) if "other versions" in line] == [
        "✗ the model was saved with other versions than requirements.txt installs (models/penguins/model.json): "
        f"pandas: model {pandas}, requirements.txt not pinned (on Heroku: the app refuses to start, H10)"]
    with requirements.open("a") as file:
        file.write(f"pandas=={pandas}\n")
    assert failed_lines(repo_copy) == []


def test_an_app_the_model_check_refuses_is_told_to_do_what_the_message_says(tmp_path):
    message = (f"the app exited while loading (code 4): CRITICAL final_app: refusing to start: model check failed "
               f"for {tmp_path}/models/house/model.json: scikit-learn version expected 1.8.0, found 1.9.1; re-train")
    [check] = preflight.check_web_imports(tmp_path, {"error": message})
    assert check.title == ("the web process's app does not load: the app exited while loading (code 4): CRITICAL "
                           "final_app: refusing to start: model check failed for models/house/model.json: "
                           "scikit-learn version expected 1.8.0, found 1.9.1; re-train (on Heroku: H10 app crashed)")
    assert check.fix == "do what the message above says"


# --- what git push sends: the last commit, not the working tree -----------------------------------

def test_a_model_dir_inside_the_repository_names_the_same_folder_in_the_committed_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "repo" / "models" / "penguins"))
    environ = preflight.environment_for(tmp_path / "repo", tmp_path / "commit")
    assert environ["MODEL_DIR"] == str(tmp_path / "commit" / "models" / "penguins")


def pin_pandas_for_penguins(root):
    """Pin the pandas the penguin model was saved with, unless requirements.txt does, and commit that."""
    pandas = json.loads((PENGUINS / "model.json").read_text())["versions"]["pandas"]
    if f"pandas=={pandas}" not in (root / "requirements.txt").read_text().splitlines():
        append_line(root / "requirements.txt", f"pandas=={pandas}")
        commit_all(root, "pin pandas")


def test_an_uncommitted_model_folder_fails_naming_its_files_and_the_git_add_and_crashes_the_boot(
        repo_copy, monkeypatch):
    pin_pandas_for_penguins(repo_copy)
    shutil.copytree(PENGUINS, repo_copy / "models" / "penguins")  # there, but not committed
    monkeypatch.setenv("MODEL_DIR", "models/penguins")
    results = preflight.run_checks(repo_copy, report=lambda line: None)
    failures = [(check.title, check.fix) for check in results if not check.ok]
    files = "models/penguins/model.joblib, models/penguins/model.json, models/penguins/model.onnx"
    git_add = ("git add models/penguins/model.joblib models/penguins/model.json models/penguins/model.onnx "
               "&& git commit -m")
    assert failures[:2] == [
        (f"the app loads files that are not committed: {files} (git push sends only commits: the dyno will not "
         "have them)", f'commit them: {git_add} "Add the files the app loads"'),
        (f"MODEL_DIR=models/penguins: {files} not committed: git push would not send them (on Heroku: H10)",
         f'commit them: {git_add} "Add the model"'),
    ]
    # The boot runs the last commit, which has no model folder: the dyno's crash, here.
    [(boot, fix)] = failures[2:]
    assert boot.startswith("the web process, started from your last commit (what git push sends), crashed at "
                           "boot (on Heroku: H10); its last line: ")
    assert "model check failed for models/penguins/model.json" in boot
    assert fix == ("commit every file the app needs, then run the Procfile command locally (make rehearse) and "
                   "read its first error")


def test_a_model_changed_since_the_commit_fails_saying_commit_it(repo_copy, monkeypatch):
    pin_pandas_for_penguins(repo_copy)
    saved = repo_copy / "models" / "penguins"
    shutil.copytree(PENGUINS, saved)
    metadata = json.loads((saved / "model.json").read_text())
    (saved / "model.json").write_text(json.dumps(dict(metadata, title="the model as first committed"), indent=2))
    commit_all(repo_copy, "a first model")
    shutil.copy2(PENGUINS / "model.json", saved / "model.json")  # then saved again, not committed
    monkeypatch.setenv("MODEL_DIR", "models/penguins")
    assert [(check.title, check.fix) for check in static_checks(repo_copy, commit=False)] == [
        ("the app loads files changed since your last commit: models/penguins/model.json (git push sends the "
         "committed version)",
         'commit it: git add models/penguins/model.json && git commit -m "Update the files the app loads"')]


def test_a_model_gitignore_ignores_is_named_and_added_with_force(tmp_path):
    (tmp_path / ".gitignore").write_text("*.joblib\n")
    (tmp_path / "app.py").write_text("")
    git(tmp_path, "init", "-q")
    commit_all(tmp_path, "the app")
    (tmp_path / "models").mkdir()
    for name in ("model.joblib", "model.json"):
        (tmp_path / "models" / name).write_text("")
    loaded = ["app.py", "models/model.joblib", "models/model.json"]
    [check] = preflight.check_app_files_committed(tmp_path, preflight.files_heroku_receives(tmp_path), loaded)
    assert (check.title, check.fix) == (
        "the app loads files that are not committed: models/model.joblib, models/model.json; .gitignore ignores "
        "models/model.joblib (git push sends only commits: the dyno will not have them)",
        'commit them: git add -f models/model.joblib models/model.json && git commit -m "Add the files the app loads"')


def test_changed_notebooks_readme_and_new_notes_do_not_fail(repo_copy):
    (repo_copy / "notebooks").mkdir()
    (repo_copy / "notebooks" / "explore.ipynb").write_text('{"cells": []}\n')
    (repo_copy / "README.md").write_text("# My app\n")
    commit_all(repo_copy, "notes")
    (repo_copy / "notebooks" / "explore.ipynb").write_text('{"cells": [{"cell_type": "markdown"}]}\n')
    append_line(repo_copy / "README.md", "Deployed on Heroku.")
    (repo_copy / "notes.txt").write_text("try a bigger model\n")
    lines = []
    results = preflight.run_checks(repo_copy, static=True, report=lines.append)
    assert [check.line() for check in results if not check.ok] == []
    assert "✓ every file the app loads is committed" in lines


def test_a_repository_with_no_commit_fails_saying_to_commit(tmp_path, cached_probe):
    copy = slug_copy(tmp_path / "repo")
    assert [(check.title, check.fix) for check in static_checks(copy, commit=False)] == [
        ("this git repository has no commit yet: git push would send nothing",
         'commit your files: git add -A && git commit -m "First commit"')]


HELPER_APP = '''"""An app that imports a helper module beside it."""
from flask import Flask

from greeting import GREETING

app = Flask(__name__)


@app.get("/")
def index():
    """Greet."""
    return GREETING
'''


def test_an_uncommitted_helper_module_fails_naming_it_and_crashes_the_boot_from_the_commit(tmp_path, cached_probe):
    copy_files(["requirements.txt", ".python-version"], tmp_path)
    (tmp_path / "Procfile").write_text("web: gunicorn --preload app:app\n")
    (tmp_path / "app.py").write_text(HELPER_APP)
    git(tmp_path, "init", "-q")
    commit_all(tmp_path, "the app")
    (tmp_path / "greeting.py").write_text('GREETING = "hello"\n')  # the app imports it; it is not committed
    results = preflight.run_checks(tmp_path, report=lambda line: None)
    assert [(check.title, check.fix) for check in results if not check.ok] == [
        ("the app loads files that are not committed: greeting.py (git push sends only commits: the dyno will "
         "not have them)", 'commit it: git add greeting.py && git commit -m "Add the files the app loads"'),
        ("the web process, started from your last commit (what git push sends), crashed at boot (on Heroku: H10); "
         "its last line: ModuleNotFoundError: No module named 'greeting'",
         "commit every file the app needs, then run the Procfile command locally (make rehearse) and read its "
         "first error"),
    ]
    commit_all(tmp_path, "the helper")
    assert static_checks(tmp_path, commit=False) == []


# --- the boot checks: Heroku's time limits, lowered so that a planted slow app fails quickly -----

SMALL_APP = '''"""A small Flask app for the boot checks."""
import time

from flask import Flask

time.sleep({boot_sleep_s})  # a slow start, as loading a big model would be
app = Flask(__name__)


@app.get("/")
def index():
    """Say the app is up."""
    return "ok"
'''

SMALL_CONFIG = '''"""gunicorn settings for the small app: the dyno's port on the loopback only, and an exit hook."""
import os
import time

bind = "127.0.0.1:" + os.environ["PORT"]
workers = int(os.environ["WEB_CONCURRENCY"])


def on_exit(server):
    """Keep the master busy after SIGTERM, as a slow clean-up would."""
    time.sleep({stop_sleep_s})
'''


def plant_small_app(folder, boot_sleep_s=0, stop_sleep_s=0):
    """Write a small app with a slow start or stop into folder; return its Procfile web command."""
    (folder / "app.py").write_text(SMALL_APP.format(boot_sleep_s=boot_sleep_s))
    (folder / "gunicorn.conf.py").write_text(SMALL_CONFIG.format(stop_sleep_s=stop_sleep_s))
    return "gunicorn --config gunicorn.conf.py app:app"


def test_an_app_slower_to_boot_than_the_limit_fails_the_boot_check(tmp_path):
    web = plant_small_app(tmp_path, boot_sleep_s=60)
    checks = preflight.boot_checks(tmp_path, web, tmp_path / "web.log", boot_limit_s=2)
    assert [check.line().splitlines()[0] for check in checks] == [
        "✗ the web process did not answer on $PORT within 2 s (on Heroku: R10)"]
    assert "make rehearse" in checks[0].fix


def test_an_app_slower_to_stop_than_the_limit_fails_the_shutdown_check(tmp_path):
    web = plant_small_app(tmp_path, stop_sleep_s=60)
    checks = preflight.boot_checks(tmp_path, web, tmp_path / "web.log", shutdown_limit_s=2)
    assert [check.ok for check in checks] == [True, True, False]
    assert checks[0].title.endswith(f"(limit {preflight.BOOT_LIMIT_S} s)")
    assert checks[2].title == "still running 2 s after SIGTERM (Heroku then kills it)"
    assert checks[2].fix == "set graceful_timeout below 2 in gunicorn.conf.py"


def test_heroku_limits_are_the_defaults_of_the_boot_checks():
    defaults = inspect.signature(preflight.boot_checks).parameters
    assert (preflight.BOOT_LIMIT_S, preflight.SHUTDOWN_LIMIT_S) == (60, 30)
    assert defaults["boot_limit_s"].default == preflight.BOOT_LIMIT_S
    assert defaults["shutdown_limit_s"].default == preflight.SHUTDOWN_LIMIT_S


# --- memory where PSS cannot be read (macOS, Windows, a process we may not read) ----------------

class FakeProcess:
    """A psutil process whose memory_full_info gives the fields of another system, or raises."""

    def __init__(self, pid, fields=None, error=None):
        self.pid = pid
        self.fields = fields or {}
        self.error = error

    def memory_full_info(self):
        if self.error:
            raise self.error
        return collections.namedtuple("pfullmem", self.fields)(**self.fields)


MB = 2**20
MACOS_INFO = {"rss": 90 * MB, "vms": 400 * MB, "pfaults": 0, "pageins": 0, "uss": 30 * MB}  # no pss
LINUX_INFO = {"rss": 90 * MB, "vms": 400 * MB, "uss": 30 * MB, "pss": 60 * MB, "swap": 0}
UNREADABLE = [
    ("no PSS on this system", [FakeProcess(1, MACOS_INFO), FakeProcess(2, MACOS_INFO)], "Linux only"),
    ("a worker we may not read", [FakeProcess(1, LINUX_INFO), FakeProcess(2, error=psutil.AccessDenied(2))],
     "not allowed to read the memory of process 2"),
]


@pytest.mark.parametrize("tree, reason", [case[1:] for case in UNREADABLE], ids=[case[0] for case in UNREADABLE])
def test_memory_it_cannot_read_is_not_measured_with_the_reason_never_passed(monkeypatch, tree, reason):
    monkeypatch.setattr(preflight, "process_tree", lambda process: tree)
    with pytest.raises(preflight.MemoryUnknown, match=reason):
        preflight.memory_mb(process=None)
    check = preflight.memory_check(process=None, workers=2)
    assert check.measured is False
    assert check.line().startswith("? memory with WEB_CONCURRENCY=2: unknown\n    why: ")
    assert reason in check.line()


def test_memory_adds_up_pss_where_linux_reports_it(monkeypatch):
    gone = FakeProcess(3, error=psutil.NoSuchProcess(3))  # exited between listing and reading
    monkeypatch.setattr(preflight, "process_tree", lambda process: [FakeProcess(1, LINUX_INFO), gone,
                                                                     FakeProcess(2, LINUX_INFO)])
    assert preflight.memory_mb(process=None) == 120
    check = preflight.memory_check(process=None, workers=2)
    assert (check.ok, check.measured, check.title) == (True, True, "memory with WEB_CONCURRENCY=2: 120 MB of 512 MB")


def test_the_summary_says_what_was_not_measured(monkeypatch, capsys):
    results = [preflight.passed("one"), preflight.not_measured("memory: unknown", "PSS is Linux only")]
    monkeypatch.setattr(preflight, "run_checks", lambda root, static, report: results)
    assert preflight.main(["."]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 checks, 0 failed, 1 not measured on this machine (?)"


# --- what the Python buildpack accepts (bin/detect and lib/package_manager.sh), the preflight accepts too ---

def use_only(root, name, text):
    """Replace requirements.txt by another package manager's file."""
    (root / "requirements.txt").unlink()
    (root / name).write_text(text)


def append_line(path, line):
    """Add one line at the end of a text file."""
    path.write_text(path.read_text() + line + "\n")


ACCEPTED = [
    # (what the repository has, how to make it, the line the preflight prints for it)
    ("uv.lock", lambda root: use_only(root, "uv.lock", "version = 1\n"), "✓ one package manager: uv.lock"),
    ("poetry.lock", lambda root: use_only(root, "poetry.lock", "# poetry\n"), "✓ one package manager: poetry.lock"),
    ("Pipfile and Pipfile.lock", lambda root: (use_only(root, "Pipfile.lock", "{}\n"),
                                               (root / "Pipfile").write_text("[packages]\n")),
     "✓ one package manager: Pipfile.lock"),
    ("composer.json (PHP comes after Python)", lambda root: (root / "composer.json").write_text("{}\n"),
     "✓ Heroku will detect a Python app"),
    ("-e . (the repository itself)", lambda root: append_line(root / "requirements.txt", "-e ."),
     "✓ requirements.txt: every line installable on Linux"),
]


@pytest.mark.parametrize("change, line", [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_preflight_accepts_what_the_buildpack_accepts(repo_copy, change, line):
    change(repo_copy)
    commit_all(repo_copy)
    lines = []
    results = preflight.run_checks(repo_copy, static=True, report=lines.append)
    assert line in lines
    assert [check.title for check in results if not check.ok] == []


def test_with_another_package_manager_the_requirements_are_not_measured(repo_copy):
    use_only(repo_copy, "uv.lock", "version = 1\n")
    commit_all(repo_copy)
    lines = []
    preflight.run_checks(repo_copy, static=True, report=lines.append)
    assert "? requirements in uv.lock not checked" in "\n".join(lines)
    assert "packages of the Python running the preflight" in "\n".join(lines)


@pytest.mark.parametrize("version, ok, words", [
    ("3.11", True, ".python-version: Python 3.11 (supported)"),
    ("3.14", True, ".python-version: Python 3.14 (supported)"),
    # The Python buildpack still builds 3.10, warning that it drops it on 6 January 2027.
    ("3.10", True, ".python-version: Python 3.10 builds, with a deprecation warning, until Heroku drops it "
                   "on 6 January 2027: move to 3.11 or newer"),
    ("3.9", False, ".python-version asks for Python 3.9, not one Heroku supports"),
])
def test_python_versions_as_the_buildpack_treats_them(tmp_path, version, ok, words):
    (tmp_path / ".python-version").write_text(version + "\n")
    [check] = preflight.check_python_version(tmp_path)
    assert (check.ok, check.title) == (ok, words)
