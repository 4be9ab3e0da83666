"""final_app.validation: the request checks on their own, without Flask."""
import datetime
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from final_app.form import feature_label, parse_form
from final_app.validation import InstanceValidator, RequestError, parse_json, parse_time

FEATURES = [
    {"name": "sepal_length", "type": "number", "unit": "cm", "min": 0, "max": 16, "nullable": False},
    {"name": "sepal_width", "type": "number", "unit": "cm", "min": 0, "max": 9, "nullable": False},
    {"name": "petal_length", "type": "number", "unit": "cm", "min": 0, "max": 14, "nullable": False},
    {"name": "petal_width", "type": "number", "unit": "cm", "min": 0, "max": 5, "nullable": False},
]
NAMES = [feature["name"] for feature in FEATURES]
EXAMPLE_ROW = [5.1, 3.5, 1.4, 0.2]
METADATA = {"input": "array", "array_dtype": "float64", "features": FEATURES, "example": EXAMPLE_ROW}


@pytest.fixture
def validator():
    """A validator for the four iris features, with a small row limit."""
    return InstanceValidator(METADATA, max_rows=5)


def test_list_and_object_rows_come_out_in_model_order(validator):
    rows = validator.rows({"instances": [[5.1, 3.5, 1.4, 0.2],
                                         {"petal_width": 2.3, "petal_length": 5.2, "sepal_width": 3, "sepal_length": 6.7}]})
    assert rows == [[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]]


def test_bounds_are_inclusive(validator):
    assert validator.rows({"instances": [[0, 0.0, 14, 5.0], [16, 9, 0, 0]]}) == [[0, 0.0, 14, 5.0], [16, 9, 0, 0]]


INVALID_PAYLOADS = [
    ([], 400, "must be a JSON object"),
    ({}, 400, 'missing key "instances"'),
    ({"instances": [[1, 1, 1, 1]], "Instances": []}, 400, 'unexpected key "Instances"'),
    ({"instances": None}, 400, "got null"),
    ({"instances": "1,1,1,1"}, 400, "got string"),
    ({"instances": []}, 400, "send 1 to 5 rows"),
    ({"instances": [[1, 1, 1, 1]] * 6}, 413, "has 6 rows, the limit is 5"),
    ({"instances": [[1, 1, 1, 1], True]}, 400, "instances[1] must be an array of 4 numbers or an object"),
    ({"instances": [[]]}, 400, "instances[0] has 0 values"),
    ({"instances": [[1, 1, 1, float("nan")]]}, 400, "instances[0].petal_width must be between 0 and 5 cm, got NaN"),
    ({"instances": [[1, 1, float("inf"), 1]]}, 400, "petal_length must be between 0 and 14 cm, got Infinity"),
    ({"instances": [[1, -0.001, 1, 1]]}, 400, "sepal_width must be between 0 and 9 cm, got -0.001"),
    ({"instances": [[1, 1, 1, False]]}, 400, "petal_width must be a number, got boolean false"),
    ({"instances": [[1, 1, 1, {"cm": 1}]]}, 400, 'got object {"cm": 1}'),
    ({"instances": [[1, 1, 1, "x" * 100]]}, 400, 'got string "' + "x" * 36 + "..."),  # cut short
    ({"instances": [{}]}, 400, "missing sepal_length, sepal_width, petal_length, petal_width"),
    ({"instances": [dict(zip(NAMES, [1, 1, 1, 1]), **{"1": 2})]}, 400, 'unexpected "1"'),
    ({"instances": [[1, 1, 1, 10 ** 5000]]}, 400, "petal_width must be between 0 and 5 cm"),
    ({"instances": [[1, 1, 1, 10 ** 400]]}, 400, "petal_width must be between 0 and 5 cm, got 1000"),
    ({"instances": [[1, 1, 1, 1], [2 ** 64, 1, 1, 1]]}, 400, "instances[1].sepal_length must be between 0 and 16 cm"),
    ({"instances": [[True, True, True, True]]}, 400, "sepal_length must be a number, got boolean true"),
    ({"instances": [[1, 1, 1, 1], [1.0, 2.0, 3.0, True]]}, 400,
     "instances[1].petal_width must be a number, got boolean true"),
    ({"instances": [[1, 1, 1, 1], [1, 1, 1, None]]}, 400, "instances[1].petal_width must be a number, got null"),
    ({"instances": [[1, 1, 1, 1], [1, 1, 1]]}, 400, "instances[1] has 3 values"),
    ({"instances": [[1, 1, 1, 1], [1, 1, 1, 1, 1]]}, 400, "instances[1] has 5 values"),
    ({"instances": [[16.000000000000004, 1, 1, 1]]}, 400, "sepal_length must be between 0 and 16 cm"),
    ({"instances": [[1, 1, 1, 1], [1, 1, 1, float("-inf")]]}, 400, "instances[1].petal_width must be between"),
]


