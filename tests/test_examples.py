"""final_app serving lesson 08's penguin models: a DataFrame classifier with missing values and a
regressor on pandas category columns. Every answer is checked against the model's own predict and
predict_proba on the very DataFrame rows it was trained on; every bad value gets a 4xx naming it.
(The iris model, the default, has its own tests: test_app.py, test_validation.py, test_fuzz.py.)
"""
import json
import math
import pathlib

import jsonschema
import numpy as np
import pytest
import referencing
from hypothesis import given
from hypothesis import strategies as st

from conftest import api_schema, assert_same_answers, fuzz_settings
from final_app.app import create_app
from final_app.artifact import load_model_and_metadata

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "lessons" / "08_own_model" / "models"
NAMES = ["penguins", "penguin_mass"]


def training_frame(name, metadata):
    """The penguin rows with the columns and dtypes the model was trained on (missing values kept)."""
    from palmerpenguins import load_penguins

    penguins = load_penguins()
    columns = [feature["name"] for feature in metadata["features"]]
    if name == "penguin_mass":
        penguins = penguins.dropna(subset=["body_mass_g"])
        penguins = penguins.astype({column: "category" for column in ("species", "island", "sex")})
    return penguins[columns].reset_index(drop=True)


def json_rows(frame):
    """The frame's rows as JSON values: numbers, text, and null for a missing value."""
    return [[None if value is None or (isinstance(value, float) and math.isnan(value))
             else (value.item() if hasattr(value, "item") else value) for value in row]
            for row in frame.astype(object).itertuples(index=False)]


class Example:
    """One served example: its app, client, model, metadata and training rows."""

    def __init__(self, name):
        self.name = name
        self.app = create_app({"MODEL_DIR": str(EXAMPLES / name)})
        self.client = self.app.test_client()
        self.model, self.metadata = load_model_and_metadata(EXAMPLES / name)
        self.frame = training_frame(name, self.metadata)
        self.rows = json_rows(self.frame)
        self.names = [feature["name"] for feature in self.metadata["features"]]
        self.features = {feature["name"]: feature for feature in self.metadata["features"]}

    def usable(self):
        """The positions of training rows the schema accepts (no null where the model cannot take one)."""
        nullable = [feature["nullable"] for feature in self.metadata["features"]]
        return [index for index, row in enumerate(self.rows)
                if all(value is not None or ok for value, ok in zip(row, nullable))]

    def predict(self, instances):
        """POST instances to /predict; return the response."""
        return self.client.post("/predict", json={"instances": instances})


@pytest.fixture(scope="module", params=NAMES)
def example(request):
    """Each penguin example, served by create_app with MODEL_DIR."""
    return Example(request.param)


def assert_model_answers(example, response, positions):
    """Assert a /predict response equals the model's own answers on those training rows."""
    assert response.status_code == 200, response.get_data(as_text=True)
    predictions = response.get_json()["predictions"]
    X = example.frame.iloc[positions]
    assert len(predictions) == len(positions)
    if example.metadata["task"] == "regression":
        assert_same_answers(predictions, example.model.predict(X), None, example.metadata)
        return
    assert_same_answers(predictions, example.model.predict(X), example.model.predict_proba(X), example.metadata)
    assert all(list(p["probabilities"]) == example.metadata["classes"] for p in predictions)


# --- the saved schema ------------------------------------------------------------------------------

def test_penguins_schema_was_inferred_from_the_data_frame():
    _, metadata = load_model_and_metadata(EXAMPLES / "penguins")
    features = {feature["name"]: feature for feature in metadata["features"]}
    assert metadata["task"] == "classification" and metadata["input"] == "dataframe"
    assert metadata["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert features["island"] == {"name": "island", "type": "category", "dtype": "str",
                                  "values": ["Biscoe", "Dream", "Torgersen"], "nullable": False}
    assert features["sex"]["nullable"] is True  # missing in training, and the pipeline fills it
    assert features["body_mass_g"]["type"] == "number" and features["body_mass_g"]["unit"] == "g"
    assert "pandas" in metadata["versions"]


