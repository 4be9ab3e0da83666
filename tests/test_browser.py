"""final_app's form in a real browser: headless Chromium, driven by Playwright, against gunicorn.

These tests need a Chromium (Debian's /usr/bin/chromium, one named chromium on PATH, or
`.venv/bin/playwright install chromium`) and axe-core (`npm ci --prefix tests/browser`).
Without them they are skipped, except in CI (CI set to anything but "", 0 or false, as
.ci/run does), where a missing tool is a failure.
"""
import contextlib
import http.server
import json
import os
import pathlib
import sys
import threading

import pytest
from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "images"))  # make_images.py knows how to start Chromium and final_app
sys.path.insert(0, str(ROOT))  # final_app, for the model the page must agree with

import make_images  # noqa: E402  (needs the path above)
from final_app.artifact import load_model, read_metadata  # noqa: E402
from lesson_helpers import free_port, running  # noqa: E402  (lessons/ is on the path: conftest.py)
from test_form import TYPED_FLAT, expected_answer, save_every_field_model  # noqa: E402

AXE_SCRIPT = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# One flower of each species, in cm. The expected answers come from the model itself.
FLOWERS = {
    "setosa-like": ["5.1", "3.5", "1.4", "0.2"],
    "versicolor-like": ["6.1", "2.8", "4.7", "1.2"],
    "virginica-like": ["6.9", "3.1", "5.4", "2.1"],
}
TYPICAL_FLOWER = dict(zip(FEATURES, FLOWERS["versicolor-like"]))
SERIOUS_IMPACTS = ("serious", "critical")


def running_in_ci():
    """Tell whether the CI variable says this is CI (true, 1, yes...), where every tool must be there."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_tool(reason):
    """Skip the test for a missing tool, or fail it in CI, where every tool must be there."""
    if running_in_ci():
        pytest.fail(f"CI={os.environ['CI']} and {reason}")
    pytest.skip(reason)


def outcome_of_a_missing_chromium():
    """Return what missing_tool makes of a test right now: ("failed" or "skipped", its message)."""
    try:
        missing_tool(make_images.HOW_TO_GET_CHROMIUM)
    except pytest.fail.Exception as failure:
        return "failed", str(failure)
    except pytest.skip.Exception as skip:
        return "skipped", str(skip)
    return "went on", ""


@pytest.mark.parametrize("ci", ["true", "1", "True", "yes"])
def test_a_missing_tool_fails_in_ci(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    assert outcome_of_a_missing_chromium() == ("failed", f"CI={ci} and {make_images.HOW_TO_GET_CHROMIUM}")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_a_missing_tool_is_skipped_outside_ci(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert outcome_of_a_missing_chromium() == ("skipped", make_images.HOW_TO_GET_CHROMIUM)


@pytest.fixture(scope="session")
def chromium_path():
    """Return the path of the Chromium to drive; skip (fail under CI) when there is none."""
    path = make_images.find_chromium()
    if path is None:
        missing_tool(make_images.HOW_TO_GET_CHROMIUM)
    return path


@pytest.fixture(scope="session")
def axe_script():
    """Return the path of axe-core's script; skip (fail under CI) when it is not installed."""
    if not AXE_SCRIPT.is_file():
        missing_tool(f"axe-core is not installed ({AXE_SCRIPT} missing): run `npm ci --prefix tests/browser`")
    return AXE_SCRIPT


@pytest.fixture(scope="module")
def browser(chromium_path):
    """One headless Chromium for the whole module."""
    with sync_playwright() as playwright:
        chromium = make_images.launch_chromium(playwright, chromium_path)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """final_app served by gunicorn on a free loopback port, stopped after the module."""
    with make_images.serve_final_app(tmp_path_factory.mktemp("gunicorn")) as (url, _process):
        yield url


@pytest.fixture(scope="module")
def model_and_classes():
    """The model the server loaded, through final_app's own checked loader, and its class names."""
    return load_model(), read_metadata()["classes"]


@pytest.fixture
def page(browser):
    """A fresh browser tab (its own cookies and cache) with a 10 s limit on every wait."""
    context = browser.new_context(viewport={"width": 1000, "height": 800}, locale="en-US")
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


@pytest.fixture
def console_errors(page):
    """The errors the page writes to the console (CSP violations included) and its uncaught exceptions."""
    errors = []
    page.on("console", lambda message: errors.append(
        f"{message.text} at {message.location['url']}") if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"uncaught {error}"))
    return errors


