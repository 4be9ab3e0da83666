"""final_app.form: the page's fields, labels, hints and messages, alone and in the app.

The unit tests use hand-written features shaped as model.json writes them. The app tests serve a
model saved by save_model with every kind of field: a date, a date and time in Paris, free text,
a category of 3,876 long street names, a small category, a boolean, a number with a unit and an
integer (save_every_field_model, also served to the browser by test_browser.py).
"""
import datetime
import itertools
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from conftest import fuzz_settings
from final_app.app import create_app
from final_app.artifact import load_model_and_metadata, save_model
from final_app.form import (MOST_SUGGESTIONS, BadValue, feature_label, field_hint, field_label, form_value,
                            json_text, parse_form, suggestions)
from model_code.listings import date_parts, words

UTC = datetime.timezone.utc
MAX_MESSAGE = 300
MAX_PAGE_BYTES = 50_000

# --- features as model.json writes them ---------------------------------------------------------

AREA = {"name": "area_m2", "type": "number", "dtype": "float64", "unit": "m²", "min": 0, "max": 380.0,
        "nullable": False}
ROOMS = {"name": "rooms", "type": "integer", "dtype": "int64", "min": 1, "max": 11, "nullable": False}
LISTED = {"name": "listed_on", "type": "date", "dtype": "datetime64[us]", "min": "2010-01-01",
          "max": "2031-12-31", "timezone": None, "nullable": False}
RETURNED = {"name": "returned_at", "type": "datetime", "dtype": "datetime64[us]", "min": "2024-01-01T00:00:00",
            "max": "2024-12-31T23:59:00", "timezone": None, "nullable": False}
DEPARTURE = {"name": "departure", "type": "datetime", "dtype": "datetime64[us, Europe/Paris]",
             "min": "2024-01-01T00:00:00+01:00", "max": "2025-01-01T00:00:00+01:00", "timezone": "Europe/Paris",
             "nullable": False}
NOTE = {"name": "note", "type": "text", "dtype": "str", "max_length": 2000, "nullable": True}
TITLE = {"name": "title", "type": "text", "dtype": "str", "max_length": 100, "nullable": False}
STREET = {"name": "street", "type": "category", "dtype": "str", "values": [f"street {i:03d}" for i in range(150)],
          "nullable": False}
ISLAND = {"name": "island", "type": "category", "dtype": "str", "values": ["Biscoe", "Dream", "Torgersen"],
          "nullable": False}
FLOOR = {"name": "floor", "type": "category", "dtype": "int64", "values": [0, 1, 2], "nullable": False}
LIFT = {"name": "has_lift", "type": "boolean", "dtype": "bool", "nullable": True}
LONG_NAMES = {"name": "district", "type": "category", "dtype": "str",
              "values": [f"district number {i} of the greater metropolitan area" for i in range(30)], "nullable": False}
FEATURES = [AREA, ROOMS, LISTED, RETURNED, DEPARTURE, NOTE, TITLE, STREET, ISLAND, FLOOR, LIFT, LONG_NAMES]


# --- labels -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, unit, label", [
    ("area_m2", "m²", "Area (m²)"),
    ("bill_length_mm", "mm", "Bill length (mm)"),
    ("sepal_length", "cm", "Sepal length (cm)"),
    ("body_mass_g", "g", "Body mass (g)"),
    ("volume_m3", "m³", "Volume (m³)"),
    ("dose_ug", "µg", "Dose (µg)"),
    ("Weight_KG", "kg", "Weight (kg)"),
    ("speed_kmh", "km/h", "Speed (km/h)"),
    ("temperature_c", "°C", "Temperature (°C)"),
    ("price", "EUR", "Price (EUR)"),
    ("length_mm_total", "mm", "Length mm total (mm)"),  # the unit's word is not the last one
    ("gram", "g", "Gram (g)"),  # "gram" is not how g is spelled
    ("mm", "mm", "Mm (mm)"),  # a name that is only the unit keeps it
    ("island", None, "Island"),
    ("MedInc", None, "MedInc"),  # capitals are kept
    ("  spaced__name ", None, "Spaced name"),
])
def test_field_label_shows_the_unit_once(name, unit, label):
    feature = {"name": name, "type": "number", "min": 0, "max": 1}
    if unit:
        feature["unit"] = unit
    assert field_label(feature) == label


