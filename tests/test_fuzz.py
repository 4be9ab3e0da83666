"""Fuzzing: no input of any kind makes final_app answer 500 or show a traceback.

Hypothesis runs derandomized (the same examples every run) with a bounded number of examples;
schemathesis generates requests from the app's own OpenAPI document, valid and invalid.
"""
import json
import string

import jsonschema
import numpy as np
import pytest
import referencing
from hypothesis import given
from hypothesis import strategies as st

from conftest import api_schema, assert_same_answers, fuzz_settings
from final_app.app import create_app
from final_app.artifact import load_model
from final_app.validation import InstanceValidator, RequestError, parse_json, reject_constant

APP = create_app()
CLIENT = APP.test_client()
MODEL = load_model()  # the scikit-learn model the served engine was proven against
METADATA = CLIENT.get("/model").get_json()
DOCUMENT = CLIENT.get("/openapi.json").get_json()
FEATURES = METADATA["features"]
NAMES = [feature["name"] for feature in FEATURES]
API_STATUSES = {200, 400, 413, 415}


# --- strategies ---------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from([0, -0.0, 1e308, -1e-320, 2 ** 63, "5.1", "NaN", True, False]))
json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=6)
                           | st.dictionaries(st.text(max_size=12) | st.sampled_from(NAMES), children, max_size=6),
                           max_leaves=30)
# Values near the bounds, including just outside them, and a few of the wrong type.
near_bound_values = (st.floats(min_value=-2, max_value=20, allow_nan=False)
                     | st.integers(min_value=-2, max_value=20)
                     | st.sampled_from([0, 0.0, -0.0, 5, 9, 14, 16, 16.000001, -1e-9, None, True, "1"]))
rows_as_lists = st.lists(near_bound_values, min_size=3, max_size=5)
rows_as_objects = st.dictionaries(st.sampled_from(NAMES + ["petal_widht", "colour"]), near_bound_values,
                                  min_size=3, max_size=5)
near_valid_payloads = st.fixed_dictionaries(
    {"instances": st.lists(rows_as_lists | rows_as_objects, min_size=0, max_size=4)},
    optional={"extra": st.just(1)})


def valid_value(feature):
    """A strategy for one valid value of a feature: a number within its bounds."""
    return (st.floats(min_value=feature["min"], max_value=feature["max"], allow_nan=False)
            | st.integers(min_value=feature["min"], max_value=feature["max"]))


valid_rows = st.tuples(*[valid_value(feature) for feature in FEATURES]).map(list)
valid_payloads = st.lists(valid_rows | valid_rows.map(lambda row: dict(zip(NAMES, row))), min_size=1, max_size=20)

# Request bodies: JSON text of any value in the encodings json reads, the same with a few bytes
# spliced in somewhere, and plain arbitrary bytes.
json_texts = st.builds(lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only),
                       json_values | near_valid_payloads, st.booleans())