def bad_request_logged_for(base_url):
    """The one console error Chromium writes when the form's POST is answered with status 400."""
    return f"Failed to load resource: the server responded with a status of 400 (BAD REQUEST) at {base_url}/"


def fill_form(page, values):
    """Type each value into the field with that id ("" leaves a field empty)."""
    for name, value in values.items():
        page.fill(f"#{name}", value)


def submit(page):
    """Click the submit button; return the HTTP response to the form's POST."""
    with page.expect_navigation() as navigation:
        page.click("form button[type=submit]")
    return navigation.value


def shown_probabilities(page):
    """Return {species: text} from the result's table, e.g. {"setosa": "97.6 %"}."""
    rows = page.locator("#result tbody tr")
    return {rows.nth(i).locator("th").inner_text().strip(): rows.nth(i).locator("td").inner_text().strip()
            for i in range(rows.count())}


def expected_result(model_and_classes, numbers):
    """Return (species, {species: text}) as the page should show them, from the model itself."""
    model, classes = model_and_classes
    probabilities = model.predict_proba([[float(number) for number in numbers]])[0]
    species = classes[probabilities.argmax()]
    # The page shows percentages with one decimal.
    return species, {name: f"{p * 100:.1f} %" for name, p in zip(classes, probabilities)}


@pytest.mark.parametrize("numbers", FLOWERS.values(), ids=FLOWERS.keys())
def test_submitting_the_form_shows_the_models_prediction(page, console_errors, base_url,
                                                         model_and_classes, numbers):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(base_url + "/")
    fill_form(page, dict(zip(FEATURES, numbers)))
    response = submit(page)

    species, probabilities = expected_result(model_and_classes, numbers)
    assert response.status == 200
    assert page.locator("#result .label").inner_text() == species
    assert shown_probabilities(page) == probabilities
    # The typed values stay in the form, to try a variation.
    assert [page.input_value(f"#{name}") for name in FEATURES] == numbers
    assert console_errors == []
    # Everything the page needs comes from the app itself: it works offline and tells no third party.
    assert [url for url in requested if not url.startswith(base_url + "/")] == []


@pytest.mark.parametrize("field", FEATURES)
def test_an_empty_field_gets_a_message_at_the_field_and_keeps_the_others(page, console_errors, base_url,
                                                                       field):
    page.goto(base_url + "/")
    typed = dict(TYPICAL_FLOWER, **{field: ""})
    fill_form(page, typed)
    response = submit(page)

    assert response.status == 400
    assert_message_at(page, field)
    assert page.locator("#result").count() == 0
    assert {name: page.input_value(f"#{name}") for name in FEATURES} == typed
    assert console_errors == [bad_request_logged_for(base_url)]


def test_a_non_numeric_value_gets_a_message_at_the_field(page, console_errors, base_url):
    page.goto(base_url + "/")
    fill_form(page, TYPICAL_FLOWER)
    # Chromium refuses letters in a number field; an older browser, or a script, sends them anyway.
    # Making the field a text field lets this browser send what they would.
    page.eval_on_selector("#sepal_width", "field => { field.type = 'text'; }")
    page.fill("#sepal_width", "wide")
    response = submit(page)

    assert response.status == 400
    assert_message_at(page, "sepal_width")
    assert "number" in page.inner_text("#sepal_width-error")
    for name in ("sepal_length", "petal_length", "petal_width"):
        assert page.input_value(f"#{name}") == TYPICAL_FLOWER[name]
    assert console_errors == [bad_request_logged_for(base_url)]


def assert_message_at(page, field, others=FEATURES):
    """Assert the page shows a message for field, tied to its input for screen readers, and none at others."""
    message = page.locator(f"#{field}-error")
    assert message.is_visible()
    assert message.inner_text().strip() != ""
    field_input = page.locator(f"#{field}")
    assert field_input.get_attribute("aria-invalid") == "true"
    assert f"{field}-error" in field_input.get_attribute("aria-describedby").split()
    for other in others:
        if other != field:
            assert page.locator(f"#{other}-error").count() == 0


def tab_to(page, element_id, most_presses=10):
    """Press Tab until the element with element_id has the focus; fail if it never gets it."""
    for _ in range(most_presses):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    pytest.fail(f"#{element_id} never got the focus in {most_presses} presses of Tab")


def focused_description(page):
    """Return the focused element as "tag#id" or "tag type", to say where the focus is."""
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return e.tagName.toLowerCase() + (e.id ? '#' + e.id : ' ' + (e.type || '')); }")