@pytest.mark.parametrize("name, words_read", [
    ("sepal_length", "Sepal length"), ("species", "Species"), ("price (EUR)", "Price (EUR)"), ("pH", "PH"),
])
def test_feature_label_reads_a_name_as_words(name, words_read):
    assert feature_label(name) == words_read


@pytest.mark.parametrize("value, text", [
    (1, "1"), (True, "true"), (False, "false"), (2.5, "2.5"), ("setosa", "setosa"), ("1", "1"), (None, "null"),
])
def test_json_text_writes_a_class_as_the_api_does(value, text):
    assert json_text(value) == text


# --- hints --------------------------------------------------------------------------------------

@pytest.mark.parametrize("feature, hint", [
    (AREA, "From 0 to 380 m²."),
    (ROOMS, "Whole number from 1 to 11."),
    (LISTED, "From 2010-01-01 to 2031-12-31."),
    (RETURNED, "From 2024-01-01 00:00 to 2024-12-31 23:59."),
    (DEPARTURE, "From 2024-01-01 00:00 to 2025-01-01 00:00, Europe/Paris time."),
    (NOTE, "Up to 2,000 characters. Optional: leave it empty if you do not know it."),
    (STREET, "Type one of the 150 values the model knows; the list suggests some."),
    (ISLAND, ""),
    (LIFT, "Optional: choose “not given” if you do not know it."),
    (dict(DEPARTURE, min="2024-01-01T00:00:30+01:00"), "From 2024-01-01 00:00:30 to 2025-01-01 00:00, "
                                                        "Europe/Paris time."),
    (dict(DEPARTURE, min="2023-12-31T23:00:00+00:00"), "From 2024-01-01 00:00 to 2025-01-01 00:00, "
                                                        "Europe/Paris time."),  # shown in Paris time
])
def test_field_hint_says_what_the_field_accepts(feature, hint):
    assert field_hint(feature) == hint


# --- what was typed: accepted -------------------------------------------------------------------

