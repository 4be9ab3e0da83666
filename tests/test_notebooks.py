"""Every lesson notebook is committed executed, follows the outline, and shows its real app.py.

nbval (run by the same `pytest` command) re-runs each notebook and compares the outputs;
the checks here catch what nbval does not, and prove that a stale notebook fails.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
OUTLINE = ["What you will learn", "Your turn", "Recap"]


def lesson_notebooks():
    """Every notebook in a lesson folder, checkpoints left out."""
    found = sorted(LESSONS.glob("*/*.ipynb"))
    return [path for path in found if ".ipynb_checkpoints" not in path.parts]


def read_notebook(path):
    """The notebook as a plain dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell):
    """A cell's source as one string (it is stored as a string or a list of lines)."""
    text = cell.get("source", "")
    return text if isinstance(text, str) else "".join(text)


def code_cells(notebook):
    """The code cells, in order."""
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def printed_text(cell):
    """Everything the cell printed to stdout, as one string."""
    streams = [output for output in cell.get("outputs", [])
               if output["output_type"] == "stream" and output["name"] == "stdout"]
    return "".join(source({"source": output["text"]}) for output in streams)


def headings(notebook):
    """The text of every Markdown heading line."""
    found = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            found += [line.lstrip("#").strip() for line in source(cell).splitlines()
                      if re.match(r"#{1,6} ", line)]
    return found


def cell_printing(path, notebook):
    """Index (among code cells) of the first cell whose output contains the file at path."""
    text = path.read_text(encoding="utf-8").strip()
    for index, cell in enumerate(code_cells(notebook)):
        if text in printed_text(cell):
            return index
    return None


NOTEBOOKS = pytest.mark.parametrize(
    "notebook_path", lesson_notebooks(), ids=lambda path: str(path.relative_to(LESSONS)),
)


def test_the_first_three_lessons_have_their_notebooks():
    names = {str(path.relative_to(LESSONS)) for path in lesson_notebooks()}
    for expected in ["01_hello/01_hello.ipynb", "02_routes/02_routes.ipynb", "03_debug/03_debug.ipynb"]:
        assert expected in names


@pytest.mark.parametrize(
    "folder", sorted(path for path in LESSONS.glob("[0-9][0-9]_*") if path.is_dir()),
    ids=lambda path: path.name,
)
def test_each_lesson_folder_has_one_notebook_named_after_it(folder):
    notebooks = [path.name for path in folder.glob("*.ipynb")]
    assert notebooks == [f"{folder.name}.ipynb"]


@NOTEBOOKS
def test_execution_counts_are_1_to_n(notebook_path):
    counts = [cell.get("execution_count") for cell in code_cells(read_notebook(notebook_path))]
    assert counts == list(range(1, len(counts) + 1)), "re-run it with tools/run_notebooks.py"


@NOTEBOOKS
def test_no_stored_errors_outside_cells_meant_to_fail(notebook_path):
    for index, cell in enumerate(code_cells(read_notebook(notebook_path))):
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue
        errors = [output for output in cell.get("outputs", []) if output["output_type"] == "error"]
        assert not errors, f"code cell {index} stored an error: {errors[0].get('ename')}"


@NOTEBOOKS
def test_notebook_follows_the_outline(notebook_path):
    notebook = read_notebook(notebook_path)
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and source(first).startswith("# "), "starts with a title"
    found = [heading.lower() for heading in headings(notebook)]
    for wanted in OUTLINE:
        assert any(heading.startswith(wanted.lower()) for heading in found), f"no '{wanted}' heading"


def exercise_cells(notebook):
    """The code cells of the exercise: after the "Your turn" heading, before the "Stuck?" solution."""
    found, inside = [], False
    for cell in notebook["cells"]:
        text = source(cell)
        if cell["cell_type"] == "markdown" and re.search(r"^#{1,6} Your turn", text, re.M):
            inside = True
        elif cell["cell_type"] == "markdown" and "Stuck?" in text:
            inside = False
        elif inside and cell["cell_type"] == "code":
            found.append(cell)
    return found


@NOTEBOOKS
def test_exercise_and_check_cells_ignore_their_output(notebook_path):
    """A learner who solves the exercise and saves the notebook changes these outputs: nbval must not compare them."""
    cells = exercise_cells(read_notebook(notebook_path))
    assert cells, "no code cell between the 'Your turn' heading and the 'Stuck?' solution"
    for cell in cells:
        tagged = "nbval-ignore-output" in cell.get("metadata", {}).get("tags", [])
        marked = "# NBVAL_IGNORE_OUTPUT" in source(cell)  # the comment nbval reads; both at once is an error
        assert tagged or marked, (
            f"exercise cell not tagged nbval-ignore-output: {source(cell).splitlines()[0]!r}"
        )