def test_the_form_works_with_the_keyboard_alone(page, console_errors, base_url, model_and_classes):
    page.goto(base_url + "/")
    tab_to(page, FEATURES[0])
    # The fields come in the model's order, each one Tab after the other, then the button.
    numbers = FLOWERS["virginica-like"]
    for name, number in zip(FEATURES, numbers):
        assert focused_description(page) == f"input#{name}"
        page.keyboard.type(number)
        page.keyboard.press("Tab")
    assert focused_description(page) == "button submit"
    with page.expect_navigation() as navigation:
        page.keyboard.press("Enter")

    species, _probabilities = expected_result(model_and_classes, numbers)
    assert navigation.value.status == 200
    assert page.locator("#result .label").inner_text() == species
    assert console_errors == []


def test_the_page_blocks_inline_scripts_and_the_console_check_sees_it(page, console_errors, base_url):
    page.goto(base_url + "/")
    assert console_errors == []
    # An injected inline script, as an attacker's would be: the page's policy blocks it and says so.
    with page.expect_console_message(lambda message: message.type == "error") as blocked:
        page.evaluate("() => { const s = document.createElement('script');"
                      " s.textContent = 'document.title = \"hacked\"'; document.body.append(s); }")
    assert "Content Security Policy" in blocked.value.text
    assert page.title() == "Iris species classifier"
    assert any("Content Security Policy" in error for error in console_errors), console_errors


def serious_violations(page, axe_script):
    """Run axe-core on the page; return its serious and critical violations as readable lines."""
    page.add_script_tag(path=str(axe_script))
    results = page.evaluate("() => axe.run(document)")
    return [f"{violation['impact']}: {violation['id']} ({violation['help']}) at "
            f"{[node['target'] for node in violation['nodes']]}"
            for violation in results["violations"] if violation["impact"] in SERIOUS_IMPACTS]


@pytest.fixture
def axe_page(browser):
    """A tab that lets the test inject axe-core's script in spite of the page's policy."""
    context = browser.new_context(viewport={"width": 1000, "height": 800}, bypass_csp=True)
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    context.close()


FORM_STATES = {
    # name: (what is typed, the status of the page it leads to)
    "empty form": ({}, 200),
    "with a prediction": (TYPICAL_FLOWER, 200),
    "with an error": (dict(TYPICAL_FLOWER, petal_width=""), 400),
}


def assert_page_state(page, model_and_classes, typed):
    """Assert the page is the empty form, the form with its prediction, or the form with a message."""
    if not typed:
        assert page.locator("#result").count() == 0
        assert page.locator("[aria-invalid=true]").count() == 0
    elif all(typed.values()):
        species, probabilities = expected_result(model_and_classes, [typed[name] for name in FEATURES])
        assert page.locator("#result .label").inner_text() == species
        assert shown_probabilities(page) == probabilities
    else:
        assert page.locator("#result").count() == 0
        for name, value in typed.items():
            if not value:
                assert_message_at(page, name)


@pytest.mark.parametrize("typed, status", FORM_STATES.values(), ids=FORM_STATES.keys())
def test_the_page_has_no_serious_accessibility_violations(axe_page, axe_script, base_url, model_and_classes,
                                                         typed, status):
    response = axe_page.goto(base_url + "/")
    if typed:
        fill_form(axe_page, typed)
        response = submit(axe_page)
    assert response.status == status
    assert_page_state(axe_page, model_and_classes, typed)
    assert serious_violations(axe_page, axe_script) == []


def test_the_accessibility_check_finds_a_field_without_a_label(axe_page, axe_script):
    axe_page.set_content("<!doctype html><html lang='en'><head><title>Broken form</title></head>"
                         "<body><main><form><input type='number' name='x'></form></main></body></html>")
    assert any(" label " in line for line in serious_violations(axe_page, axe_script))


# --- another model: lesson 08's penguin classifier, with choice lists and fields that may be empty ---

PENGUINS = ROOT / "lessons" / "08_own_model" / "models" / "penguins"


@pytest.fixture(scope="module")
def penguins_url(tmp_path_factory):
    """final_app serving the penguin classifier (MODEL_DIR) under gunicorn, stopped after the module."""
    with make_images.serve_final_app(tmp_path_factory.mktemp("penguins"), PENGUINS) as (url, _process):
        yield url


@pytest.fixture(scope="module")
def penguin_model():
    """The penguin classifier and its metadata, through final_app's checked loader."""
    from final_app.artifact import load_model_and_metadata

    return load_model_and_metadata(PENGUINS)


