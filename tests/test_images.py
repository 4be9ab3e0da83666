"""The pictures: every one the README and the notebooks show exists, and images/make_images.py makes them."""
import json
import os
import pathlib
import re
import struct
import subprocess
import sys

import pytest

# The one fixture that finds Chromium, or skips (fails in CI) without one.
from test_browser import chromium_path  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "images"
sys.path.insert(0, str(IMAGES_DIR))

import make_images  # noqa: E402  (needs the path above)

MARKDOWN_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\(\s*<?(?P<src>[^)\s>]+)")
HTML_IMAGE = re.compile(r"<img\b[^>]*?\bsrc\s*=\s*[\"'](?P<src>[^\"']+)[\"']", re.IGNORECASE)
HTML_ALT = re.compile(r"\balt\s*=\s*[\"'](?P<alt>[^\"']*)[\"']", re.IGNORECASE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_references(text):
    """Return (src, alt) for every picture in Markdown text: ![alt](src) and <img src=... alt=...>."""
    found = [(match["src"], match["alt"]) for match in MARKDOWN_IMAGE.finditer(text)]
    for match in HTML_IMAGE.finditer(text):
        alt = HTML_ALT.search(match.group(0))
        found.append((match["src"], alt["alt"] if alt else ""))
    return found


def markdown_documents():
    """Return (path, Markdown text) for README.md and for every Markdown cell of every lesson notebook."""
    documents = [(ROOT / "README.md", (ROOT / "README.md").read_text(encoding="utf-8"))]
    for notebook in sorted(ROOT.glob("lessons/**/*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] == "markdown":
                documents.append((notebook, "".join(cell["source"])))
    return documents


def local_pictures():
    """Return (document, src, alt, resolved path) for every picture that is a file in the repository."""
    pictures = []
    for document, text in markdown_documents():
        for src, alt in image_references(text):
            if re.match(r"[a-z]+:", src):  # https:, data: and the like are not files here
                continue
            pictures.append((document, src, alt, (document.parent / src.split("#")[0]).resolve()))
    return pictures


def png_size(path):
    """Return (width, height) read from a PNG file's header; fail if it is not a PNG."""
    data = path.read_bytes()[:24]
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_the_reference_finder_sees_markdown_and_html_pictures():
    text = ('See ![The hello page](../../images/01_hello_page.png) and\n'
            '<img alt="The 404 page" width="400" src="../../images/02_not_found_page.png">.')
    assert image_references(text) == [("../../images/01_hello_page.png", "The hello page"),
                                      ("../../images/02_not_found_page.png", "The 404 page")]


def test_every_picture_the_readme_and_notebooks_show_exists():
    missing = [f"{document.relative_to(ROOT)}: {src}" for document, src, _alt, path in local_pictures()
               if not path.is_file()]
    assert missing == []


def test_every_picture_shown_is_one_the_script_makes():
    # A picture the script does not make could no longer be true of the code: nothing redraws it.
    made = {IMAGES_DIR / name for name in make_images.PICTURE_NAMES}
    strays = [f"{document.relative_to(ROOT)}: {src}" for document, src, _alt, path in local_pictures()
              if path not in made]
    assert strays == []


def test_every_picture_shown_says_what_it_shows():
    # The alt text is what a screen reader reads, and what shows when the picture cannot load.
    silent = [f"{document.relative_to(ROOT)}: {src}" for document, src, alt, _path in local_pictures()
              if not alt.strip()]
    assert silent == []


def test_every_picture_is_committed_as_a_png():
    for name in make_images.PICTURE_NAMES:
        width, height = png_size(IMAGES_DIR / name)
        assert width >= 300 and height >= 100, f"{name} is only {width}x{height}"


def test_the_diagram_names_only_files_that_exist():
    diagram = make_images.read_diagram()
    named = [path for lane in diagram["lanes"] for step in lane["steps"] for path in step["files"]]
    assert named, "the diagram's steps name no files"
    assert [path for path in named if not (ROOT / path).exists()] == []


def test_make_images_regenerates_every_picture(chromium_path, tmp_path):  # noqa: F811 (the fixture)
    result = subprocess.run([sys.executable, str(IMAGES_DIR / "make_images.py"), str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(make_images.PICTURE_NAMES)
    for name in make_images.PICTURE_NAMES:
        assert f"wrote {tmp_path / name}" in result.stdout
        width, height = png_size(tmp_path / name)
        assert width >= 300 and height >= 100, f"{name} is only {width}x{height}"


def test_a_chromium_on_path_is_found_when_debians_is_not_there(tmp_path, monkeypatch):
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    monkeypatch.setattr(make_images, "DEBIAN_CHROMIUM", tmp_path / "no-chromium-here")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert make_images.find_chromium() == str(chromium)
