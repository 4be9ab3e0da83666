"""The page's form: the field each feature gets, and what a person typed turned into the model's values.

Every typed value goes through the API's own check (validation.value_checker), so the form and
POST /predict accept exactly the same values. Only the messages differ: the API's are written for
programs ("must be ..."), the form's for people ("Enter a date from 2010-01-01 to 2031-12-31.").
"""
import datetime
import json
import zoneinfo

from final_app.validation import DATE_TIME, BadValue, parse_time, unit_text, value_checker

# A category with more values than this gets a text field with suggestions, not a choice list.
MOST_CHOICES = 30
# The page suggests at most this many values for such a field, in at most this many characters:
# a model may know thousands of values, and the page must stay small.
MOST_SUGGESTIONS = 50
SUGGESTION_CHARACTERS = 10_000
# A message lists a choice list's values only when they fit in this many characters; past that it
# quotes a few, each cut to at most this many.
LISTED_CHOICES_CHARACTERS = 200
QUOTED_CHARACTERS = 60
# How units are spelled in feature names: "area_m2" for m², "dose_ug" for µg.
UNIT_SPELLING = str.maketrans({"²": "2", "³": "3", "µ": "u", "μ": "u"})


# --- labels -------------------------------------------------------------------------------------

def capitalized(text):
    """Return text with its first letter in capitals, the rest unchanged: "pH level" -> "PH level"."""
    return text[:1].upper() + text[1:]


def feature_label(name):
    """Return the words a person reads for a name: "sepal_length" -> "Sepal length"."""
    return capitalized(" ".join(name.replace("_", " ").split()) or name)


def spelled(text):
    """Return a unit or a word in plain letters and digits, lower case: "m²" -> "m2", "km/h" -> "kmh"."""
    return "".join(character for character in text.translate(UNIT_SPELLING).lower() if character.isalnum())


def label_words(feature):
    """Return a feature's name as words, without a last word that spells its unit: "bill length"."""
    words = feature["name"].replace("_", " ").split()
    unit = feature.get("unit")
    if unit and len(words) > 1 and spelled(words[-1]) == spelled(unit):
        words = words[:-1]
    return " ".join(words) or feature["name"]


def field_label(feature):
    """Return a field's label, with its unit once: "bill_length_mm" in mm -> "Bill length (mm)"."""
    label = capitalized(label_words(feature))
    return f"{label} ({feature['unit']})" if feature.get("unit") else label


def json_text(value):
    """Return a value as the API writes it in JSON, text as it is: 1, true, 2.5, setosa."""
    return value if isinstance(value, str) else json.dumps(value)


# --- the field each feature gets ----------------------------------------------------------------

def is_big_category(feature):
    """True for a category with too many values for a choice list."""
    return feature["type"] == "category" and len(feature["values"]) > MOST_CHOICES


def control(feature):
    """Return the field a feature gets: "number", "date", "datetime-local", "textarea", "suggest" or "select"."""
    kind = feature["type"]
    if kind in ("number", "integer"):
        return "number"
    if kind == "date":
        return "date"
    if kind == "datetime":
        return "datetime-local"
    if kind == "text":
        return "textarea"
    return "suggest" if is_big_category(feature) else "select"


def number_text(number):
    """Return a bound as a person writes it: 6.0 -> "6", 4.7 -> "4.7"."""
    if type(number) is float and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return str(number)


def local_bounds(feature):
    """Return a date-time feature's (min, max) as wall-clock times, in its timezone if it has one."""
    low, high = (parse_time(feature, feature[end]) for end in ("min", "max"))
    if feature.get("timezone"):
        zone = zoneinfo.ZoneInfo(feature["timezone"])
        low, high = (moment.astimezone(zone).replace(tzinfo=None) for moment in (low, high))
    return low, high


def local_text(moment):
    """Return a wall-clock time as a datetime-local field writes it: "2024-05-01T12:30" (seconds if any)."""
    return moment.isoformat(timespec="seconds" if moment.second or moment.microsecond else "minutes")