GOOD_VALUES = [
    (AREA, "12.5", 12.5), (AREA, " 1e1 ", 10.0), (AREA, "380", 380.0), (AREA, "0", 0.0),
    (ROOMS, "3", 3), (ROOMS, "3.0", 3),
    (LISTED, "2024-05-01", datetime.date(2024, 5, 1)), (LISTED, " 2010-01-01 ", datetime.date(2010, 1, 1)),
    (RETURNED, "2024-05-01T12:30", datetime.datetime(2024, 5, 1, 12, 30)),
    (RETURNED, "2024-05-01T12:30:15", datetime.datetime(2024, 5, 1, 12, 30, 15)),
    # A wall-clock time in Paris: summer time (+02:00), winter time (+01:00), an hour that comes twice
    # (the first, still summer time), and a time a script sends with its offset, taken as it is.
    (DEPARTURE, "2024-05-01T12:30", datetime.datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
    (DEPARTURE, "2024-01-15T08:00", datetime.datetime(2024, 1, 15, 7, 0, tzinfo=UTC)),
    (DEPARTURE, "2024-10-27T02:30", datetime.datetime(2024, 10, 27, 0, 30, tzinfo=UTC)),
    (DEPARTURE, "2024-05-01T12:30+00:00", datetime.datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
    (NOTE, "line one\r\nline two", "line one\nline two"), (NOTE, "  spaced  ", "  spaced  "), (NOTE, "", None),
    (TITLE, "", ""), (TITLE, " ", " "),  # a text the model may not go without can be empty, as in the API
    (NOTE, "x" * 2000, "x" * 2000), (NOTE, "é\r\n" * 1000, "é\n" * 1000),  # 2,000 as the browser counts
    (STREET, "street 149", "street 149"), (STREET, " street 007 ", "street 007"),
    (ISLAND, "Dream", "Dream"), (FLOOR, "2", 2),
    (LIFT, "true", True), (LIFT, "false", False), (LIFT, "", None),
]


@pytest.mark.parametrize("feature, typed, value", GOOD_VALUES)
def test_form_value_returns_what_the_model_takes(feature, typed, value):
    found = form_value(feature, typed)
    assert found == value and type(found) is type(value)


def test_a_time_typed_for_a_paris_column_is_read_in_paris():
    found = form_value(DEPARTURE, "2024-06-30T23:30")
    assert found.utcoffset() == datetime.timedelta(hours=2)
    assert found.astimezone(UTC) == datetime.datetime(2024, 6, 30, 21, 30, tzinfo=UTC)


# --- what was typed: refused, with a message naming what to enter -------------------------------

BAD_VALUES = [
    (AREA, "", "Enter the area in m²."),
    (AREA, "big", "Enter a number in m²."),
    (AREA, "-1", "Enter a number from 0 to 380 m²."),
    (AREA, "380.5", "Enter a number from 0 to 380 m²."),
    (AREA, "nan", "Enter a number from 0 to 380 m²."),
    (AREA, "-inf", "Enter a number from 0 to 380 m²."),
    (ROOMS, "2.5", "Enter a whole number."),
    (ROOMS, "inf", "Enter a whole number."),
    (ROOMS, "12", "Enter a whole number from 1 to 11."),
    (ROOMS, "1e400", "Enter a whole number."),
    (LISTED, "", "Enter the listed on."),
    (LISTED, "2009-12-31", "Enter a date from 2010-01-01 to 2031-12-31."),
    (LISTED, "2024-02-30", "Enter a date from 2010-01-01 to 2031-12-31."),
    (LISTED, "01/05/2024", "Enter a date from 2010-01-01 to 2031-12-31."),
    (LISTED, "2024-05-01T00:00", "Enter a date from 2010-01-01 to 2031-12-31."),
    (RETURNED, "2025-01-01T00:00", "Enter a date and time from 2024-01-01 00:00 to 2024-12-31 23:59."),
    (RETURNED, "2024-05-01T12:30+02:00", "Enter a date and time from 2024-01-01 00:00 to 2024-12-31 23:59."),
    (RETURNED, "2024-05-01T25:00", "Enter a date and time from 2024-01-01 00:00 to 2024-12-31 23:59."),
    (RETURNED, "tomorrow", "Enter a date and time from 2024-01-01 00:00 to 2024-12-31 23:59."),
    (DEPARTURE, "2023-12-31T23:59", "Enter a date and time from 2024-01-01 00:00 to 2025-01-01 00:00, "
                                    "Europe/Paris time."),
    (DEPARTURE, "9999-12-31T23:59", "Enter a date and time from 2024-01-01 00:00 to 2025-01-01 00:00, "
                                    "Europe/Paris time."),
    (DEPARTURE, "0001-01-01T00:00", "Enter a date and time from 2024-01-01 00:00 to 2025-01-01 00:00, "
                                    "Europe/Paris time."),
    (DEPARTURE, "2024-03-31T02:30", "Enter another time: there is no 2024-03-31 02:30 in Europe/Paris, "
                                    "the clocks skip it."),
    (NOTE, "x" * 2001, "Enter text of at most 2,000 characters (this one has 2,001)."),
    (STREET, "", "Enter the street."),
    (STREET, "nowhere", 'Choose one of the 150 values the model knows, like "street 000", "street 001" or '
                        '"street 002".'),
    (STREET, "Street 14", 'Choose one of the 150 values the model knows, like "street 140", "street 141" or '
                          '"street 142".'),  # values with what was typed in them first
    (STREET, "STREET 007", 'Choose one of the 150 values the model knows, like "street 007".'),
    (ISLAND, "", "Choose the island."),
    (ISLAND, "Atlantis", "Choose one of: Biscoe, Dream, Torgersen."),
    (ISLAND, "dream", "Choose one of: Biscoe, Dream, Torgersen."),
    (FLOOR, "1.0", "Choose one of: 0, 1, 2."),
    (LIFT, "yes", "Choose one of: yes, no."),
    (LONG_NAMES, "x", 'Choose one of the 30 values the model knows, like "district number 0 of the greater '
                      'metropolitan area", "district number 1 of the greater metropolitan area" or '
                      '"district number 2 of the greater metropolitan area".'),
    (dict(STREET, values=["a" * 100, "b" * 100] * 20), "c", f'Choose one of the 40 values the model knows, like '
                                                            f'"{"a" * 59}…", "{"b" * 59}…" or "{"a" * 59}…".'),
]


@pytest.mark.parametrize("feature, typed, message", BAD_VALUES)
def test_form_value_refuses_with_a_message_naming_what_to_enter(feature, typed, message):
    with pytest.raises(BadValue) as problem:
        form_value(feature, typed)
    assert str(problem.value) == message
    assert len(message) < MAX_MESSAGE


def test_a_number_message_gives_the_example():
    with pytest.raises(BadValue, match=r"^Enter a number in m², like 108\.95\.$"):
        form_value(AREA, "big", 108.95)


NASTY = ["", " ", "\x00", "\r\n", "9" * 5000, "1e999", "-0", "0x10", "½", "٣", "true", "null", "[1]", '"a"',
         "<script>alert(1)</script>", "é" * 3000, "2024-05-01", "2024-05-01T12:30", "2024-05-01T12:30Z",
         "2024-05-01 12:30", "20240501T1230", "+002024-05-01", "2024-W18-3", "9999-12-31T23:59:59.999999+14:00",
         "0001-01-01T00:00-14:00", "2024-03-31T02:30", "street 001", "Dream", "1_000", "  Dream  "]


@pytest.mark.parametrize("typed", NASTY, ids=range(len(NASTY)))
@pytest.mark.parametrize("feature", FEATURES, ids=[feature["name"] for feature in FEATURES])
def test_anything_typed_is_a_value_or_a_short_message(feature, typed):
    try:
        form_value(feature, typed)
    except BadValue as problem:
        message = str(problem)
        assert len(message) < MAX_MESSAGE and "\n" not in message
        assert re.match(r"(Enter|Choose) ", message) and message.endswith("."), message


def test_parse_form_gives_a_message_per_bad_field_and_the_values_in_model_order():
    row, errors = parse_form({"area_m2": "50", "rooms": "two", "listed_on": "2024-05-01"}, [AREA, ROOMS, LISTED])
    assert row == [50.0, datetime.date(2024, 5, 1)]
    assert errors == {"rooms": "Enter a whole number."}


def test_suggestions_are_few_and_contain_what_was_typed():
    many = dict(STREET, values=[f"street {i:04d}" for i in range(3876)])
    assert suggestions(many) == [f"street {i:04d}" for i in range(MOST_SUGGESTIONS)]
    assert suggestions(many, "12") == [f"street {i:04d}" for i in range(3876) if "12" in f"{i:04d}"][:MOST_SUGGESTIONS]
    assert suggestions(many, "no such street") == suggestions(many)
    huge = dict(STREET, values=["x" * 5000 + str(i) for i in range(40)])
    assert len(suggestions(huge)) == 1  # at most 10,000 characters of suggestions


# --- a model with every kind of field, saved and served -----------------------------------------

FIRST_WORDS = ["North", "South", "East", "West", "Old", "New", "Upper", "Lower", "Little", "Great",
               "Saint", "Kings", "Queens", "Market", "Mill", "High", "Church", "Station", "River"]
LAST_WORDS = ["Hill", "Park", "Green", "Bridge", "Gate", "Field", "Wood", "Harbour", "Cross", "Common",
              "Lane", "Row", "Square", "Terrace", "Walk", "Way", "Close", "Court", "Mews", "Yard"]
# 3,876 long, distinct street names: far too many for a choice list.
STREETS = [f"{number} {first} {last} Street, the second building on the left after the old town's east corner"
           for number, first, last in itertools.product(range(1, 12), FIRST_WORDS, LAST_WORDS)][:3876]
DESCRIPTION_WORDS = ["sunny", "quiet", "balcony", "garden", "renovated", "noisy", "dark"]
# One flat as a person types it into the form (the fixture's tests and the browser's).
TYPED_FLAT = {"listed_on": "2023-01-03", "viewed_at": "2023-06-29T08:33", "description": "sunny quiet balcony",
              "street": STREETS[-1], "energy_class": "F", "has_lift": "true", "area_m2": "109.8", "rooms": "4"}


def flats(rows=4000, seed=0):
    """A made-up table of flats with every kind of column, and whether each sold within a month."""
    rng = np.random.default_rng(seed)
    streets = np.concatenate([STREETS, rng.choice(STREETS, rows - len(STREETS))])
    frame = pd.DataFrame({
        "listed_on": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), unit="D"),
        "viewed_at": pd.Timestamp("2023-01-01", tz="Europe/Paris")
        + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, rows), unit="min"),
        "description": [" ".join(rng.choice(DESCRIPTION_WORDS, 6)) for _ in range(rows)],
        "street": rng.permutation(streets),
        "energy_class": rng.choice(list("ABCDEFG"), rows),
        "has_lift": rng.random(rows) < 0.5,
        "area_m2": rng.uniform(20, 200, rows).round(1),
        "rooms": rng.integers(1, 7, rows),
    })
    score = (frame["area_m2"] / 50 + frame["description"].str.count("sunny|balcony") - frame["rooms"] / 2
             + rng.normal(0, 1, rows))
    return frame, (score > 1.5).to_numpy()


