"""The preflight passes on this repository and, in a temporary copy, fails naming each planted mistake."""
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

WEB = "web: gunicorn --config gunicorn.conf.py final_app.app:app"


# Files the web probe (tools/web_probe.py) never reads: it runs this Python, not what these install.
NOT_READ_BY_THE_PROBE = {"requirements.txt", "requirements-dev.txt", "runtime.txt", ".python-version", "Pipfile",
                         "Pipfile.lock", "uv.lock", "poetry.lock", "package.json", "composer.json", ".gitignore",
                         ".slugignore", "app.json", "README.md"}
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


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    """A git repository holding what this repository would put in a slug (no lessons, no tests)."""
    monkeypatch.setattr(preflight, "probe_web_command", probe_once_per_input(preflight.probe_web_command))
    copy = tmp_path / "repo"
    patterns = preflight.slugignore_patterns(ROOT)
    for name in preflight.files_heroku_receives(ROOT):
        source = ROOT / name
        if source.is_file() and not preflight.ignored_by_slug(name, patterns) and "__pycache__" not in name:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    return copy


def static_checks(root):
    """Run the static checks on root; return the failed ones."""
    lines = []
    results = preflight.run_checks(root, static=True, report=lines.append)
    assert len(lines) == len(results) + 1  # every check reported, plus the "skipped" line
    return [check for check in results if not check.ok]


def replace_in(path, old, new):
    """Replace old by new in the file at path (old must be there)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_preflight_passes_on_this_repository_including_boot_memory_and_sigterm():
    lines = []
    results = preflight.run_checks(ROOT, report=lines.append)
    failures = [check.line() for check in results if not check.ok]
    assert failures == []
    titles = " | ".join(check.title for check in results)
    for measured in ("boots and answers on $PORT in", "memory with WEB_CONCURRENCY=2:", "after SIGTERM"):
        assert measured in titles
    assert "s (limit 60 s) | memory" in titles and titles.endswith("s after SIGTERM (limit 30 s)")


def test_the_unchanged_copy_passes_and_main_exits_0(repo_copy, capsys):
    assert preflight.main([str(repo_copy), "--static"]) == 0
    output = capsys.readouterr().out
    assert "✗" not in output
    assert "0 failed: ready to deploy" in output


def test_main_exits_1_and_prints_the_fix_when_a_check_fails(repo_copy, capsys):
    (repo_copy / "runtime.txt").write_text("python-3.11.7\n")
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
    (root / "Procfile").write_text(WEB.replace("final_app.app:app", "final_app.ap:app") + "\n")


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
    assert any(f"pandas: model {pandas}, requirements.txt not pinned" in line for line in failed_lines(repo_copy))
    with (repo_copy / "requirements.txt").open("a") as file:
        file.write(f"pandas=={pandas}\n")
    assert failed_lines(repo_copy) == []

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
    lines = []
    results = preflight.run_checks(repo_copy, static=True, report=lines.append)
    assert line in lines
    assert [check.title for check in results if not check.ok] == []


def test_with_another_package_manager_the_requirements_are_not_measured(repo_copy):
    use_only(repo_copy, "uv.lock", "version = 1\n")
    lines = []
    preflight.run_checks(repo_copy, static=True, report=lines.append)
    assert "? requirements in uv.lock not checked" in "\n".join(lines)
    assert "packages of the Python running the preflight" in "\n".join(lines)
