"""final_app.validation: the request checks on their own, without Flask."""
import json

import pytest

from final_app.validation import InstanceValidator, RequestError, feature_label, parse_form, parse_json

FEATURES = [
    {"name": "sepal_length", "unit": "cm", "min": 0, "max": 16},
    {"name": "sepal_width", "unit": "cm", "min": 0, "max": 9},
    {"name": "petal_length", "unit": "cm", "min": 0, "max": 14},
    {"name": "petal_width", "unit": "cm", "min": 0, "max": 5},
]
NAMES = [feature["name"] for feature in FEATURES]


@pytest.fixture
def validator():
    """A validator for the four iris features, with a small row limit."""
    return InstanceValidator(FEATURES, max_rows=5)


def test_list_and_object_rows_come_out_in_model_order(validator):
    rows = validator.rows({"instances": [[5.1, 3.5, 1.4, 0.2],
                                         {"petal_width": 2.3, "petal_length": 5.2, "sepal_width": 3, "sepal_length": 6.7}]})
    assert rows == [[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]]


def test_bounds_are_inclusive(validator):
    assert validator.rows({"instances": [[0, 0.0, 14, 5.0], [16, 9, 0, 0]]}) == [[0, 0.0, 14, 5.0], [16, 9, 0, 0]]


@pytest.mark.parametrize("payload, status, message", [
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
])
def test_invalid_payloads(validator, payload, status, message):
    with pytest.raises(RequestError) as error:
        validator.rows(payload)
    assert error.value.status == status
    assert message in error.value.message
    assert "\n" not in error.value.message and len(error.value.message) < 300


def test_first_bad_row_is_named(validator):
    with pytest.raises(RequestError, match=r"instances\[3\]\.sepal_length"):
        validator.rows({"instances": [[1, 1, 1, 1]] * 3 + [[-1, 1, 1, 1]]})


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


def test_feature_label():
    assert feature_label("sepal_length") == "Sepal length"


def test_parse_form_good():
    row, errors = parse_form({"sepal_length": " 5.1 ", "sepal_width": "3.5", "petal_length": "1e0",
                              "petal_width": "0"}, FEATURES)
    assert (row, errors) == ([5.1, 3.5, 1.0, 0.0], {})


def test_parse_form_reports_every_bad_field():
    row, errors = parse_form({"sepal_length": "", "sepal_width": "three", "petal_length": "-0.5"}, FEATURES)
    assert errors == {
        "sepal_length": "Enter the sepal length in cm.",
        "sepal_width": "Enter a number in cm, like 5.1.",
        "petal_length": "Enter a number from 0 to 14 cm.",
        "petal_width": "Enter the petal width in cm.",
    }