@pytest.mark.parametrize("payload, status, message", INVALID_PAYLOADS)
def test_invalid_payloads(validator, payload, status, message):
    with pytest.raises(RequestError) as error:
        validator.rows(payload)
    assert error.value.status == status
    assert message in error.value.message
    assert "\n" not in error.value.message and len(error.value.message) < 300


def test_first_bad_row_is_named(validator):
    with pytest.raises(RequestError, match=r"instances\[3\]\.sepal_length"):
        validator.rows({"instances": [[1, 1, 1, 1]] * 3 + [[-1, 1, 1, 1]]})


# --- matrix(): the same verdicts as rows(), as a float64 array -----------------------------------

@pytest.mark.parametrize("instances", [
    [[5.1, 3.5, 1.4, 0.2]],
    [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [4.9, 2.5, 4.5, 1.7]],
    [[5, 3, 1, 0], [6, 3, 5, 2]],  # integers
    [[5, 3.5, 1, 0.2], [6.7, 3, 5.2, 2]],  # integers and floats mixed in a row
    [[0, 0.0, 14, 5.0], [16, 9, 0, 0], [16.0, 9.0, 14.0, 5.0]],  # the exact bounds
    [[-0.0, 0, 0.0, 5e-324]],
    [dict(zip(NAMES, [5.1, 3.5, 1.4, 0.2]))],
    [{"petal_width": 2.3, "petal_length": 5.2, "sepal_width": 3, "sepal_length": 6.7}],  # any key order
    [[5.1, 3.5, 1.4, 0.2], {"petal_width": 2.3, "petal_length": 5.2, "sepal_width": 3, "sepal_length": 6.7},
     [1, 2, 3, 4]],
    [[1, 1, 1, 1]] * 5,  # the row limit
])
def test_matrix_equals_rows_as_an_array(validator, instances):
    payload = {"instances": instances}
    X = validator.matrix(payload)
    expected = np.array(validator.rows(payload), dtype=np.float64)
    assert X.dtype == np.float64 and X.shape == (len(instances), 4)
    assert X.tobytes() == expected.tobytes()  # bit for bit, so -0.0 stays -0.0


@pytest.mark.parametrize("payload, status, message", INVALID_PAYLOADS)
def test_matrix_refuses_what_rows_refuses_with_the_same_message(validator, payload, status, message):
    with pytest.raises(RequestError) as from_rows:
        validator.rows(payload)
    with pytest.raises(RequestError) as from_matrix:
        validator.matrix(payload)
    assert from_matrix.value.message == from_rows.value.message
    assert from_matrix.value.status == from_rows.value.status == status
    assert message in from_matrix.value.message


def test_matrix_says_a_huge_integer_is_out_of_range(validator):
    with pytest.raises(RequestError) as error:
        validator.matrix({"instances": [[1, 1, 1, 1], [1, 10 ** 400, 1, 1]]})  # too large for a float
    assert error.value.message.startswith("instances[1].sepal_width must be between 0 and 9 cm, got 1000000")
    assert error.value.status == 400


def test_matrix_refuses_booleans_that_numpy_would_take_as_numbers(validator):
    payload = {"instances": [[1.0, 1.0, 1.0, 1.0], [True, 1.0, 1.0, 1.0]]}
    assert np.array(payload["instances"], dtype=np.float64)[1, 0] == 1.0  # what numpy alone would do
    with pytest.raises(RequestError, match=r"^instances\[1\]\.sepal_length must be a number, got boolean true$"):
        validator.matrix(payload)


def test_matrix_names_the_first_bad_row(validator):
    with pytest.raises(RequestError, match=r"instances\[3\]\.sepal_length"):
        validator.matrix({"instances": [[1, 1, 1, 1]] * 3 + [[-1, 1, 1, 1]]})


