"""Build the OpenAPI 3.1 document for the JSON API from the model's metadata and the limits in use."""
import copy
import json

ERROR_EXAMPLE = {"error": {"message": '"instances" is empty: send 1 to 10000 rows'}}


def error_response(description):
    """Return an OpenAPI response object for an error: {"error": {"message": "..."}}."""
    return {
        "description": description,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}, "example": ERROR_EXAMPLE}},
    }


def json_response(description, schema_name):
    """Return an OpenAPI response object whose JSON body follows a named schema."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}


# A date and time without a UTC offset (JSON Schema's "date-time" format requires one).
LOCAL_DATE_TIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?$"


def value_schema(feature):
    """Return the JSON schema of one feature's value: its type, range or allowed values, null or not."""
    kind, nullable = feature["type"], feature.get("nullable", False)
    if kind == "category":
        schema = {"enum": feature["values"] + ([None] if nullable else [])}
    elif kind in ("text", "date", "datetime"):
        schema = {"type": ["string", "null"] if nullable else "string"}
        if kind == "text":
            schema["maxLength"] = feature["max_length"]
        elif kind == "date":
            schema["format"] = "date"
        elif feature.get("timezone"):
            schema["format"] = "date-time"
        else:
            schema["pattern"] = LOCAL_DATE_TIME
    else:
        schema = {"type": [kind, "null"] if nullable else kind}
        if kind in ("number", "integer"):
            schema.update(minimum=feature["min"], maximum=feature["max"])
    unit = f" in {feature['unit']}" if feature.get("unit") else ""
    between = f", from {feature['min']} to {feature['max']}" if kind in ("date", "datetime") else ""
    zone = ""
    if kind == "datetime":
        zone = f" (with a UTC offset; the model reads it in {feature['timezone']})" if feature.get("timezone") \
            else " (local time, without a UTC offset)"
    schema["description"] = feature["name"] + unit + zone + between + ("; null when not known" if nullable else "")
    return schema


def row_schemas(features):
    """Return the two accepted row shapes: an array in model order, and an object with named fields."""
    names = [feature["name"] for feature in features]
    row_array = {
        "type": "array",
        "description": "the feature values in this order: " + ", ".join(names),
        "prefixItems": [value_schema(feature) for feature in features],
        "items": False,
        "minItems": len(features),
        "maxItems": len(features),
    }
    row_object = {
        "type": "object",
        "properties": {feature["name"]: value_schema(feature) for feature in features},
        "required": names,
        "additionalProperties": False,
    }
    return row_array, row_object


def probability_keys(classes):
    """Return the JSON object keys of the probabilities: each class name as json.dumps writes a key.

    JSON keys are text: json.dumps turns a class named 1 into "1" by itself; orjson refuses it.
    """
    return [name if isinstance(name, str) else json.dumps(name) for name in classes]


def prediction_schema(metadata):
    """Return the schema of one prediction: a label (and probabilities), or a value."""
    if metadata["task"] == "regression":
        return {"type": "object", "required": ["value"], "additionalProperties": False,
                "properties": {"value": {"type": "number", "description": f"the predicted {metadata['target']}"}}}
    classes = metadata["classes"]
    properties = {"label": {"enum": classes, "description": f"the predicted {metadata['target']}"}}
    if metadata.get("probabilities"):
        keys = probability_keys(classes)
        probability = {"type": "number", "minimum": 0, "maximum": 1}
        properties["probabilities"] = {"type": "object", "required": keys, "additionalProperties": False,
                                       "properties": {key: probability for key in keys},
                                       "description": "the probability of each class"}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def schemas(metadata, max_rows):
    """Return the components/schemas section."""
    row_array, row_object = row_schemas(metadata["features"])
    return {
        "RowArray": row_array,
        "RowObject": row_object,
        "PredictRequest": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {"instances": {
                "type": "array", "minItems": 1, "maxItems": max_rows,
                "items": {"oneOf": [{"$ref": "#/components/schemas/RowArray"},
                                    {"$ref": "#/components/schemas/RowObject"}]}}},
        },
        "Prediction": prediction_schema(metadata),
        "PredictResponse": {
            "type": "object",
            "required": ["model_version", "predictions"],
            "additionalProperties": False,
            "properties": {"model_version": {"type": "string"},
                           "predictions": {"type": "array", "minItems": 1, "maxItems": max_rows,
                                           "items": {"$ref": "#/components/schemas/Prediction"}}},
        },
        "Health": {
            "type": "object",
            "required": ["status", "model_version"],
            "additionalProperties": False,
            "properties": {"status": {"const": "ok"}, "model_version": {"type": "string"}},
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["model_version", "task", "input", "features", "metrics", "sha256", "versions"],
            "properties": {
                "model_version": {"type": "string"},
                "title": {"type": "string"},
                "description": {"type": "string"},
                "target": {"type": "string"},
                "task": {"enum": ["classification", "regression"]},
                "input": {"enum": ["array", "dataframe"]},
                "features": {"type": "array", "items": {
                    "type": "object", "required": ["name", "type", "nullable"],
                    "properties": {"name": {"type": "string"},
                                   "type": {"enum": ["number", "integer", "boolean", "category", "text",
                                                     "date", "datetime"]},
                                   "nullable": {"type": "boolean"},
                                   "unit": {"type": "string"},
                                   "min": {"type": ["number", "string"]},
                                   "max": {"type": ["number", "string"]},
                                   "max_length": {"type": "integer"},
                                   "timezone": {"type": ["string", "null"]},
                                   "values": {"type": "array"}}}},
                "modules": {"type": "array", "items": {"type": "string"}},
                "checked": {"type": "object"},
                "classes": {"type": "array"},
                "example": {"type": "array"},
                "metrics": {"type": "object"},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "versions": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {"error": {
                "type": "object", "required": ["message"], "additionalProperties": False,
                "properties": {"message": {"type": "string"}}}},
        },
    }


