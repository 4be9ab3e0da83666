"""Fuzzing with final_app's public options on: the OpenAPI document stays true when API_KEYS,
CORS_ORIGINS, REQUEST_IDS and PREDICTION_LOG are set, and schemathesis's requests, sent with a key,
never get a 500 or an answer the document does not describe.
"""
import os

import pytest
import schemathesis

from conftest import fuzz_settings
from final_app.app import create_app

KEY = "fuzz-key-0123456789abcdefABCDEF"
ORIGIN = "https://front-end.example"
OPTIONS = {"API_KEYS": KEY, "CORS_ORIGINS": ORIGIN, "REQUEST_IDS": "on", "PREDICTION_LOG": "on"}


def app_with_options():
    """final_app built as gunicorn builds it, with every option on (the environment put back after)."""
    saved = {name: os.environ.get(name) for name in OPTIONS}
    os.environ.update(OPTIONS)
    try:
        return create_app()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


APP = app_with_options()
DOCUMENT = APP.test_client().get("/openapi.json").get_json()
# A browser page on the listed origin, behind Heroku's router: its key, its origin, an id.
CLIENT_HEADERS = {"Authorization": f"Bearer {KEY}", "Origin": ORIGIN,
                  "X-Request-ID": "fuzz-request-id-0123456789"}


def test_the_document_says_predict_needs_the_key_and_answers_401():
    schemathesis.openapi.from_dict(DOCUMENT).validate()  # raises on an invalid document
    scheme = DOCUMENT["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    operation = DOCUMENT["paths"]["/predict"]["post"]
    assert operation["security"] == [{"apiKey": []}]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "413", "415", "500"}
    assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    # The model's metadata tells about the training data: it needs the key too.
    assert DOCUMENT["paths"]["/model"]["get"]["security"] == [{"apiKey": []}]
    assert set(DOCUMENT["paths"]["/model"]["get"]["responses"]) == {"200", "401", "403"}
    for path, operations in DOCUMENT["paths"].items():
        for method, described in operations.items():
            assert "security" not in described or path in ("/predict", "/model"), f"{method} {path} stays open"


def test_the_401_answers_are_what_the_document_says():
    client = APP.test_client()
    unauthorized = DOCUMENT["paths"]["/predict"]["post"]["responses"]["401"]
    for headers in ({}, {"Authorization": "Bearer not-the-key-0123456789"}, {"Authorization": "Basic eDp5"}):
        response = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, headers=headers)
        assert response.status_code == 401
        assert set(unauthorized["headers"]) | {"X-Request-ID"} <= set(response.headers.keys())
        assert list(response.get_json()) == ["error"]


def api_schema_with_keys(app):
    """schemathesis's view of app's document, as conftest.api_schema, where 401 also rejects a request.

    Without the Authorization header a request breaks the document's security requirement, and
    the app refuses it with 401, as documented: a right answer to that invalid request too.
    """
    config = schemathesis.config.SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": ["400", "401", "405", "413", "415"]}}})
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=config)


schema = api_schema_with_keys(APP)


# One test per API operation, as in test_fuzz.py: run in the single-process pass (make test).
@pytest.mark.serial
@schema.parametrize()
@fuzz_settings(40)
def test_api_with_the_options_on_conforms_to_its_openapi_document(case):
    response = case.call_and_validate(headers=CLIENT_HEADERS)
    assert response.status_code < 500
    # schemathesis gives the headers with lowercase names, each with a list of values.
    assert response.headers["x-request-id"] == [CLIENT_HEADERS["X-Request-ID"]]
    assert response.headers["access-control-allow-origin"] == [ORIGIN]


def test_the_403_over_plain_http_is_what_the_document_says():
    client = APP.test_client()
    for path, method in (("/predict", "post"), ("/model", "get")):
        response = getattr(client, method)(path, json={"instances": [[5.1, 3.5, 1.4, 0.2]]} if method == "post" else None,
                                           headers={"X-Forwarded-Proto": "http"})
        assert response.status_code == 403
        assert "403" in DOCUMENT["paths"][path][method]["responses"]
        assert response.get_json()["error"]["message"].startswith("this API takes requests over https only")
