"""Regenerate every picture that the README and the lessons show, from the real apps.

Usage: python images/make_images.py [OUTPUT_FOLDER]      (default: the images/ folder)

Each browser picture is a screenshot that headless Chromium takes of an app running on
a free port on 127.0.0.1. The terminal picture is the real output of `python app.py`,
drawn as text. The diagram is drawn from deploy_path.json, beside this script.
"""
import base64
import html
import json
import pathlib
import re
import shutil
import sys
import tempfile

from playwright.sync_api import sync_playwright

IMAGES_DIR = pathlib.Path(__file__).resolve().parent
ROOT = IMAGES_DIR.parent
LESSONS_DIR = ROOT / "lessons"
sys.path.insert(0, str(LESSONS_DIR))  # lesson_helpers starts and stops the servers

from lesson_helpers import running, stop  # noqa: E402  (needs the path above)

DEBIAN_CHROMIUM = pathlib.Path("/usr/bin/chromium")
# Headless, as root, on a machine with no network but the loopback: no sandbox, no GPU,
# and none of the background calls Chromium makes to the internet.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOW_TO_GET_CHROMIUM = (
    "no Chromium found: install Debian's (sudo apt-get install chromium) "
    "or Playwright's (.venv/bin/playwright install chromium)"
)

# The address a learner's browser shows: `python app.py` listens on port 5000 unless PORT says otherwise.
LEARNER_URL = "http://127.0.0.1:5000"
# A flower the form pictures use: measurements of a typical versicolor, in cm.
EXAMPLE_FLOWER = {"sepal_length": "6.1", "sepal_width": "2.8", "petal_length": "4.7", "petal_width": "1.2"}
# And what it shows for final_app: `make serve` listens on port 8000.
SERVE_URL = "http://127.0.0.1:8000"

PAGE_STYLE = """
  body { margin: 0; background: #ffffff; font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
  .window { display: inline-block; margin: 16px; border: 1px solid #b8bec6; border-radius: 8px;
            overflow: hidden; box-shadow: 0 2px 8px rgba(0, 0, 0, 0.15); }
  .bar { display: flex; align-items: center; gap: 12px; padding: 8px 12px; background: #e8eaed; }
  .dots span { display: inline-block; width: 12px; height: 12px; margin-right: 6px; border-radius: 50%; }
  .dots span:nth-child(1) { background: #ff5f57; }
  .dots span:nth-child(2) { background: #febc2e; }
  .dots span:nth-child(3) { background: #28c840; }
  .address { flex: 1; padding: 4px 12px; border-radius: 14px; background: #ffffff; color: #202124;
             font-size: 14px; }
  .title { color: #3c4043; font-size: 14px; }
  .content img { display: block; }
  .terminal { margin: 0; padding: 14px 18px; background: #1e1e1e; color: #d4d4d4; font-size: 14px;
              line-height: 1.45; font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
  .terminal .prompt { color: #6a9955; }
"""


def find_chromium():
    """Return the path of a Chromium to drive (Debian's, one named chromium on PATH, Playwright's), or None."""
    if DEBIAN_CHROMIUM.exists():
        return str(DEBIAN_CHROMIUM)
    if shutil.which("chromium"):
        return shutil.which("chromium")
    with sync_playwright() as playwright:
        playwright_chromium = pathlib.Path(playwright.chromium.executable_path)
    return str(playwright_chromium) if playwright_chromium.exists() else None


def launch_chromium(playwright, executable):
    """Start headless Chromium from the executable that find_chromium() found."""
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def serve_lesson(lesson, command=("app.py",)):
    """Run python with command (default: `python app.py`) in a lesson folder on a free port.

    Yields (base_url, process); "{port}" in command is replaced by the port.
    """
    return running([sys.executable, *command], cwd=LESSONS_DIR / lesson)


def serve_final_app(working_dir, model_dir=None):
    """Run final_app under gunicorn on a free loopback port: yields (base_url, process).

    gunicorn reads ./gunicorn.conf.py when there is one, so it runs from working_dir (a
    folder without one) and finds final_app through PYTHONPATH: what is served does not
    depend on the deployment settings. model_dir, if given, is the MODEL_DIR it serves.
    """
    gunicorn = pathlib.Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "--bind", "127.0.0.1:{port}", "--workers", "1", "final_app.wsgi:app"]
    env = {"PYTHONPATH": str(ROOT), "MODEL_DIR": str(model_dir or "")}
    return running(command, cwd=working_dir, env=env, ready_path="/health")