def predict_operation(metadata, max_rows, max_body_bytes):
    """Return the POST /predict operation, with every error it can answer."""
    example = metadata["example"]
    names = [feature["name"] for feature in metadata["features"]]
    return {
        "summary": f"Predict the {metadata['target']} of one or more rows",
        "operationId": "predict",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"},
            "example": {"instances": [example, dict(zip(names, example))]}}}},
        "responses": {
            "200": json_response("One prediction per row, in request order", "PredictResponse"),
            "400": error_response("The body is empty, not JSON, or not valid: the message names the "
                                  "row and field"),
            "413": error_response(f"The body is over {max_body_bytes} bytes or has more than "
                                  f"{max_rows} rows"),
            "415": error_response("The Content-Type is not application/json"),
            "500": error_response("An unexpected error; it is logged, and never shows a traceback"),
        },
    }


REQUEST_ID_HEADER = {"X-Request-ID": {
    "description": "The request's id: the X-Request-ID it came with if Heroku's router would keep it (20 to 200 "
                   "ASCII letters, digits or + / = -), else a new UUID. Every log line about the request carries it.",
    "schema": {"type": "string"}}}
UNAUTHORIZED = {
    "description": "No API key, a malformed Authorization header, or a key that is not valid",
    "headers": {"WWW-Authenticate": {"description": 'Bearer realm="predict", with error="invalid_token" '
                                                    'for a wrong key', "schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                     "example": {"error": {"message": "this key is not valid: check it, "
                                                                      "or ask for a new one"}}}},
}


PLAIN_HTTP = {
    "description": "The request reached the platform over plain http (X-Forwarded-Proto: http): use https",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"},
                                     "example": {"error": {"message": "this API takes requests over https only"}}}},
}


def add_public_options(document, api_keys, request_ids):
    """Document what API_KEYS (a bearer key, 401 and 403 on /predict and /model) and request ids (a header) change."""
    if api_keys:
        document["components"]["securitySchemes"] = {"apiKey": {
            "type": "http", "scheme": "bearer", "description": "one of the keys in the API_KEYS setting"}}
        for operation in (document["paths"]["/predict"]["post"], document["paths"]["/model"]["get"]):
            operation["security"] = [{"apiKey": []}]
            operation["responses"]["401"] = copy.deepcopy(UNAUTHORIZED)
            operation["responses"]["403"] = copy.deepcopy(PLAIN_HTTP)
    if request_ids:
        for operations in document["paths"].values():
            for operation in operations.values():
                for response in operation["responses"].values():
                    response.setdefault("headers", {}).update(copy.deepcopy(REQUEST_ID_HEADER))
    return document


def get_operation(summary, operation_id, schema_name):
    """Return a GET operation that answers 200 with a JSON body of a named schema."""
    return {"summary": summary, "operationId": operation_id,
            "responses": {"200": json_response(summary, schema_name)}}


def build_openapi(metadata, max_rows, max_body_bytes, api_keys=False, request_ids=False):
    """Return the whole OpenAPI document as a dict."""
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": metadata.get("title", metadata["model_version"]),
            "version": metadata["model_version"],
            "description": (metadata.get("description", "") + " " if metadata.get("description") else "") +
                           "A scikit-learn model served with Flask. Every error is JSON: "
                           '{"error": {"message": "..."}}; unknown paths answer 404 and '
                           "wrong methods 405, in the same shape.",
        },
        "paths": {
            "/predict": {"post": predict_operation(metadata, max_rows, max_body_bytes)},
            "/health": {"get": get_operation("The service is up", "health", "Health")},
            "/model": {"get": get_operation("The model's metadata", "model", "ModelMetadata")},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "This document",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
        "components": {"schemas": schemas(metadata, max_rows)},
    }
    return add_public_options(document, api_keys, request_ids)
