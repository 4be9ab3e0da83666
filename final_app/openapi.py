"""Build the OpenAPI 3.1 document for the JSON API from the model's metadata and the limits in use."""

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


def number_schema(feature):
    """Return the JSON schema of one feature's value: a number within its bounds."""
    return {"type": "number", "minimum": feature["min"], "maximum": feature["max"],
            "description": f"{feature['name']} in {feature['unit']}"}


def row_schemas(features):
    """Return the two accepted row shapes: an array in model order, and an object with named fields."""
    names = [feature["name"] for feature in features]
    row_array = {
        "type": "array",
        "description": "the feature values in this order: " + ", ".join(names),
        "prefixItems": [number_schema(feature) for feature in features],
        "items": False,
        "minItems": len(features),
        "maxItems": len(features),
    }
    row_object = {
        "type": "object",
        "properties": {feature["name"]: number_schema(feature) for feature in features},
        "required": names,
        "additionalProperties": False,
    }
    return row_array, row_object


def schemas(metadata, max_rows):
    """Return the components/schemas section."""
    row_array, row_object = row_schemas(metadata["features"])
    classes = metadata["classes"]
    probability = {"type": "number", "minimum": 0, "maximum": 1}
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
        "Prediction": {
            "type": "object",
            "required": ["label", "probabilities"],
            "additionalProperties": False,
            "properties": {
                "label": {"type": "string", "enum": classes},
                "probabilities": {"type": "object", "required": classes, "additionalProperties": False,
                                  "properties": {name: probability for name in classes}},
            },
        },
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
            "required": ["model_version", "features", "classes", "metrics", "sha256", "versions"],
            "properties": {
                "model_version": {"type": "string"},
                "features": {"type": "array", "items": {
                    "type": "object", "required": ["name", "unit", "min", "max"],
                    "properties": {"name": {"type": "string"}, "unit": {"type": "string"},
                                   "min": {"type": "number"}, "max": {"type": "number"}}}},
                "classes": {"type": "array", "items": {"type": "string"}},
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


def predict_operation(max_rows, max_body_bytes):
    """Return the POST /predict operation, with every error it can answer."""
    return {
        "summary": "Predict the species of one or more iris flowers",
        "operationId": "predict",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"},
            "example": {"instances": [[5.1, 3.5, 1.4, 0.2],
                                      {"sepal_length": 6.7, "sepal_width": 3.0,
                                       "petal_length": 5.2, "petal_width": 2.3}]}}}},
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


def get_operation(summary, operation_id, schema_name):
    """Return a GET operation that answers 200 with a JSON body of a named schema."""
    return {"summary": summary, "operationId": operation_id,
            "responses": {"200": json_response(summary, schema_name)}}


def build_openapi(metadata, max_rows, max_body_bytes):
    """Return the whole OpenAPI document as a dict."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Iris species classifier",
            "version": metadata["model_version"],
            "description": "A scikit-learn model served with Flask. Every error is JSON: "
                           '{"error": {"message": "..."}}; unknown paths answer 404 and '
                           "wrong methods 405, in the same shape.",
        },
        "paths": {
            "/predict": {"post": predict_operation(max_rows, max_body_bytes)},
            "/health": {"get": get_operation("The service is up", "health", "Health")},
            "/model": {"get": get_operation("The model's metadata", "model", "ModelMetadata")},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "This document",
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
        },
        "components": {"schemas": schemas(metadata, max_rows)},
    }
