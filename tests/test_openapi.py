"""final_app.openapi: the document is valid OpenAPI 3.1 and says exactly what the app does."""
import jsonschema
import pytest
import referencing
import schemathesis

GOOD_ROW = [5.1, 3.5, 1.4, 0.2]
API_PATHS = {"/predict", "/health", "/model", "/openapi.json"}


@pytest.fixture
def document(client):
    """The OpenAPI document, as the app serves it."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def validator_for(document, schema_name):
    """Return a JSON Schema 2020-12 validator for one of the document's components."""
    registry = referencing.Registry().with_resource(
        "urn:openapi", referencing.Resource.from_contents(
            document, default_specification=referencing.jsonschema.DRAFT202012))
    schema = {"$ref": f"urn:openapi#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()  # raises on an invalid document
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_document_lists_exactly_the_api_routes(app, document):
    routes = {rule.rule for rule in app.url_map.iter_rules()} - {"/", "/static/<path:filename>"}
    assert set(document["paths"]) == routes == API_PATHS
    for path, operations in document["paths"].items():
        rule_methods = {method.lower() for rule in app.url_map.iter_rules() if rule.rule == path
                        for method in rule.methods} - {"head", "options"}
        assert set(operations) == rule_methods


def test_feature_bounds_come_from_the_metadata(document, trained):
    _, metadata = trained
    schemas = document["components"]["schemas"]
    positional = schemas["RowArray"]["prefixItems"]
    named = schemas["RowObject"]["properties"]
    assert list(named) == [feature["name"] for feature in metadata["features"]]
    for feature, by_position in zip(metadata["features"], positional):
        for schema in (by_position, named[feature["name"]]):
            assert (schema["type"], schema["minimum"], schema["maximum"]) == ("number", feature["min"], feature["max"])
    assert schemas["PredictRequest"]["properties"]["instances"]["maxItems"] == 10_000
    assert schemas["Prediction"]["properties"]["label"]["enum"] == metadata["classes"]


def test_limits_in_the_document_follow_the_settings():
    from final_app.app import create_app

    document = create_app({"MAX_BATCH_ROWS": 7}).test_client().get("/openapi.json").get_json()
    assert document["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["maxItems"] == 7


def test_predict_documents_every_status_it_answers(document):
    responses = document["paths"]["/predict"]["post"]["responses"]
    assert set(responses) == {"200", "400", "413", "415", "500"}


def test_request_example_is_valid_and_served(client, document):
    content = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    validator_for(document, "PredictRequest").validate(content["example"])
    response = client.post("/predict", json=content["example"])
    assert response.status_code == 200
    validator_for(document, "PredictResponse").validate(response.get_json())


@pytest.mark.parametrize("path, schema_name", [("/health", "Health"), ("/model", "ModelMetadata")])
def test_get_responses_follow_their_schemas(client, document, path, schema_name):
    response = client.get(path)
    assert response.status_code == 200
    validator_for(document, schema_name).validate(response.get_json())


@pytest.mark.parametrize("payload, valid", [
    ({"instances": [GOOD_ROW]}, True),
    ({"instances": [dict(zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], GOOD_ROW))]}, True),
    ({"instances": [[16, 9, 14, 5]]}, True),
    ({"instances": [[16, 9.01, 14, 5]]}, False),
    ({"instances": [GOOD_ROW + [1]]}, False),
    ({"instances": [[True, 1, 1, 1]]}, False),
    ({"instances": []}, False),
    ({"instances": [GOOD_ROW], "extra": 1}, False),
    ({"instances": [{"sepal_length": 1}]}, False),
    ([GOOD_ROW], False),
])
def test_schema_and_app_agree(client, document, payload, valid):
    schema_says = validator_for(document, "PredictRequest").is_valid(payload)
    response = client.post("/predict", json=payload)
    assert schema_says is valid
    assert (response.status_code == 200) is valid
    if not valid:
        validator_for(document, "Error").validate(response.get_json())


@pytest.mark.parametrize("method, path, options, status", [
    ("POST", "/predict", {"data": "x", "content_type": "text/plain"}, 415),
    ("GET", "/nowhere", {}, 404),
    ("GET", "/predict", {}, 405),
])
def test_error_bodies_follow_the_error_schema(client, document, method, path, options, status):
    response = client.open(path, method=method, **options)
    assert response.status_code == status
    validator_for(document, "Error").validate(response.get_json())