def penguin_frame(metadata, row):
    """One row as the DataFrame the model was trained on (None for a field left empty)."""
    from final_app.validation import as_columns, model_input

    return model_input(as_columns([row]), metadata)


def test_penguin_form_predicts_with_choices_and_an_empty_field(page, console_errors, penguins_url, penguin_model):
    model, metadata = penguin_model
    page.goto(penguins_url + "/")
    assert page.title() == metadata["title"]
    assert page.locator("#island option").all_inner_texts() == ["choose…", "Biscoe", "Dream", "Torgersen"]
    assert page.locator("#sex option").all_inner_texts() == ["not given", "female", "male"]
    page.select_option("#island", "Dream")
    # sex stays "not given", and body mass is left empty: both may be missing for this model.
    fill_form(page, {"bill_length_mm": "46.5", "bill_depth_mm": "17.9", "flipper_length_mm": "192"})
    response = submit(page)
    assert response.status == 200
    row = ["Dream", None, 46.5, 17.9, 192.0, None]
    X = penguin_frame(metadata, row)
    assert page.locator("#result .label").inner_text() == model.predict(X)[0]
    expected = {name: f"{p * 100:.1f} %" for name, p in zip(metadata["classes"], model.predict_proba(X)[0])}
    assert shown_probabilities(page) == expected
    assert page.locator("#sex").input_value() == ""  # the choices made stay chosen
    assert page.locator("#island").input_value() == "Dream"
    assert console_errors == []


def test_penguin_form_asks_for_a_missing_choice_at_its_field(page, console_errors, penguins_url):
    page.goto(penguins_url + "/")
    fill_form(page, {"bill_length_mm": "46.5", "bill_depth_mm": "17.9", "flipper_length_mm": "192"})
    response = submit(page)
    assert response.status == 400
    assert_message_at(page, "island")
    assert page.locator("#island-error").inner_text() == "Choose the island."
    assert page.locator("#result").count() == 0
    assert console_errors == [bad_request_logged_for(penguins_url)]


@pytest.mark.parametrize("choose, status", [(False, 200), (True, 200), (None, 400)], ids=["empty", "chosen", "error"])
def test_penguin_page_has_no_serious_accessibility_violations(axe_page, axe_script, penguins_url, choose, status):
    response = axe_page.goto(penguins_url + "/")
    if choose is not False:
        if choose:
            axe_page.select_option("#island", "Biscoe")
        fill_form(axe_page, {"bill_length_mm": "46.5", "bill_depth_mm": "17.9", "flipper_length_mm": "192"})
        response = submit(axe_page)
    assert response.status == status
    assert (axe_page.locator("#result").count() == 1) is bool(choose)
    assert serious_violations(axe_page, axe_script) == []


# --- a model with every kind of field: a date, a date and time in Paris, text, 3,876 streets ---------

CHOICE_LISTS = ("energy_class", "has_lift")


@pytest.fixture(scope="module")
def every_field_model(tmp_path_factory):
    """(folder, model, metadata) of test_form.py's flats model, saved by save_model and read back."""
    from final_app.artifact import load_model_and_metadata

    folder = tmp_path_factory.mktemp("every_field_model")
    save_every_field_model(folder)
    return (folder, *load_model_and_metadata(folder))


@pytest.fixture(scope="module")
def every_field_url(tmp_path_factory, every_field_model):
    """final_app serving the flats model (MODEL_DIR) under gunicorn, stopped after the module."""
    with make_images.serve_final_app(tmp_path_factory.mktemp("every_field"), every_field_model[0]) as (url, _process):
        yield url


def fill_flat(page, typed):
    """Type or choose each value of a flat in its field: choice lists are chosen, the rest typed."""
    for name, value in typed.items():
        if name in CHOICE_LISTS:
            page.select_option(f"#{name}", value)
        else:
            page.fill(f"#{name}", value)


def test_every_kind_of_field_takes_what_a_person_types(page, console_errors, every_field_url, every_field_model):
    _folder, model, _metadata = every_field_model
    page.goto(every_field_url + "/")
    assert page.get_attribute("#listed_on", "type") == "date"
    assert page.get_attribute("#viewed_at", "type") == "datetime-local"
    assert page.locator("textarea#description").count() == 1
    assert page.locator("#street-suggestions option").count() == 50  # of 3,876 streets
    assert "Europe/Paris time" in page.inner_text("#viewed_at-hint")
    fill_flat(page, TYPED_FLAT)
    response = submit(page)

    label, probabilities = expected_answer(model)
    assert response.status == 200
    assert page.locator("#result .label").inner_text() == label  # "true" or "false", as in JSON
    assert shown_probabilities(page) == probabilities
    assert {name: page.input_value(f"#{name}") for name in TYPED_FLAT} == TYPED_FLAT
    assert console_errors == []