def test_a_value_nested_as_deep_as_the_parser_allows_is_explained_not_a_crash(validator):
    deep = []
    for _ in range(1000):  # parse_json reads bodies up to 1024 levels deep (orjson's limit)
        deep = [deep]
    for check in (validator.rows, validator.matrix):
        with pytest.raises(RequestError, match=r"instances\[0\]\.petal_width must be a number, got array"):
            check({"instances": [[1, 1, 1, deep]]})


# --- parse_json ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    (b"", "body is empty"),
    (b"{", "not valid JSON: Expecting property name"),
    (b"NaN", "NaN is not a JSON number"),
    (b"\xc3\x28", "not valid UTF-8"),
    (b"[" * 100_000, "nested too deeply"),
    (b"1" * 5000, "not valid JSON"),  # Python refuses to turn over 4300 digits into an int
])
def test_parse_json_refusals(body, message):
    with pytest.raises(RequestError) as error:
        parse_json(body)
    assert error.value.status == 400
    assert message in error.value.message


def test_parse_json_accepts_utf8_with_and_without_bom():
    payload = {"instances": [[1, 2, 3, 4]], "note": "é"}
    assert parse_json(json.dumps(payload, ensure_ascii=False).encode()) == payload
    assert parse_json(b"\xef\xbb\xbf" + json.dumps(payload).encode()) == payload