def range_text(feature):
    """Return the values a field accepts, for hints and messages: "from 0 to 16 cm"."""
    kind = feature["type"]
    if kind in ("number", "integer"):
        return f"from {number_text(feature['min'])} to {number_text(feature['max'])}{unit_text(feature)}"
    if kind == "date":
        return f"from {feature['min']} to {feature['max']}"
    low, high = (local_text(moment).replace("T", " ") for moment in local_bounds(feature))
    zone = f", {feature['timezone']} time" if feature.get("timezone") else ""
    return f"from {low} to {high}{zone}"


def field_hint(feature):
    """Return the text under a field's label: what it accepts, and whether it may be left empty."""
    kind = feature["type"]
    parts = []
    if kind in ("number", "integer", "date", "datetime"):
        whole = "Whole number " if kind == "integer" else ""
        parts.append(capitalized(f"{whole}{range_text(feature)}."))
    elif kind == "text":
        parts.append(f"Up to {feature['max_length']:,} characters.")
    elif is_big_category(feature):
        parts.append(f"Type one of the {len(feature['values']):,} values the model knows; "
                     "the list suggests some.")
    if feature.get("nullable"):
        empty = "choose “not given”" if control(feature) == "select" else "leave it empty"
        parts.append(f"Optional: {empty} if you do not know it.")
    return " ".join(parts)


def html_limits(feature):
    """Return the min, max and step attributes of a number, date or datetime-local field."""
    kind = feature["type"]
    if kind in ("number", "integer"):
        return {"min": feature["min"], "max": feature["max"], "step": 1 if kind == "integer" else "any"}
    if kind == "date":
        return {"min": feature["min"], "max": feature["max"]}
    if kind == "datetime":
        low, high = local_bounds(feature)
        # The field's own step is a minute; bounds with seconds need it to take seconds too.
        with_seconds = any(moment.second or moment.microsecond for moment in (low, high))
        return {"min": local_text(low), "max": local_text(high), "step": 1 if with_seconds else None}
    return {}


def form_field(feature):
    """Return what the page needs to show one feature's field (the template's only source)."""
    return {"name": feature["name"], "label": field_label(feature), "control": control(feature),
            "hint": field_hint(feature), "nullable": feature.get("nullable", False),
            "max_length": feature.get("max_length"), "feature": feature, **html_limits(feature)}


def form_fields(features):
    """Return form_field() of every feature, in model order."""
    return [form_field(feature) for feature in features]


def form_text(value):
    """Return the text a field sends for a category's value: the text itself, else its JSON (3, true)."""
    return value if type(value) is str else json.dumps(value)


def form_choices(feature):
    """Return [(form value, text shown)] for a feature offered as a choice list."""
    if feature["type"] == "boolean":
        return [("true", "yes"), ("false", "no")]
    return [(form_text(value), form_text(value)) for value in feature["values"]]


def suggestions(feature, typed=""):
    """Return the few values a big category's field suggests: those containing what was typed, or the first ones."""
    texts = [form_text(value) for value in feature["values"]]
    wanted = typed.strip().lower()
    matching = [text for text in texts if wanted in text.lower()] if wanted else []
    chosen, characters = [], 0
    for text in (matching or texts)[:MOST_SUGGESTIONS]:
        characters += len(text)
        if characters > SUGGESTION_CHARACTERS:
            break
        chosen.append(text)
    return chosen


# --- what was typed -----------------------------------------------------------------------------

def parse_form(form, features, example=None):
    """Return (row, errors) from the page's form: the values in model order, or a message per field."""
    row, errors = [], {}
    for index, feature in enumerate(features):
        text = form.get(feature["name"], "")
        try:
            row.append(form_value(feature, text, example[index] if example else None))
        except BadValue as problem:
            errors[feature["name"]] = str(problem)
    return row, errors


def form_value(feature, text, example=None):
    """Return one field's text as the feature's value, or raise BadValue saying what to enter."""
    kind = feature["type"]
    if kind == "text" and not feature.get("nullable"):
        return text_value(feature, text)  # no text is a text too, as the API takes ""
    if not text.strip():
        return empty_value(feature)
    if kind in ("number", "integer"):
        return number_value(feature, text.strip(), example)
    if kind == "text":
        return text_value(feature, text)
    if kind == "date":
        return checked(feature, text.strip(), f"Enter a date {range_text(feature)}.")
    if kind == "datetime":
        return checked(feature, typed_moment(feature, text.strip()), f"Enter a date and time {range_text(feature)}.")
    return choice_value(feature, text)