def flats_pipeline():
    """Dates as numbers, the description's words, one-hot choices, scaled sizes, a logistic regression."""
    columns = ColumnTransformer([
        ("dates", make_pipeline(FunctionTransformer(date_parts), StandardScaler()), ["listed_on", "viewed_at"]),
        ("words", TfidfVectorizer(analyzer=words), "description"),
        ("choices", OneHotEncoder(handle_unknown="ignore"), ["street", "energy_class", "has_lift"]),
        ("sizes", StandardScaler(), ["area_m2", "rooms"]),
    ])
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


def save_every_field_model(folder):
    """Train the flats classifier and save it into folder with save_model; return its metadata."""
    frame, sold_fast = flats()
    model = flats_pipeline().fit(frame, sold_fast)
    return save_model(model, frame, folder, name="every-field", title="Flats that sell fast",
                      target="sold within a month", units={"area_m2": "m²"}, types={"street": "category"},
                      max_length={"description": 100})


def typed_flat_frame(typed=TYPED_FLAT):
    """The typed flat as a DataFrame built here with pandas, not by the app: the answer to compare with."""
    return pd.DataFrame({
        "listed_on": [pd.Timestamp(typed["listed_on"])],
        "viewed_at": [pd.Timestamp(typed["viewed_at"]).tz_localize("Europe/Paris")],
        "description": [typed["description"]],
        "street": [typed["street"]],
        "energy_class": [typed["energy_class"]],
        "has_lift": [typed["has_lift"] == "true"],
        "area_m2": [float(typed["area_m2"])],
        "rooms": [int(typed["rooms"])],
    })