def as_data_url(png_bytes):
    """Return PNG bytes as a data: URL, so a page can show them without a file."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def draw(browser, body_html, path):
    """Render body_html with the picture styles in a blank page; save its .window element as path."""
    # A page of its own: an app's page would apply its Content-Security-Policy to our styles.
    page = browser.new_page(viewport={"width": 1200, "height": 600})
    page.set_content(f"<!doctype html><html lang='en'><head><style>{PAGE_STYLE}</style></head>"
                     f"<body>{body_html}</body></html>")
    page.locator(".window").first.screenshot(path=str(path))
    page.close()


def browser_window(address, png_bytes):
    """Return HTML for a browser window whose address bar shows address around a screenshot."""
    return (
        "<div class='window'><div class='bar'><div class='dots'><span></span><span></span><span></span>"
        f"</div><div class='address'>{html.escape(address)}</div></div>"
        f"<div class='content'><img alt='' src='{as_data_url(png_bytes)}'></div></div>"
    )


def screenshot_in_window(browser, page, shown_address, path, full_page=False):
    """Screenshot what page shows now, and save it framed by a browser window."""
    shot = page.screenshot(full_page=full_page)
    draw(browser, browser_window(shown_address, shot), path)


def make_hello_page(browser, out):
    """01_hello_page.png: lesson 01's page at /."""
    page = browser.new_page(viewport={"width": 720, "height": 160})
    with serve_lesson("01_hello") as (base_url, _process):
        page.goto(base_url + "/")
        screenshot_in_window(browser, page, LEARNER_URL + "/", out / "01_hello_page.png")
    page.close()


def make_not_found_page(browser, out):
    """02_not_found_page.png: lesson 02's answer to a path that has no route."""
    page = browser.new_page(viewport={"width": 900, "height": 200})
    with serve_lesson("02_routes") as (base_url, _process):
        response = page.goto(base_url + "/nowhere")
        assert response.status == 404, f"expected 404 for /nowhere, got {response.status}"
        screenshot_in_window(browser, page, LEARNER_URL + "/nowhere", out / "02_not_found_page.png")
    page.close()


def make_debugger_page(browser, out):
    """03_debugger_page.png: lesson 03 under `flask --app app run --debug`, after a division by zero."""
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    debug_command = ["-m", "flask", "--app", "app", "run", "--debug", "--port", "{port}"]
    with serve_lesson("03_debug", debug_command) as (base_url, _process):
        response = page.goto(base_url + "/ratio/1/0")
        assert response.status == 500, f"expected 500 for /ratio/1/0, got {response.status}"
        page.wait_for_load_state("networkidle")  # the debugger's own CSS and script
        # The mouse over the line that failed shows the console icon that lesson 03 talks about.
        page.locator(".traceback .frame").last.locator("pre.current").hover()
        screenshot_in_window(browser, page, LEARNER_URL + "/ratio/1/0", out / "03_debugger_page.png",
                             full_page=True)
    page.close()


def capture_python_app_output():
    """Run lesson 01 with `python app.py`, let one browser-like visit reach /, return what it printed."""
    # running() waits until / answers: that one successful visit is the request line the
    # output ends with. The log line is written before the answer is sent, so none is lost.
    with serve_lesson("01_hello") as (base_url, process):
        stop(process)
        output = process.stdout.read()
    visits = output.count('"GET / HTTP/1.1" 200')
    assert visits == 1, f"expected one logged visit to /, found {visits}:\n{output}"
    # The server ran on a free port; a learner's runs on 5000, so show that.
    port = base_url.rsplit(":", 1)[1]
    return output.replace(f":{port}", ":5000")


# The terminal colours Flask asks for (ANSI "SGR" codes), as CSS.
ANSI_STYLES = {"1": "font-weight: bold", "31": "color: #f14c4c", "32": "color: #23d18b",
               "33": "color: #e5e510", "34": "color: #3b8eea", "36": "color: #29b8db"}
ANSI_CODE = re.compile(r"\x1b\[([0-9;]*)m")


def ansi_to_html(text):
    """Return text as HTML, its ANSI colour codes turned into styled spans."""
    pieces, styles, position = [], [], 0
    for match in ANSI_CODE.finditer(text):
        pieces.append(styled(text[position:match.start()], styles))
        for code in match.group(1).split(";"):
            if code in ("", "0"):
                styles = []
            elif code in ANSI_STYLES:
                styles = styles + [ANSI_STYLES[code]]
        position = match.end()
    pieces.append(styled(text[position:], styles))
    return "".join(pieces)


def styled(text, styles):
    """Return text escaped for HTML, in a span with the given CSS declarations if there are any."""
    if not styles or not text:
        return html.escape(text)
    return f"<span style='{'; '.join(styles)}'>{html.escape(text)}</span>"


def terminal_html(folder, command, output):
    """Return HTML for a terminal window showing a command, typed in folder, and what it printed."""
    prompt = f"<span class='prompt'>{html.escape(folder)} $</span> {html.escape(command)}"
    return ("<div class='window'><div class='bar'><div class='dots'><span></span><span></span>"
            "<span></span></div><div class='title'>Terminal</div></div>"
            f"<pre class='terminal'>{prompt}\n{ansi_to_html(output.rstrip())}</pre></div>")


def make_terminal_picture(browser, out):
    """01_terminal_python_app.png: what `python app.py` prints in lesson 01, after one visit."""
    output = capture_python_app_output()
    picture = terminal_html("lessons/01_hello", "python app.py", output)
    draw(browser, picture, out / "01_terminal_python_app.png")