def test_penguin_mass_schema_keeps_the_category_dtype():
    _, metadata = load_model_and_metadata(EXAMPLES / "penguin_mass")
    features = {feature["name"]: feature for feature in metadata["features"]}
    assert metadata["task"] == "regression" and "classes" not in metadata
    assert features["species"]["dtype"] == "category"
    assert features["species"]["values"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert features["sex"]["nullable"] is True
    assert features["bill_length_mm"]["nullable"] is False  # no missing value among its training rows


# --- answers equal the model's own -----------------------------------------------------------------

def test_every_training_row_as_arrays(example):
    positions = example.usable()
    assert_model_answers(example, example.predict([example.rows[i] for i in positions]), positions)


def test_every_training_row_as_objects(example):
    positions = example.usable()
    objects = [dict(zip(example.names, example.rows[i])) for i in positions]
    assert_model_answers(example, example.predict(objects), positions)


def test_rows_with_missing_values_are_answered_with_null(example):
    positions = [i for i in example.usable() if None in example.rows[i]]
    assert positions, "the penguin table has rows with missing values"
    assert_model_answers(example, example.predict([example.rows[i] for i in positions]), positions)


def test_one_row_at_a_time_equals_the_batch(example):
    positions = example.usable()[:5]
    for position in positions:
        assert_model_answers(example, example.predict([example.rows[position]]), [position])


def test_answers_are_plain_json(example):
    response = example.predict([example.metadata["example"]])
    assert response.status_code == 200
    prediction = response.get_json()["predictions"][0]
    key = "value" if example.metadata["task"] == "regression" else "label"
    assert type(prediction[key]) in (str, float)


# --- bad values: a 400 that names the row, the field and what is expected ---------------------------

def bad_value_cases(metadata):
    """(field, value, words the message must contain) for each kind of mistake the schema allows."""
    cases = []
    for feature in metadata["features"]:
        name = feature["name"]
        if feature["type"] == "category":
            allowed = ", ".join(json.dumps(value) for value in feature["values"])
            cases += [(name, "nowhere", f"{name} must be one of {allowed}"),
                      (name, feature["values"][0].upper(), f"must be one of {allowed}"),
                      (name, 1, f"{name} must be one of"), (name, True, "got boolean true")]
        elif feature["type"] == "boolean":
            cases += [(name, "yes", f"{name} must be true or false"), (name, 1, "must be true or false, got 1")]
        elif feature["type"] == "integer":
            cases += [(name, 1.5, f"{name} must be a whole number"), (name, "5", "got string"),
                      (name, feature["max"] + 1,
                       f"{name} must be a whole number between {feature['min']} and {feature['max']}")]
        else:
            cases += [(name, "5", f"{name} must be a number"),
                      (name, feature["max"] + 1, f"{name} must be between {feature['min']} and {feature['max']}"),
                      (name, [1], "got array")]
        if not feature["nullable"]:
            cases.append((name, None, f"{name} must be"))
    return cases


def test_each_bad_value_is_refused_with_its_field_named(example):
    base = example.metadata["example"]
    for name, value, words in bad_value_cases(example.metadata):
        row = dict(zip(example.names, base), **{name: value})
        response = example.predict([row, dict(row)])
        assert response.status_code == 400, (name, value)
        message = response.get_json()["error"]["message"]
        assert message.startswith(f"instances[0].{name} "), message
        assert words in message, (words, message)


def test_null_for_a_feature_that_cannot_be_missing_says_so(example):
    strict = [feature for feature in example.metadata["features"] if not feature["nullable"]]
    for feature in strict:
        row = dict(zip(example.names, example.metadata["example"]), **{feature["name"]: None})
        response = example.predict([row])
        assert response.status_code == 400
        assert response.get_json()["error"]["message"].endswith(", got null")


def test_wrong_row_length_lists_the_features_in_order(example):
    response = example.predict([example.metadata["example"][:-1]])
    assert response.status_code == 400
    assert f"expected {len(example.names)} in this order: {', '.join(example.names)}" in \
        response.get_json()["error"]["message"]


# --- the form ----------------------------------------------------------------------------------------

def test_form_offers_a_choice_list_per_category(example):
    response = example.client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"<h1>{example.metadata['title']}</h1>" in html
    for feature in example.metadata["features"]:
        if feature["type"] == "category":
            assert f'<select name="{feature["name"]}" id="{feature["name"]}"' in html
            for value in feature["values"]:
                assert f'<option value="{value}">{value}</option>' in html
        else:
            assert f'name="{feature["name"]}" id="{feature["name"]}"' in html
        if feature["nullable"]:
            assert f'id="{feature["name"]}-hint"' in html


def test_form_predicts_like_the_model(example):
    position = next(i for i in example.usable() if None in example.rows[i])
    fields = {name: "" if value is None else str(value)
              for name, value in zip(example.names, example.rows[position])}
    response = example.client.post("/", data=fields)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    answer = example.model.predict(example.frame.iloc[[position]])[0]
    if example.metadata["task"] == "regression":
        assert f'<strong class="value">{answer:.6g}</strong>' in html
    else:
        assert f'<strong class="label">{answer}</strong>' in html


def test_form_names_a_wrong_choice_and_a_missing_required_field(example):
    fields = {name: "" for name in example.names}
    category = next(f for f in example.metadata["features"] if f["type"] == "category")
    fields[category["name"]] = "Atlantis"
    response = example.client.post("/", data=fields)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Choose one of: " + ", ".join(category["values"]) + "." in html
    for feature in example.metadata["features"]:
        if not feature["nullable"] and feature["type"] == "number":
            assert f'id="{feature["name"]}-error"' in html


# --- the OpenAPI document ------------------------------------------------------------------------------

def validator_for(document, schema_name):
    """A JSON Schema 2020-12 validator for one of the document's components."""
    registry = referencing.Registry().with_resource("urn:openapi", referencing.Resource.from_contents(
        document, default_specification=referencing.jsonschema.DRAFT202012))
    return jsonschema.Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{schema_name}"},
                                           registry=registry)