def expected_answer(model, typed=TYPED_FLAT):
    """Return (label, {class: "12.3 %"}) as the page should show them, from the model itself."""
    X = typed_flat_frame(typed)
    probabilities = model.predict_proba(X)[0]
    return json_text(model.predict(X)[0].item()), {json_text(name.item()): f"{p * 100:.1f} %"
                                                  for name, p in zip(model.classes_, probabilities)}


@pytest.fixture(scope="module")
def every_field(tmp_path_factory):
    """(client, model, metadata) for the flats model, served by create_app from its MODEL_DIR."""
    folder = tmp_path_factory.mktemp("every_field")
    save_every_field_model(folder)
    model, metadata = load_model_and_metadata(folder)
    return create_app({"MODEL_DIR": str(folder)}).test_client(), model, metadata


def page_of(response):
    """Return a response's HTML after checking it is the page (200 or 400) and small."""
    assert response.status_code in (200, 400)
    assert response.mimetype == "text/html"
    assert len(response.data) < MAX_PAGE_BYTES
    return response.get_data(as_text=True)


def error_at(html, name):
    """Return the message shown at a field, or None."""
    found = re.search(rf'<p class="error" id="{name}-error">(.*?)</p>', html)
    return found.group(1) if found else None


def test_the_page_has_a_field_of_the_right_kind_for_every_feature(every_field):
    client, _model, metadata = every_field
    response = client.get("/")
    html = page_of(response)
    assert response.status_code == 200
    kinds = {feature["name"]: feature["type"] for feature in metadata["features"]}
    assert kinds == {"listed_on": "date", "viewed_at": "datetime", "description": "text", "street": "category",
                     "energy_class": "category", "has_lift": "boolean", "area_m2": "number", "rooms": "integer"}
    listed, viewed = metadata["features"][0], metadata["features"][1]
    assert f'<input type="date" min="{listed["min"]}" max="{listed["max"]}" required' in html
    assert '<input type="datetime-local" min="2022-01-01T00:00" max="2024-12-31T00:00" required' in html
    assert '<textarea maxlength="100" rows="4"\n' in html  # not required: "" is a text too
    assert '<input type="text" list="street-suggestions" autocomplete="off" required' in html
    assert '<select name="energy_class" id="energy_class" required' in html
    assert '<option value="true">yes</option>' in html
    assert '<label for="area_m2">Area (m²)</label>' in html
    assert '<input type="number" step="1" min="0"' in html
    assert html.count("<option value=") == MOST_SUGGESTIONS + 7 + 2 + 2  # no page of 3,876 choices
    assert "<script" not in html