def checked(feature, value, message):
    """Return value_checker(feature)(value), the API's check, with message in place of the API's."""
    try:
        return value_checker(feature)(value)
    except BadValue:
        raise BadValue(message) from None


def empty_value(feature):
    """Return None for an empty field the model can do without, or raise BadValue asking for it."""
    if feature.get("nullable"):
        return None
    verb = "Choose" if control(feature) == "select" else "Enter"
    unit = unit_text(feature)
    raise BadValue(f"{verb} the {label_words(feature)}{' in' + unit if unit else ''}.")


def number_value(feature, text, example):
    """Return a number or whole number typed in a field, or raise BadValue saying what to enter."""
    unit = unit_text(feature)
    whole = "whole " if feature["type"] == "integer" else ""
    like = f", like {example}" if example is not None else ""
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"Enter a {whole}number{' in' + unit if unit else ''}{like}.") from None
    if whole and not value.is_integer():  # also true for inf and nan
        raise BadValue(f"Enter a whole number{' in' + unit if unit else ''}{like}.")
    return checked(feature, int(value) if whole else value, f"Enter a {whole}number {range_text(feature)}.")


def text_value(feature, text):
    """Return the text typed in a text area, or raise BadValue if it is too long."""
    # Browsers send a text area's line breaks as \r\n and count each as one character.
    text = text.replace("\r\n", "\n")
    return checked(feature, text, f"Enter text of at most {feature['max_length']:,} characters "
                                  f"(this one has {len(text):,}).")


def typed_moment(feature, text):
    """Return the ISO 8601 text a request would send for a date and time typed in the form.

    A datetime-local field sends a wall-clock time without a UTC offset. For a column with a
    timezone, that time is read in the column's timezone: 2024-05-01T12:30 in Europe/Paris is
    2024-05-01T12:30:00+02:00. An hour that comes twice, when the clocks go back, is read as the
    first one. Anything else is returned as it is, for the check to judge.
    """
    zone = feature.get("timezone")
    if not zone or not DATE_TIME.fullmatch(text):
        return text
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:  # a date that does not exist, like 2024-02-30
        return text
    if moment.tzinfo is not None:  # an offset typed by hand, or sent by a script: taken as it is
        return text
    local = moment.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    if not wall_time_exists(local):
        raise BadValue(f"Enter another time: there is no {text.replace('T', ' ')} in {zone}, "
                       "the clocks skip it.")
    return local.isoformat()


def wall_time_exists(local):
    """True unless the clocks skip this wall-clock time in its timezone (the hour lost in spring)."""
    try:
        back = local.astimezone(datetime.timezone.utc).astimezone(local.tzinfo)
    except OverflowError:  # year 1 or 9999 with an offset: out of every range, said by the check
        return True
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def choice_value(feature, text):
    """Return the value whose text was chosen or typed, or raise BadValue naming some to choose from."""
    values = [True, False] if feature["type"] == "boolean" else feature["values"]
    texts = [sent for sent, _shown in form_choices(feature)]
    for candidate in (text, text.strip()):
        if candidate in texts:
            return values[texts.index(candidate)]
    raise BadValue(wrong_choice_message(feature, text))


def wrong_choice_message(feature, typed):
    """Return what to choose instead of a value the feature does not know: all values, or a few."""
    listed = ", ".join(shown_text for _value, shown_text in form_choices(feature))
    if not is_big_category(feature) and len(listed) <= LISTED_CHOICES_CHARACTERS:
        return f"Choose one of: {listed}."
    examples = [quoted(text) for text in suggestions(feature, typed)[:3]]
    like = f"{', '.join(examples[:-1])} or {examples[-1]}" if len(examples) > 1 else "".join(examples)
    return f"Choose one of the {len(feature['values']):,} values the model knows, like {like}."


def quoted(text):
    """Return a value in quotes for a message, cut short if long: "North Hill Street"."""
    return f'"{text}"' if len(text) <= QUOTED_CHARACTERS else f'"{text[:QUOTED_CHARACTERS - 1]}…"'