@pytest.mark.parametrize(
    "notebook_path", [path for path in lesson_notebooks() if (path.parent / "app.py").exists()],
    ids=lambda path: str(path.relative_to(LESSONS)),
)
def test_notebook_prints_its_current_app_py(notebook_path):
    app_py = notebook_path.parent / "app.py"
    index = cell_printing(app_py, read_notebook(notebook_path))
    assert index is not None, (
        "no code cell's stored output shows the current app.py: print it, or re-run the notebook"
    )


def run_nbval(notebook, cells, cwd):
    """Run nbval on some cells of one notebook in a separate pytest; return (exit code, output)."""
    node_ids = [f"{notebook}::Cell {index}" for index in cells]
    command = [
        sys.executable, "-m", "pytest", "-p", "nbval", "--nbval", "--nbval-current-env",
        "--nbval-sanitize-with", str(SANITIZE), "-c", os.devnull, "--rootdir", str(cwd),
        "-p", "no:cacheprovider", "-q", "-rf", *node_ids,
    ]
    # Only nbval is needed: not loading every installed pytest plugin saves seconds.
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_editing_app_py_without_rerunning_the_notebook_fails(tmp_path):
    lessons = tmp_path / "lessons"
    shutil.copytree(LESSONS / "01_hello", lessons / "01_hello",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(LESSONS / "lesson_helpers.py", lessons)
    notebook = lessons / "01_hello" / "01_hello.ipynb"
    app_py = lessons / "01_hello" / "app.py"
    printing_cell = cell_printing(app_py, read_notebook(notebook))
    assert printing_cell is not None
    cells = range(printing_cell + 1)  # the set-up cells it needs, then the one that prints app.py

    code, output = run_nbval(notebook.relative_to(tmp_path), cells, tmp_path)
    assert code == 0, f"the unchanged copy should pass:\n{output}"

    app_py.write_text(app_py.read_text() + "# a harmless comment, added after the notebook ran\n")
    code, output = run_nbval(notebook.relative_to(tmp_path), cells, tmp_path)
    assert code == 1, output
    assert f"FAILED lessons/01_hello/01_hello.ipynb::Cell {printing_cell}" in output
    assert "a harmless comment, added after the notebook ran" in output


def collected_cells():
    """Run pytest's collection on lessons/ with the repository's own configuration; return the node ids."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "lessons"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_pytest_collects_every_cell_of_every_notebook_with_the_repositorys_configuration():
    collected = collected_cells()
    for path in lesson_notebooks():
        name = str(path.relative_to(ROOT))
        cells = len(code_cells(read_notebook(path)))
        expected = [f"{name}::Cell {index}" for index in range(cells)]
        assert [node for node in collected if node.startswith(name + "::")] == expected, (
            f"{name} is not checked cell by cell: does pytest.ini still pass --nbval?")


def sanitized(text):
    """Return text as nbval compares it: every pattern of the sanitize file applied in order."""
    from nbval.plugin import get_sanitize_patterns

    for regex, replace in get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8")):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize("measured, compared", [
    ("✓ boots and answers on $PORT in 0.8 s (limit 60 s)", "✓ boots and answers on $PORT in N s (limit 60 s)"),
    ("✓ stops 12.4 s after SIGTERM (limit 30 s)", "✓ stops N s after SIGTERM (limit 30 s)"),
    ("stopped 0.4 s after SIGTERM, within Heroku's 30 s: True",
     "stopped N s after SIGTERM, within Heroku's 30 s: True"),
    ("with preload, 2 workers: measured 128 MB", "with preload, 2 workers: measured N MB"),
    ("✓ memory with WEB_CONCURRENCY=2: 141 MB of 512 MB", "✓ memory with WEB_CONCURRENCY=2: N MB of 512 MB"),
    ("served on http://127.0.0.1:40123/health", "served on http://127.0.0.1:PORT/health"),
])
def test_the_sanitizer_blanks_what_is_measured(measured, compared):
    assert sanitized(measured) == compared


@pytest.mark.parametrize("fixed", [
    "✗ still running 30 s after SIGTERM (Heroku then kills it)",
    "no answer from http://127.0.0.1:$PORT/health within 5 s",
    "200 answered after 0.1 s",
    "# requests they are serving. Heroku sends SIGKILL 30 s after SIGTERM, so stay well under it.",
    "# for one row, 1.2-1.3 ms for 1000 rows; 1 thread 0.3 ms for one row), but served different",
    "# (A dyno that does not bind $PORT within 60 seconds is killed: error R10.)",
])
def test_the_sanitizer_keeps_limits_and_the_numbers_of_printed_files(fixed):
    assert sanitized(fixed) == fixed
