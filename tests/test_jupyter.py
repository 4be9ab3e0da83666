"""`make jupyter`: started exactly as the Makefile starts it, Jupyter serves every picture the notebooks show."""
import os
import posixpath
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from lesson_helpers import running

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")
HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.I)


def makefile_jupyter_command():
    """The command `make jupyter` runs, as make itself expands it, with this environment's bin folder."""
    # Under `make test` the variables of the outer make would reach this one: leave them out.
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    dry_run = subprocess.run(["make", "--no-print-directory", "--dry-run", "--old-file", ".venv/.installed",
                              "jupyter"], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    [command] = [line for line in dry_run.splitlines() if line.startswith(".venv/bin/jupyter ")]
    return [str(BIN / "jupyter"), *shlex.split(command)[1:]]


def test_make_jupyter_allows_root_only_as_root():
    # Jupyter refuses to start as root without --allow-root (jupyter_server's ServerApp.start_app).
    assert ("--allow-root" in makefile_jupyter_command()) is (os.geteuid() == 0)


def pictures(notebook_path):
    """Every local picture a notebook's Markdown cells show (Markdown images and <img src>)."""
    import json

    found = []
    for cell in json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for link in MARKDOWN_IMAGE.findall(text) + HTML_IMAGE.findall(text):
            if not re.match(r"^(https?:|data:|attachment:)", link):
                found.append(link)
    return found


NOTEBOOKS = sorted(path for path in (ROOT / "lessons").glob("*/*.ipynb") if ".ipynb_checkpoints" not in path.parts)


def test_the_notebooks_show_pictures():
    assert any(pictures(path) for path in NOTEBOOKS)


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """JupyterLab started as `make jupyter` does, on a free loopback port with a token, no browser."""
    token = secrets.token_hex(16)
    command = makefile_jupyter_command() + [
        "--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses to run as root without it (CI containers)
    runtime = tmp_path_factory.mktemp("jupyter_runtime")
    with running(command, cwd=ROOT, env={"JUPYTER_RUNTIME_DIR": str(runtime)}, ready_path="/api/status",
                 timeout=60) as (base_url, _server):
        session = requests.Session()
        session.headers["Authorization"] = f"token {token}"
        yield base_url, session


def path_in_jupyter(base_url, session, notebook_path):
    """The notebook's path as Jupyter names it (relative to Jupyter's root folder)."""
    parts = notebook_path.relative_to(ROOT).parts
    for start in range(len(parts)):
        candidate = "/".join(parts[start:])
        response = session.get(f"{base_url}/api/contents/{candidate}", params={"content": "0"}, timeout=10)
        if response.status_code == 200:
            return candidate
    pytest.fail(f"Jupyter does not serve {notebook_path.relative_to(ROOT)}")


@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=lambda path: path.name)
def test_jupyter_serves_every_picture_the_notebook_shows(jupyter, notebook_path):
    base_url, session = jupyter
    notebook = path_in_jupyter(base_url, session, notebook_path)
    for link in pictures(notebook_path):
        # JupyterLab resolves a relative link against the notebook's folder, then asks /files/ for it.
        target = posixpath.normpath(posixpath.join(posixpath.dirname(notebook), link))
        assert not target.startswith(".."), f"{link} is outside Jupyter's root folder: it cannot be shown"
        response = session.get(f"{base_url}/files/{target}", timeout=10)
        assert response.status_code == 200, f"{link}: {response.status_code}"
        assert response.headers["Content-Type"].startswith("image/"), f"{link}: {response.headers['Content-Type']}"