def submit_flower(page, base_url, flower):
    """Open final_app's form, type a flower's measurements ("" leaves a field empty), and submit."""
    page.goto(base_url + "/")
    for name, value in flower.items():
        page.fill(f"#{name}", value)
    with page.expect_navigation():
        page.click("form button[type=submit]")


def make_form_pictures(browser, out):
    """final_app_form_prediction.png and final_app_form_error.png: the form after each submit."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    with tempfile.TemporaryDirectory() as working_dir, serve_final_app(working_dir) as (base_url, _process):
        submit_flower(page, base_url, EXAMPLE_FLOWER)
        page.locator("#result").wait_for()
        screenshot_in_window(browser, page, SERVE_URL + "/", out / "final_app_form_prediction.png",
                             full_page=True)

        submit_flower(page, base_url, dict(EXAMPLE_FLOWER, petal_width=""))
        page.locator("#petal_width-error").wait_for()
        screenshot_in_window(browser, page, SERVE_URL + "/", out / "final_app_form_error.png",
                             full_page=True)
    page.close()


def read_diagram(path=IMAGES_DIR / "deploy_path.json"):
    """Read the diagram's definition: lanes of steps (each naming its files), and the link between lanes."""
    return json.loads(path.read_text(encoding="utf-8"))


def step_html(step):
    """Return HTML for one box of the diagram."""
    where = f"<div class='where'>{html.escape(', '.join(step['files']))}</div>"
    return (f"<div class='step'><div class='name'>{html.escape(step['title'])}</div>"
            f"<div class='text'>{html.escape(step['text'])}</div>{where}</div>")


def lane_html(lane):
    """Return HTML for one lane of the diagram: its name and its steps joined by arrows."""
    arrow = "<div class='arrow' aria-hidden='true'>&#8594;</div>"
    steps = arrow.join(step_html(step) for step in lane["steps"])
    return (f"<div class='lane'><div class='lane-name'>{html.escape(lane['name'])}</div>"
            f"<div class='steps'>{steps}</div></div>")


DIAGRAM_STYLE = """
  .diagram { padding: 20px 24px; background: #ffffff; color: #1f2328; width: 1040px; }
  .diagram h1 { margin: 0 0 14px; font-size: 22px; }
  .lane { border: 2px solid #8c959f; border-radius: 10px; padding: 10px 14px 14px; }
  .lane-name { font-weight: bold; font-size: 15px; margin-bottom: 8px; color: #57606a; }
  .steps { display: flex; align-items: stretch; }
  .step { flex: 1; border-radius: 8px; padding: 10px 12px; background: #eaf2ff; border: 1px solid #54aeff; }
  .name { font-weight: bold; font-size: 16px; margin-bottom: 4px;
          font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
  .text { font-size: 14px; line-height: 1.35; }
  .where { margin-top: 6px; font-size: 12px; color: #57606a;
           font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
  .arrow { align-self: center; padding: 0 8px; font-size: 26px; color: #57606a; }
  .link { text-align: center; margin: 6px 0; font-size: 15px; }
  .link code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-weight: bold; }
  .link .down { font-size: 26px; color: #57606a; display: block; line-height: 1; }
"""


def diagram_html(diagram):
    """Return HTML for the whole diagram, lanes from top to bottom."""
    parts = [f"<h1>{html.escape(diagram['title'])}</h1>"]
    for lane in diagram["lanes"]:
        parts.append(lane_html(lane))
        if lane.get("then"):
            parts.append(f"<div class='link'><span class='down' aria-hidden='true'>&#8595;</span>"
                         f"<code>{html.escape(lane['then'])}</code></div>")
    return f"<style>{DIAGRAM_STYLE}</style><div class='window diagram'>{''.join(parts)}</div>"


def make_diagram(browser, out):
    """deploy_path_diagram.png: from a notebook to a Heroku dyno, drawn from deploy_path.json."""
    draw(browser, diagram_html(read_diagram()), out / "deploy_path_diagram.png")


# Every picture, and the function that makes it (the form pictures come from one visit).
PICTURES = [
    (["01_hello_page.png"], make_hello_page),
    (["01_terminal_python_app.png"], make_terminal_picture),
    (["02_not_found_page.png"], make_not_found_page),
    (["03_debugger_page.png"], make_debugger_page),
    (["final_app_form_prediction.png", "final_app_form_error.png"], make_form_pictures),
    (["deploy_path_diagram.png"], make_diagram),
]
PICTURE_NAMES = [name for names, _maker in PICTURES for name in names]


def make_all(out, executable):
    """Make every picture into the folder out, with the Chromium at executable."""
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)
        try:
            for _names, maker in PICTURES:
                maker(browser, out)
        finally:
            browser.close()


def main(argv):
    """Make the pictures into argv[0], or into images/; exit 1 with a reason if there is no Chromium."""
    out = pathlib.Path(argv[0]).resolve() if argv else IMAGES_DIR
    executable = find_chromium()
    if executable is None:
        sys.exit(f"make_images: {HOW_TO_GET_CHROMIUM}")
    make_all(out, executable)
    for name in PICTURE_NAMES:
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main(sys.argv[1:])