def same_value(a, b):
    """True if two parsed JSON values are equal with the same types: 1 is not 1.0, 0.0 is not -0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(same_value(a[key], b[key]) for key in a)
    if type(a) is list:
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if type(a) is float:
        return a.hex() == b.hex() if a == a else b != b
    return a == b


PAYLOAD = {"instances": [[5.1, 3.5, 1.4, 0.2], {"sepal_length": 1}], "note": "é ✓ \U0001f337"}


@pytest.mark.parametrize("body", [
    json.dumps(PAYLOAD).encode(),
    json.dumps(PAYLOAD, ensure_ascii=False).encode(),
    b"\xef\xbb\xbf" + json.dumps(PAYLOAD, ensure_ascii=False).encode(),  # UTF-8 with a BOM
    json.dumps(PAYLOAD, ensure_ascii=False).encode("utf-16"),  # with a BOM
    json.dumps(PAYLOAD, ensure_ascii=False).encode("utf-16-le"),  # json tells it by the zero bytes
    json.dumps(PAYLOAD, ensure_ascii=False).encode("utf-16-be"),
    json.dumps(PAYLOAD, ensure_ascii=False).encode("utf-32"),
    b"18446744073709551615",  # 2**64 - 1, the largest integer orjson reads as one
    b"18446744073709551616",  # 2**64: equal to float(2**64) under ==, so compared by type too
    b"-9223372036854775809",  # -2**63 - 1
    b"100000000000000000000000000000",
    b'{"instances": [[1, 1, 1, 123456789012345678901234567890]]}',
    b'{"a": 1, "b": 2, "a": 3}',  # duplicate keys: the last one wins, in the first one's place
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"-1e-400",
    b"-0.0",
    b"-0",
    b"0.1",
    b"2.2250738585072011e-308",
    b"9007199254740993.0",
    b' \t\r\n{"instances": []} \n',
    b'"\\ud800"',  # a lone surrogate escape: json reads it, orjson does not
    b'"\xed\xa0\x80"',  # the same surrogate encoded: json decodes bytes with "surrogatepass"
])
def test_parse_json_gives_what_json_loads_gives(body):
    assert same_value(parse_json(body), as_orjson_reads(json.loads(body)))


def as_orjson_reads(value):
    """value with each integer past 64 bits turned into the nearest float, as orjson reads it.

    The one documented difference from the json module (see parse_json): such a number is out
    of every feature's range either way, only an error message shows it as a float.
    """
    if type(value) is dict:
        return {key: as_orjson_reads(item) for key, item in value.items()}
    if type(value) is list:
        return [as_orjson_reads(item) for item in value]
    if type(value) is int and not -2**63 <= value < 2**64:
        return float(value)
    return value


def test_integers_past_64_bits_arrive_as_floats_and_are_still_refused_with_row_and_field(client):
    assert parse_json(b"18446744073709551616") == 2**64
    assert type(parse_json(b"18446744073709551616")) is float
    response = client.post("/predict", data=b'{"instances": [[1, 1, 1, 18446744073709551616]]}',
                           content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == (
        "instances[0].petal_width must be between 0 and 5 cm, got 1.8446744073709552e+19")


def test_deep_nesting_is_read_to_1024_levels_and_refused_with_a_message_past_that(client):
    for depth in (990, 1010, 1020):  # json alone stopped at about 1000 levels; orjson at 1024
        body = b'{"instances": [[1, 1, 1, ' + b"[" * depth + b"]" * depth + b"]]}"
        response = client.post("/predict", data=body, content_type="application/json")
        assert response.status_code == 400, depth
        assert "instances[0].petal_width must be a number, got array" in response.get_json()["error"]["message"]
    with pytest.raises(RequestError) as error:
        parse_json(b"[" * 1100 + b"]" * 1100)
    assert error.value.message == "the request body is nested too deeply"


@pytest.mark.parametrize("body, message", [
    (b"NaN", "the request body is not valid JSON: NaN is not a JSON number: send finite numbers only"),
    (b"-Infinity", "the request body is not valid JSON: -Infinity is not a JSON number: send finite numbers only"),
    (b'{"instances": [[1, 1, 1, Infinity]]}',
     "the request body is not valid JSON: Infinity is not a JSON number: send finite numbers only"),
    (b"\xc3\x28", "the request body is not valid UTF-8 text"),
    (b'{"instances": "\xff"}', "the request body is not valid UTF-8 text"),
    (b'{"instances": [[1, 1, 1, 1]]', "the request body is not valid JSON: Expecting ',' delimiter: "
                                      "line 1 column 29 (char 28)"),
])
def test_parse_json_refusal_messages_are_unchanged(body, message):
    with pytest.raises(RequestError) as error:
        parse_json(body)
    assert error.value.message == message
    assert error.value.status == 400


def test_feature_label():
    assert feature_label("sepal_length") == "Sepal length"


def test_parse_form_good():
    row, errors = parse_form({"sepal_length": " 5.1 ", "sepal_width": "3.5", "petal_length": "1e0",
                              "petal_width": "0"}, FEATURES, EXAMPLE_ROW)
    assert (row, errors) == ([5.1, 3.5, 1.0, 0.0], {})


def test_parse_form_reports_every_bad_field():
    row, errors = parse_form({"sepal_length": "", "sepal_width": "three", "petal_length": "-0.5"}, FEATURES,
                             EXAMPLE_ROW)
    assert errors == {
        "sepal_length": "Enter the sepal length in cm.",
        "sepal_width": "Enter a number in cm, like 3.5.",
        "petal_length": "Enter a number from 0 to 14 cm.",
        "petal_width": "Enter the petal width in cm.",
    }


# --- messages stay short, whatever the schema -------------------------------------------------------

def long_schema_validator():
    """A validator for 40 long-named numbers, a category of 3,876 sentences, a text and a date."""
    features = [{"name": f"measurement_number_{index}_in_the_lab", "type": "number", "min": 0, "max": 1,
                 "nullable": False} for index in range(40)]
    sentences = [f"A long description of a flat, number {index}, with a garden and a view" for index in range(3876)]
    features += [{"name": "description", "type": "category", "values": sentences, "nullable": False},
                 {"name": "notes", "type": "text", "max_length": 2000, "nullable": True},
                 {"name": "listed_on", "type": "date", "min": "2010-01-01", "max": "2031-12-31", "nullable": False}]
    example = [0.5] * 40 + [sentences[0], "", "2020-01-01"]
    return InstanceValidator({"input": "dataframe", "features": features, "example": example}, max_rows=10_000)


SHORT_MESSAGE_CASES = {
    "an unseen category value": {"description": "a description never seen in training"},
    "a number for a category": {"description": 12345},
    "a number for text": {"notes": 5},
    "text over its length": {"notes": "x" * 5000},
    "an impossible date": {"listed_on": "2024-02-30"},
    "a date out of range": {"listed_on": "1999-12-31"},
    "a huge string for a date": {"listed_on": "2024-01-01" * 1000},
}


@pytest.mark.parametrize("change", SHORT_MESSAGE_CASES.values(), ids=SHORT_MESSAGE_CASES.keys())
def test_a_bad_value_gets_a_short_message_naming_its_field(change):
    validator = long_schema_validator()
    row = dict(zip(validator.names, validator.metadata["example"]), **change)
    with pytest.raises(RequestError) as error:
        validator.rows({"instances": [row, dict(row)]})
    field = next(iter(change))
    assert error.value.message.startswith(f"instances[0].{field} must be ")
    assert len(error.value.message) <= 300, error.value.message


def test_a_category_message_gives_a_few_values_and_the_count():
    validator = long_schema_validator()
    row = dict(zip(validator.names, validator.metadata["example"]), description="unseen")
    with pytest.raises(RequestError) as error:
        validator.rows({"instances": [row]})
    assert error.value.message == (
        'instances[0].description must be one of 3876 values such as "A long description of a fla...", '
        '"A long description of a fla...", "A long description of a fla..." (GET /model lists them all), '
        'got string "unseen"')


@pytest.mark.parametrize("payload", [
    {"instances": [[1, 2]]},
    {"instances": [{"x": 1}]},
    {"instances": [{f"unknown_{index}": 1 for index in range(100)}]},
    {"instances": ["row"]},
    {},
    [],
])
def test_shape_messages_stay_short_with_many_features(payload):
    with pytest.raises(RequestError) as error:
        long_schema_validator().rows(payload)
    assert len(error.value.message) <= 300, error.value.message
    assert "GET /model lists them" in error.value.message or "[...]" in error.value.message


@pytest.mark.parametrize("value, expected", [
    ("2024-05-01", datetime.date(2024, 5, 1)),
    ("2024-05-01T12:30", None), ("20240501", None), ("2024-5-1", None), ("２０２４-05-01", None),
    ("2024-02-29", datetime.date(2024, 2, 29)), ("2023-02-29", None),
])
def test_a_date_is_yyyy_mm_dd_and_exists(value, expected):
    assert parse_time({"type": "date"}, value) == expected


@pytest.mark.parametrize("value, timezone, expected", [
    ("2024-05-01T12:30:00", None, datetime.datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01 12:30", None, datetime.datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01", None, datetime.datetime(2024, 5, 1)),
    ("2024-05-01T12:30:00+02:00", None, None),  # an offset where the column has none
    ("2024-05-01T12:30:00", "Europe/Paris", None),  # none where the column has one
    ("2024-05-01T10:30:00Z", "Europe/Paris",
     datetime.datetime(2024, 5, 1, 10, 30, tzinfo=datetime.timezone.utc)),
    ("2024-05-01T12:30:00.123456789+02:00", "UTC", None),  # more than microseconds
    ("2024-05-01T24:30:00", None, None),
])
def test_a_date_time_is_iso_8601_with_an_offset_where_the_column_has_one(value, timezone, expected):
    assert parse_time({"type": "datetime", "timezone": timezone}, value) == expected


# --- a body's values are counted before it is parsed ------------------------------------------------

LIMIT = 100


@pytest.mark.parametrize("body, too_many", [
    (b"[" + b"[]," * 200 + b"[]]", True),  # 401 arrays
    (b"[" + b'"",' * 200 + b'""]', True),  # 201 strings
    (b"[" + b"1," * 200 + b"1]", True),
    (b"[" * 101, True),
    (b"[" * 100, False),  # no longer than the limit: nothing to count
    (b"[" + b"[]," * 40 + b"[]]", False),
    (b'["' + b"a, [b], {c}, " * 1000 + b'"]', False),  # the commas and brackets are inside a string
    (b'["a\\", [b] ' + b"," * 50 + b'"]', False),  # an escaped quote does not end the string
    (b'["unterminated' + b"," * 500, False),  # not JSON: left to the parser, which says where
])
def test_too_many_values_counts_outside_strings(body, too_many):
    from final_app.validation import too_many_values

    assert too_many_values(body, LIMIT) is too_many


def test_a_body_of_empty_arrays_is_refused_before_it_is_parsed():
    validator = InstanceValidator(METADATA, max_rows=10_000)
    body = b'{"instances": [' + b"[]," * 1_000_000 + b"[]]}"
    with pytest.raises(RequestError) as error:
        validator.parse(body)
    assert error.value.status == 413
    assert error.value.message == ("the request body holds more values than 10000 rows of 4 features: "
                                   "split the rows into smaller requests")
    # The limit leaves room: 10,000 rows of text full of commas and brackets still parse.
    text = InstanceValidator({"input": "dataframe", "example": ["x"], "features": [
        {"name": "note", "type": "text", "max_length": 500, "nullable": False}]}, max_rows=10_000)
    rows = [{"note": "[a], {b}, c, d, e, f, g, h, i, j"} for _ in range(10_000)]
    assert text.parse(json.dumps({"instances": rows}).encode())["instances"] == rows


# --- a column at a time: the same rows and messages as a row at a time ------------------------------

EVERY_KIND = [
    {"name": "size", "type": "number", "min": -1.5, "max": 2 ** 53, "nullable": True},
    {"name": "rooms", "type": "integer", "min": 0, "max": 9, "nullable": False},
    {"name": "lift", "type": "boolean", "nullable": True},
    {"name": "plan", "type": "category", "values": ["basic", "pro", 3, True], "nullable": True},
    {"name": "note", "type": "text", "max_length": 5, "nullable": False},
]
EVERY_KIND_NAMES = [feature["name"] for feature in EVERY_KIND]
# For each feature, values it takes (most of the time, so that whole requests pass), then near misses.
GOOD_VALUES = [[None, 0, -1.5, 2.5, 2 ** 53, 7], [0, 9, 3], [None, True, False], [None, "basic", "pro", 3, True],
               ["", "abc", "12345"]]
ODD_VALUES = [None, 0, 1, -1, 10, 1.0, 2.5, -0.0, -1.6, 2 ** 53 + 1, 10 ** 30, True, False, 1, "basic", "Basic", "",
              "123456", 3, 3.0, [], {}, "2020-06-01"]


# How a row is sent: mostly an array or an object of its values, now and then an odd shape.
SHAPES = ["array", "object"] * 4 + ["short array", "renamed key", "missing key", "extra key"]


def odd_rows():
    """Rows of mostly good values, with a near miss now and then; some as arrays, some as objects."""
    row = st.tuples(*[st.one_of(st.sampled_from(GOOD_VALUES[index]), st.sampled_from(GOOD_VALUES[index]),
                                st.sampled_from(GOOD_VALUES[index]), st.sampled_from(ODD_VALUES))
                      for index in range(len(EVERY_KIND))])
    return st.lists(st.tuples(row, st.sampled_from(SHAPES)), min_size=1, max_size=6)


def sent_as(values, shape):
    """One row's values as a request sends them, in the given shape."""
    row = dict(zip(EVERY_KIND_NAMES, values))
    if shape == "renamed key":  # as many keys as names, one of them not a name
        row["Size"] = row.pop("size")
    elif shape == "missing key":
        del row["note"]
    elif shape == "extra key":
        row["colour"] = "red"
    elif shape != "object":
        return list(values)[:-1] if shape == "short array" else list(values)
    return row


