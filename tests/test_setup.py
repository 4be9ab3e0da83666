"""The set-up files agree with each other and with the environment the tests run in."""
import importlib.metadata
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")


def requirement_lines(name):
    """Return the non-blank, non-comment lines of a requirements file."""
    lines = (ROOT / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def pins(name):
    """Return {package: version} for the name==version lines of a requirements file."""
    return {m[1].lower(): m[2] for m in map(PIN.match, requirement_lines(name)) if m}


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_requirement_is_an_exact_pin(name):
    loose = [line for line in requirement_lines(name) if not PIN.match(line) and line != "-r requirements.txt"]
    assert loose == [], f"{name}: pin these with ==: {loose}"


def test_dev_requirements_build_on_the_runtime_ones():
    assert requirement_lines("requirements-dev.txt")[0] == "-r requirements.txt"
    assert not set(pins("requirements.txt")) & set(pins("requirements-dev.txt")), "pin each package once"


@pytest.mark.parametrize("package", ["flask", "gunicorn", "scikit-learn", "joblib", "numpy", "scipy"])
def test_runtime_packages_are_pinned(package):
    assert package in pins("requirements.txt")


@pytest.mark.parametrize("package, version", sorted(pins("requirements.txt").items()))
def test_tests_run_on_the_pinned_runtime_versions(package, version):
    assert importlib.metadata.version(package) == version


def test_python_version_file_is_the_major_version_the_tests_run_on():
    declared = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", declared), "major version only, e.g. 3.11"
    assert declared == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_conda_environment_uses_the_same_python_and_pins():
    text = (ROOT / "environment.yml").read_text()
    declared = (ROOT / ".python-version").read_text().strip()
    assert re.search(r"^name: mlenv$", text, re.M)
    assert re.search(rf"^\s+- python={re.escape(declared)}$", text, re.M)
    assert re.search(r"^\s+- -r requirements-dev.txt$", text, re.M)


def test_readme_quickstart_has_exactly_two_commands():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make serve", "make test"]


def test_ci_runs_the_readme_test_command():
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert "make test" in lines


@pytest.mark.parametrize("target", ["serve", "test", "jupyter", "notebooks", "images", "preflight", "rehearse", "bench"])
def test_makefile_has_the_documented_targets(target):
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)


AXE_TARGET = "tests/browser/node_modules/axe-core/axe.min.js"


def make_axe_core_without_npm(tmp_path, ci):
    """Run the Makefile's axe-core rule in a copy, on a PATH with no npm; return (exit code, output)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "tests" / "browser").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "browser" / "package-lock.json", tmp_path / "tests" / "browser")
    env = {"PATH": str(tmp_path / "no-programs-here")}
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run([shutil.which("make"), AXE_TARGET], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("ci", ["true", "1"])
def test_make_stops_in_ci_when_npm_is_missing(tmp_path, ci):
    code, output = make_axe_core_without_npm(tmp_path, ci)
    assert code != 0, output
    assert f"npm not found and CI={ci}" in output


@pytest.mark.parametrize("ci", [None, "false"])
def test_make_goes_on_without_npm_outside_ci(tmp_path, ci):
    code, output = make_axe_core_without_npm(tmp_path, ci)
    assert code == 0, output
    assert "npm not found: the accessibility tests will be skipped" in output


def test_ci_script_runs_the_tests_as_ci_and_installs_chromium_where_the_tests_look():
    script = (ROOT / ".ci" / "run").read_text()
    assert "\nexport CI=true\n" in script
    assert "[ -x /usr/bin/chromium ] || command -v chromium" in script
    assert script.rstrip().endswith("make test")


def make_install_with_python_reporting(tmp_path, version):
    """Run `make install` in a copy, PYTHON a fake interpreter that reports version; return (code, output)."""
    for name in ["Makefile", "requirements.txt", "requirements-dev.txt"]:
        shutil.copy(ROOT / name, tmp_path / name)
    fake = tmp_path / "fake-python"
    # Prints the version for the Makefile's check; any other use (python -m venv) does nothing.
    fake.write_text(f'#!/bin/sh\ncase "$*" in *version_info*) echo {version};; esac\n')
    fake.chmod(0o755)
    result = subprocess.run([shutil.which("make"), "install", f"PYTHON={fake}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_make_stops_first_with_how_to_get_python_3_11(tmp_path, version):
    code, output = make_install_with_python_reporting(tmp_path, version)
    assert code != 0
    assert f"is {version}" in output
    for way in ["pyenv install 3.11", "conda create -n mlenv python=3.11", "uv python install 3.11",
                "https://www.python.org/downloads/", "make PYTHON=/path/to/python3.11 install"]:
        assert way in output, way
    assert "-m venv" not in output  # stopped before creating .venv
    assert not (tmp_path / ".venv").exists()


def test_make_goes_on_with_python_3_11(tmp_path):
    code, output = make_install_with_python_reporting(tmp_path, "3.11")
    assert "needs Python" not in output
    assert "-m venv .venv" in output  # went on to create .venv (which the fake interpreter does not do)
