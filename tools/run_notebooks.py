"""Re-execute every lesson notebook in place, top to bottom, in its own folder.

Usage: python tools/run_notebooks.py [NOTEBOOK ...]   (default: every lessons/*/*.ipynb)
Execution counts come out 1..N, which is what nbval expects of a committed notebook.
"""
import os
import pathlib
import sys

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_notebook(path):
    """Execute one notebook with the current Python and write it back."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nbformat.write(notebook, path)


def main(argv):
    """Run the notebooks named in argv, or all of them."""
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    paths = [pathlib.Path(p).resolve() for p in argv] or sorted(ROOT.glob("lessons/*/*.ipynb"))
    for path in paths:
        print(f"running {path.relative_to(ROOT)}", flush=True)
        run_notebook(path)


if __name__ == "__main__":
    main(sys.argv[1:])
