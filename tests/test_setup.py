"""The set-up files agree with each other and with the environment the tests run in."""
import importlib.metadata
import re
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