@pytest.mark.parametrize("name, hint", [
    ("listed_on", "From 2020-01-03 to 2025-12-29."),
    ("viewed_at", "From 2022-01-01 00:00 to 2024-12-31 00:00, Europe/Paris time."),
    ("description", "Up to 100 characters."),
    ("street", "Type one of the 3,876 values the model knows; the list suggests some."),
    ("area_m2", "From 0 to 380 m²."),
    ("rooms", "Whole number from 0 to 11."),
])
def test_each_field_shows_what_it_accepts_and_points_at_it(every_field, name, hint):
    client = every_field[0]
    response = client.get("/")
    html = page_of(response)
    assert response.status_code == 200
    assert f'<p class="hint" id="{name}-hint">{hint}</p>' in html
    assert f'id="{name}"' in html and f'aria-describedby="{name}-hint"' in html


def test_the_typed_flat_gets_the_models_answer(every_field):
    client, model, _metadata = every_field
    response = client.post("/", data=TYPED_FLAT)
    html = page_of(response)
    assert response.status_code == 200, error_at(html, "viewed_at")
    label, probabilities = expected_answer(model)
    assert f'<strong class="label">{label}</strong>' in html  # true or false, as the API writes it
    for name, percent in probabilities.items():
        assert f'<th scope="row">{name}</th><td>{percent}</td>' in html
    assert '<th scope="row">true</th>' in html and '<th scope="row">false</th>' in html
    assert 'value="2023-06-29T08:33"' in html  # what was typed stays in the form


def test_the_form_and_the_api_give_the_same_answer(every_field):
    client, _model, _metadata = every_field
    page = client.post("/", data=TYPED_FLAT)
    api = client.post("/predict", json={"instances": [{
        **TYPED_FLAT, "viewed_at": "2023-06-29T08:33:00+02:00", "has_lift": True, "area_m2": 109.8, "rooms": 4}]})
    assert page.status_code == 200 and api.status_code == 200
    label = json_text(api.get_json()["predictions"][0]["label"])
    assert f'<strong class="label">{label}</strong>' in page.get_data(as_text=True)


def test_a_street_typed_that_the_list_does_not_suggest_is_checked_against_all(every_field):
    client, model, _metadata = every_field
    typed = dict(TYPED_FLAT, street=STREETS[2000])
    response = client.post("/", data=typed)
    html = page_of(response)
    assert response.status_code == 200
    assert f'<strong class="label">{expected_answer(model, typed)[0]}</strong>' in html


def test_an_empty_description_is_an_empty_text(every_field):
    client, model, _metadata = every_field
    typed = dict(TYPED_FLAT, description="")
    response = client.post("/", data=typed)
    html = page_of(response)
    assert response.status_code == 200
    assert f'<strong class="label">{expected_answer(model, typed)[0]}</strong>' in html


def test_a_description_keeps_its_first_line_break(every_field):
    client = every_field[0]
    response = client.post("/", data=dict(TYPED_FLAT, description="\nsunny"))
    html = page_of(response)
    assert response.status_code == 200
    # The browser drops the first line break after <textarea>: the text's own comes after it.
    assert 'aria-describedby="description-hint">\n\nsunny</textarea>' in html


