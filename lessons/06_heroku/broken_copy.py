"""Lesson 06: copy this repository somewhere safe, break the copy on purpose, run the preflight on it.

The copy holds what Heroku would build (no lessons, no tests) and is a new git repository,
so the preflight sees it exactly as it sees the real one.
"""
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the top of the repository holds tools/

from tools import preflight  # noqa: E402  (the import needs the path above)


def copy_repository(destination):
    """Copy the files this repository would put in a slug into destination; return its path."""
    destination = pathlib.Path(destination)
    patterns = preflight.slugignore_patterns(ROOT)
    for name in preflight.files_heroku_receives(ROOT):
        source = ROOT / name
        if source.is_file() and "__pycache__" not in name and not preflight.ignored_by_slug(name, patterns):
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    subprocess.run(["git", "init", "-q", str(destination)], check=True)
    return destination


def commit_all(root):
    """Commit every file in root, as you would before `git push`: the preflight checks the last commit."""
    identity = ["-c", "user.name=Lesson 06", "-c", "user.email=lesson06@example.com"]
    for arguments in (["add", "-A"], ["commit", "-q", "--allow-empty", "-m", "what git push sends"]):
        subprocess.run(["git", *identity, "-C", str(root), *arguments], check=True)


def replace_in(path, old, new):
    """Replace the text old by new in the file at path; fail if old is not there."""
    text = pathlib.Path(path).read_text()
    if old not in text:
        raise ValueError(f"{old!r} is not in {path}")
    pathlib.Path(path).write_text(text.replace(old, new))


def show_failures(root, static=True):
    """Commit root, run the preflight on it and print only the failed checks, each with its fix."""
    commit_all(root)
    results = preflight.run_checks(root, static=static, report=lambda line: None)
    failures = [check for check in results if not check.ok]
    for check in failures:
        print(check.line())
    if not failures:
        print(f"preflight: all {len(results)} checks passed")