def test_openapi_describes_each_feature(example):
    document = example.client.get("/openapi.json").get_json()
    properties = document["components"]["schemas"]["RowObject"]["properties"]
    for feature in example.metadata["features"]:
        schema = properties[feature["name"]]
        if feature["type"] == "category":
            assert schema["enum"] == feature["values"] + ([None] if feature["nullable"] else [])
        else:
            assert schema["type"] == (["number", "null"] if feature["nullable"] else "number")
            assert (schema["minimum"], schema["maximum"]) == (feature["min"], feature["max"])
    answer = document["components"]["schemas"]["Prediction"]
    expected = ["value"] if example.metadata["task"] == "regression" else ["label", "probabilities"]
    assert answer["required"] == expected
    assert document["info"]["title"] == example.metadata["title"]


def test_openapi_example_and_answers_follow_the_document(example):
    document = example.client.get("/openapi.json").get_json()
    request_example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    validator_for(document, "PredictRequest").validate(request_example)
    response = example.client.post("/predict", json=request_example)
    assert response.status_code == 200
    validator_for(document, "PredictResponse").validate(response.get_json())
    positions = example.usable()[:50]
    response = example.predict([example.rows[i] for i in positions])
    validator_for(document, "PredictResponse").validate(response.get_json())
    validator_for(document, "ModelMetadata").validate(example.client.get("/model").get_json())


# --- fuzzing: never a 500, and the document and the validator agree --------------------------------------

values = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
          | st.sampled_from(["Biscoe", "Dream", "Torgersen", "male", "female", "Adelie", "Gentoo", "", 0, -0.0]))


@fuzz_settings(200)
@given(data=st.data())
def test_near_valid_rows_get_200_or_a_400_and_agree_with_the_document(example, data):
    document = example.client.get("/openapi.json").get_json()
    row = list(data.draw(st.sampled_from(example.rows)))
    for index in data.draw(st.lists(st.integers(0, len(row) - 1), max_size=3)):
        row[index] = data.draw(values)
    as_object = data.draw(st.booleans())
    payload = {"instances": [dict(zip(example.names, row)) if as_object else row]}
    response = example.client.post("/predict", json=payload)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    assert (response.status_code == 200) is validator_for(document, "PredictRequest").is_valid(payload)


@fuzz_settings(100)
@given(fields=st.dictionaries(st.sampled_from(["island", "sex", "species", "bill_length_mm", "body_mass_g"]),
                              st.text(max_size=10) | st.sampled_from(["Biscoe", "male", "Adelie", "40"])))
def test_form_answers_200_or_400(example, fields):
    assert example.client.post("/", data=fields).status_code in (200, 400)


def schemathesis_test(name):
    """A schemathesis test of one example's API against its own OpenAPI document."""
    schema = api_schema(create_app({"MODEL_DIR": str(EXAMPLES / name)}))

    @pytest.mark.serial
    @schema.parametrize()
    @fuzz_settings(60)
    def test(case):
        case.call_and_validate()

    return test


test_penguins_api_conforms_to_its_openapi_document = schemathesis_test("penguins")
test_penguin_mass_api_conforms_to_its_openapi_document = schemathesis_test("penguin_mass")


# --- the engine each one is served by ------------------------------------------------------------------

def test_the_species_classifier_is_served_by_its_float32_graph_and_the_mass_regressor_by_scikit_learn():
    species, mass = Example("penguins"), Example("penguin_mass")
    assert species.app.extensions["final_app.predictor"].engine.name == "onnx"
    engine = species.metadata["engine"]
    # onnxruntime has no double-precision kernel for the imputer, so float32 it is, and its tolerance.
    assert engine["precision"] == "float" and engine["checked"]["relative_tolerance"] == 1e-5
    assert 0 < engine["checked"]["largest_difference"] <= engine["checked"]["absolute_tolerance"]
    assert mass.app.extensions["final_app.predictor"].engine.name == "sklearn"
    assert "skl2onnx cannot convert it" in mass.metadata["engine"]["reason"]