EVERY_FIELD_STATES = {
    # name: (what is typed, the status of the page it leads to)
    "empty form": ({}, 200),
    "with a prediction": (TYPED_FLAT, 200),
    "with errors": (dict(TYPED_FLAT, listed_on="2019-12-31", street="nowhere", area_m2=""), 400),
}


@pytest.mark.parametrize("typed, status", EVERY_FIELD_STATES.values(), ids=EVERY_FIELD_STATES.keys())
def test_every_kind_of_field_has_no_serious_accessibility_violations(axe_page, axe_script, every_field_url,
                                                                     typed, status):
    response = axe_page.goto(every_field_url + "/")
    if typed:
        fill_flat(axe_page, typed)
        response = submit(axe_page)
    assert response.status == status
    assert (axe_page.locator("#result").count() == 1) is (status == 200 and bool(typed))
    if status == 400:
        for name in ("listed_on", "street", "area_m2"):
            assert_message_at(axe_page, name, others=())
    assert serious_violations(axe_page, axe_script) == []


# --- a front end on another origin calling /predict (CORS_ORIGINS, lesson 09) --------------------

FRONT_END_KEY = "browser-test-key-0123456789"
FRONT_END_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A front end</title></head>
<body><p id="result">waiting</p><p id="request-id"></p>
<script>
fetch(API + "/predict", {
  method: "POST",
  headers: {"Content-Type": "application/json", "Authorization": "Bearer " + KEY},
  body: JSON.stringify({instances: [[5.1, 3.5, 1.4, 0.2]]}),
}).then(response => {
  document.getElementById("request-id").textContent = response.headers.get("X-Request-ID");
  return response.json();
}).then(body => {
  document.getElementById("result").textContent = body.predictions[0].label;
}).catch(error => {
  document.getElementById("result").textContent = "blocked: " + error.name;
});
</script></body></html>
"""


@contextlib.contextmanager
def front_end_server(api_url):
    """Serve FRONT_END_PAGE (calling api_url) at / on a free loopback port, in a thread: yields its origin."""
    page = FRONT_END_PAGE.replace("API + ", f"{json.dumps(api_url)} + ").replace(
        '"Bearer " + KEY', json.dumps("Bearer " + FRONT_END_KEY)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (the name http.server calls)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass  # quiet: nothing to stderr

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def final_app_for_a_front_end(working_dir, port, cors_origins):
    """final_app under gunicorn on 127.0.0.1:port, with an API key, request ids and CORS_ORIGINS."""
    gunicorn = pathlib.Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1", "final_app.wsgi:app"]
    env = {"PYTHONPATH": str(ROOT), "MODEL_DIR": "", "API_KEYS": FRONT_END_KEY, "CORS_ORIGINS": cors_origins,
           "REQUEST_IDS": "on"}
    with running(command, cwd=working_dir, env=env, ready_path="/health", port=port) as (url, _process):
        yield url


@pytest.mark.parametrize("listed", [True, False], ids=["origin listed", "CORS_ORIGINS unset"])
def test_a_page_on_another_origin_calls_predict_only_when_its_origin_is_listed(page, tmp_path, model_and_classes,
                                                                             listed):
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    with front_end_server(api_url) as front_end:
        assert front_end != api_url  # same address, another port: another origin
        with final_app_for_a_front_end(tmp_path, api_port, front_end if listed else "") as served:
            assert served == api_url
            blocked = []
            page.on("console", lambda message: blocked.append(message.text) if "CORS policy" in message.text else None)
            page.goto(front_end + "/")
            page.wait_for_function("document.getElementById('result').textContent !== 'waiting'")
            shown = page.inner_text("#result")
            request_id = page.inner_text("#request-id")
    if listed:
        model, classes = model_and_classes
        assert shown == classes[model.predict_proba([[5.1, 3.5, 1.4, 0.2]])[0].argmax()]
        assert len(request_id) == 36  # X-Request-ID, which final_app lets a listed origin read
        assert blocked == []
    else:
        assert shown == "blocked: TypeError"  # fetch fails: the browser withholds the answer
        assert blocked and f"from origin '{front_end}' has been blocked by CORS policy" in blocked[0]