encoded_json = st.builds(lambda text, encoding: text.encode(encoding), json_texts,
                         st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"]))
spliced_json = st.builds(lambda body, at, extra: body[:at] + extra + body[at:], encoded_json,
                         st.integers(min_value=0, max_value=200), st.binary(min_size=1, max_size=3))
# Numbers as JSON text, around the edges of 64-bit integers and of doubles, valid or nearly.
number_texts = (st.integers(min_value=-2 ** 70, max_value=2 ** 70).map(str) | st.floats().map(repr)
                | st.integers(min_value=2 ** 63 - 2, max_value=2 ** 64 + 2).flatmap(
                    lambda n: st.sampled_from([str(n), str(-n)]))
                | st.text(string.digits, min_size=18, max_size=40).map(lambda digits: "-" + digits.lstrip("0"))
                | st.sampled_from(["1e400", "-1e400", "1e-400", "-1e-400", "-0", "-0.0", "1E5", "9007199254740993",
                                   "2.2250738585072011e-308", "1" * 30, "00", "1.", ".5", "+1", "-", "1e", "0x10"]))
bodies_with_numbers = st.builds(lambda a, b: f'{{"instances": [[1, 1, 1, {a}]], "x": [{b}]}}'.encode(),
                                number_texts, number_texts)
bodies = encoded_json | spliced_json | bodies_with_numbers | st.binary(max_size=300)


def request_schema_validator():
    """A JSON Schema validator for the PredictRequest the document declares."""
    registry = referencing.Registry().with_resource(
        "urn:openapi", referencing.Resource.from_contents(DOCUMENT, default_specification=referencing.jsonschema.DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": "urn:openapi#/components/schemas/PredictRequest"}, registry=registry)


REQUEST_SCHEMA = request_schema_validator()


def assert_json_error(response, statuses=API_STATUSES):
    """Assert an API response has an allowed status and, unless 200, the JSON error shape."""
    assert response.status_code in statuses, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    if response.status_code != 200:
        assert list(body) == ["error"] and list(body["error"]) == ["message"]
        message = body["error"]["message"]
        assert isinstance(message, str) and message and "Traceback" not in message
    return body


# --- the validator on its own -------------------------------------------------------------------

@fuzz_settings(300)
@given(payload=json_values | st.fixed_dictionaries({"instances": json_values}))
def test_validator_accepts_or_explains(payload):
    validator = InstanceValidator(METADATA, max_rows=10)
    try:
        rows = validator.rows(payload)
    except RequestError as error:
        assert error.status in (400, 413)
        assert error.message and "\n" not in error.message
        return
    for row in rows:
        assert len(row) == 4
        for value, feature in zip(row, FEATURES):
            assert type(value) in (int, float) and feature["min"] <= value <= feature["max"]


@fuzz_settings(400)
@given(payload=near_valid_payloads)
def test_schema_and_validator_agree(payload):
    validator = InstanceValidator(METADATA, max_rows=10_000)
    try:
        validator.rows(payload)
        accepted = True
    except RequestError:
        accepted = False
    assert accepted == REQUEST_SCHEMA.is_valid(payload)


def verdict(check, payload):
    """("refused", message, status) if check(payload) raises RequestError, else ("accepted", shape, bytes)."""
    try:
        X = np.array(check(payload), dtype=np.float64)
    except RequestError as error:
        return "refused", error.message, error.status
    return "accepted", X.shape, X.tobytes()


@fuzz_settings(200)
@given(payload=json_values | st.fixed_dictionaries({"instances": json_values}) | near_valid_payloads)
def test_matrix_and_rows_agree_on_any_payload(payload):
    validator = InstanceValidator(METADATA, max_rows=10)
    assert verdict(validator.matrix, payload) == verdict(validator.rows, payload), payload


# Every row a list of 4 values, the shape matrix() checks a column at a time: valid rows, valid
# rows with one value swapped for a doubtful one, and rows of values near the bounds.
doubtful_values = (st.booleans() | st.sampled_from([10 ** 400, -10 ** 400, 2 ** 64])  # numpy reads bools as 1.0 and 0.0
                   | st.sampled_from([None, "1", float("nan"), float("inf"), -1, -1e-9, 5.000000000000001, 16.5])
                   | near_bound_values | st.integers())
mostly_valid_rows = st.builds(lambda row, at, value: row[:at] + [value] + row[at + 1:],
                              valid_rows, st.integers(min_value=0, max_value=3), doubtful_values)
four_value_rows = st.lists(valid_rows | mostly_valid_rows | st.lists(near_bound_values, min_size=4, max_size=4),
                           min_size=1, max_size=5)


@fuzz_settings(200)
@given(instances=four_value_rows)
def test_matrix_and_rows_agree_on_rows_of_four_values(instances):
    validator = InstanceValidator(METADATA, max_rows=10)
    payload = {"instances": instances}
    assert verdict(validator.matrix, payload) == verdict(validator.rows, payload), payload


def parse_with_json_only(body):
    """The reference: parse_json as it was before orjson, ("value", v) or ("refused", message)."""
    if not body:
        return "refused", "the request body is empty"
    try:
        return "value", json.loads(body, parse_constant=reject_constant)
    except UnicodeDecodeError:
        return "refused", "the request body is not valid UTF-8 text"
    except RecursionError:
        return "refused", "the request body is nested too deeply"
    except ValueError as error:
        return "refused", f"the request body is not valid JSON: {error}"


def typed(value):
    """value with each number tagged by its type, so 2**64 and float(2**64) do not compare equal."""
    if type(value) is dict:
        return {key: typed(item) for key, item in value.items()}, list(value)
    if type(value) is list:
        return [typed(item) for item in value]
    if type(value) is float:
        return "float", value.hex()  # so -0.0 is not 0.0
    if type(value) is int and not -2**63 <= value < 2**64:
        return typed(float(value))  # orjson reads these as the nearest float (see parse_json)
    return type(value).__name__, value


@fuzz_settings(300)
@given(body=bodies)
def test_parse_json_agrees_with_the_json_module(body):
    try:
        found = "value", typed(parse_json(body))
    except RequestError as error:
        assert error.status == 400
        found = "refused", error.message
    expected = parse_with_json_only(body)
    if expected[0] == "value":
        expected = "value", typed(expected[1])
    if expected[1] == "the request body is empty":
        assert found[0] == "refused" and found[1].startswith(expected[1])
    else:
        assert found == expected, body


# --- the app through the test client ------------------------------------------------------------

@fuzz_settings(200)
@given(body=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/json", "application/json; charset=latin-1", "application/problem+json",
     "text/plain", "", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]))
def test_arbitrary_bytes_never_500(body, content_type):
    assert_json_error(CLIENT.post("/predict", data=body, headers={"Content-Type": content_type}))


@fuzz_settings(200)
@given(payload=json_values | st.fixed_dictionaries({"instances": json_values}) | near_valid_payloads)
def test_arbitrary_json_never_500(payload):
    body = json.dumps(payload)  # Python writes NaN and Infinity here: the app must refuse them
    assert_json_error(CLIENT.post("/predict", data=body, content_type="application/json"))


@fuzz_settings(100)
@given(rows=valid_payloads)
def test_valid_rows_equal_predict_proba(rows):
    response = CLIENT.post("/predict", json={"instances": rows})
    body = assert_json_error(response, {200})
    as_lists = [[row[name] for name in NAMES] if isinstance(row, dict) else row for row in rows]
    X = np.array(as_lists, dtype=float)
    assert_same_answers(body["predictions"], MODEL.predict(X), MODEL.predict_proba(X), METADATA)


@fuzz_settings(150)
@given(fields=st.dictionaries(st.sampled_from(NAMES + ["submit"]),
                              st.text(max_size=12) | st.sampled_from(["5.1", "1e3", "-0", "nan", "inf", "1_0", "٣"])))
def test_form_answers_200_or_400(fields):
    response = CLIENT.post("/", data=fields)
    assert response.status_code in (200, 400)
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert ('id="result"' in html) == (response.status_code == 200)


@fuzz_settings(150)
@given(path=st.text(alphabet=string.ascii_letters + string.digits + "/._-~%", max_size=30),
       method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]))
def test_any_path_and_method_never_500(path, method):
    path = "/" + path.lstrip("/")
    response = CLIENT.open(path, method=method)
    assert response.status_code < 500
    response.close()
    if response.status_code >= 400 and not (path == "/" or path.startswith("/static/")):
        assert response.mimetype == "application/json"


# --- schemathesis: requests generated from the OpenAPI document ---------------------------------

schema = api_schema(APP)


# schemathesis makes one test per API operation while collecting; under pytest-xdist only some of
# them run, so `make test` runs the tests marked serial in a second, single-process pass.
@pytest.mark.serial
@schema.parametrize()
@fuzz_settings(60)
def test_api_conforms_to_its_openapi_document(case):
    case.call_and_validate()