def one_at_a_time(validator, instances):
    """The rows a row at a time (the reference), or the error message."""
    try:
        return [validator.row(row, index) for index, row in enumerate(instances)]
    except RequestError as error:
        return error.message


def checked(validator, instances):
    """The rows as checked_rows gives them (a column at a time first), or the error message."""
    try:
        return validator.checked_rows(instances)
    except RequestError as error:
        return error.message


@given(odd_rows())
@settings(max_examples=500, deadline=None)
def test_a_column_at_a_time_accepts_and_refuses_exactly_what_a_row_at_a_time_does(rows):
    validator = InstanceValidator({"input": "dataframe", "features": EVERY_KIND, "example": None}, max_rows=10)
    instances = [sent_as(values, shape) for values, shape in rows]
    expected = one_at_a_time(validator, instances)
    found = checked(validator, instances)
    assert found == expected
    if isinstance(expected, list):  # the same values of the same types (1 and 1.0 and True are ==)
        assert [[type(value) for value in row] for row in found] == [[type(value) for value in row] for row in expected]


def test_plain_columns_skip_the_row_at_a_time_check(monkeypatch):
    validator = InstanceValidator({"input": "dataframe", "features": EVERY_KIND, "example": None}, max_rows=10)
    monkeypatch.setattr(validator, "row", lambda row, index: pytest.fail("checked a row at a time"))
    rows = [[1.5, 3, True, "pro", "abc"], [None, 0, None, 3, ""]]
    assert validator.checked_rows(rows) == rows
    assert validator.checked_rows([dict(zip(EVERY_KIND_NAMES, row)) for row in rows]) == rows


def test_a_date_column_is_always_checked_a_row_at_a_time():
    features = [{"name": "seen", "type": "date", "min": "2020-01-01", "max": "2020-12-31", "nullable": False}]
    validator = InstanceValidator({"input": "dataframe", "features": features, "example": None}, max_rows=10)
    assert validator.columns_if_plain([["2020-06-01"]]) is None
    assert validator.checked_rows([["2020-06-01"]]) == [[datetime.date(2020, 6, 1)]]