def test_a_wrong_street_is_refused_with_a_few_suggestions_close_to_it(every_field):
    client = every_field[0]
    response = client.post("/", data=dict(TYPED_FLAT, street="11 West Way Street"))
    html = page_of(response)
    assert response.status_code == 400
    assert error_at(html, "street") == ("Choose one of the 3,876 values the model knows, like "
                                        "&#34;11 West Way Street, the second building on the left after t…&#34;.")
    datalist = html[html.index('<datalist id="street-suggestions">'):html.index("</datalist>")]
    assert datalist.count("<option") == 1 and f'<option value="{STREETS[-1]}">'.replace("'", "&#39;") in datalist


BAD_FIELDS = [
    ("listed_on", "2019-12-31", "Enter a date from 2020-01-03 to 2025-12-29."),
    ("listed_on", "", "Enter the listed on."),
    ("viewed_at", "2021-12-31T23:59", "Enter a date and time from 2022-01-01 00:00 to 2024-12-31 00:00, "
                                      "Europe/Paris time."),
    ("viewed_at", "2023-03-26T02:15", "Enter another time: there is no 2023-03-26 02:15 in Europe/Paris, "
                                      "the clocks skip it."),
    ("description", "sunny " * 20, "Enter text of at most 100 characters (this one has 120)."),
    ("energy_class", "H", "Choose one of: A, B, C, D, E, F, G."),
    ("has_lift", "", "Choose the has lift."),
    ("area_m2", "381", "Enter a number from 0 to 380 m²."),
    ("rooms", "4.5", "Enter a whole number, like 4."),
]


@pytest.mark.parametrize("name, typed, message", BAD_FIELDS)
def test_a_bad_field_gets_its_message_tied_to_it(every_field, name, typed, message):
    client = every_field[0]
    response = client.post("/", data=dict(TYPED_FLAT, **{name: typed}))
    html = page_of(response)
    assert response.status_code == 400
    assert error_at(html, name) == message
    described = f"{name}-error" if name in ("energy_class", "has_lift") else f"{name}-error {name}-hint"
    assert f'aria-invalid="true" aria-describedby="{described}"' in html  # a required choice list has no hint
    assert html.count('aria-invalid="true"') == 1
    assert 'id="result"' not in html


@pytest.mark.parametrize("typed", NASTY, ids=range(len(NASTY)))
def test_nothing_typed_in_any_field_makes_a_500(every_field, typed):
    client = every_field[0]
    for name in TYPED_FLAT:
        response = client.post("/", data=dict(TYPED_FLAT, **{name: typed}))
        html = page_of(response)
        message = error_at(html, name)
        assert (response.status_code, message is None) in ((200, True), (400, False)), (name, typed, message)
        assert message is None or len(message) < MAX_MESSAGE


@fuzz_settings(60)
@given(st.fixed_dictionaries({}, optional={name: st.text(max_size=30) for name in TYPED_FLAT}))
def test_any_form_is_answered_with_the_page(every_field, form):
    client = every_field[0]
    page_of(client.post("/", data=form))


# --- classes that are numbers -------------------------------------------------------------------

def test_integer_classes_read_as_the_api_writes_them(tmp_path):
    iris = load_iris()
    model = LogisticRegression(max_iter=1000).fit(iris.data, iris.target)  # classes 0, 1 and 2
    save_model(model, iris.data, tmp_path, feature_names=["sepal_length", "sepal_width", "petal_length",
                                                          "petal_width"], units=dict.fromkeys(["sepal_length"], "cm"))
    client = create_app({"MODEL_DIR": str(tmp_path)}).test_client()
    response = client.post("/", data={"sepal_length": "5.1", "sepal_width": "3.5", "petal_length": "1.4",
                                      "petal_width": "0.2"})
    html = page_of(response)
    assert response.status_code == 200
    assert '<strong class="label">0</strong>' in html
    assert [row for row in re.findall(r'<th scope="row">(.*?)</th>', html)] == ["0", "1", "2"]
    api = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert api.status_code == 200 and api.get_json()["predictions"][0]["label"] == 0


# --- the iris form keeps its shape, with the range shown --------------------------------------

def test_the_iris_form_shows_each_range_next_to_its_field(client):
    response = client.get("/")
    html = page_of(response)
    assert response.status_code == 200
    assert '<label for="sepal_length">Sepal length (cm)</label>' in html
    assert '<p class="hint" id="sepal_length-hint">From 0 to 16 cm.</p>' in html
    assert html.count('aria-describedby="') == 4
