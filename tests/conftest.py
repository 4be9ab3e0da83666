"""Fixtures and set-up shared by every test module."""
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Python 3.11+ debugpy warns about frozen modules in every kernel it starts; the kernels
# nbval starts inherit this environment, so set it before any of them is launched.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

# lessons/lesson_helpers.py starts and stops real servers; notebooks and tests share it.
sys.path.insert(0, str(ROOT / "lessons"))
