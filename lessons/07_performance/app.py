"""Lesson 07: one model served two ways, so you can measure what one call per request is worth.

POST /predict       {"instances": [[4 numbers], ...]}: ONE predict_proba call for all the rows
POST /predict_each  the same body and answer, but one predict_proba call PER ROW (the slow way)
GET  /health        a cheap answer, to time how long the app takes to start

It reuses final_app's checked model loader and its request validation, so the only
difference between the two endpoints is how the model is called.
"""
import os
import sys
from pathlib import Path

import numpy as np
from flask import Flask, request

# final_app/ is two folders up: put the repository root on Python's import path to reuse it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from final_app.artifact import load_model_and_metadata  # noqa: E402
from final_app.validation import InstanceValidator, RequestError, parse_json  # noqa: E402

app = Flask(__name__)
# Loaded once, when the app starts, and shared by every request.
model, metadata = load_model_and_metadata()
CLASSES = metadata["classes"]
validator = InstanceValidator(metadata, max_rows=10_000)


def describe(probabilities):
    """Turn rows of predict_proba output into {"label", "probabilities"} dicts."""
    return [{"label": CLASSES[row.index(max(row))], "probabilities": dict(zip(CLASSES, row))}
            for row in probabilities.tolist()]


def read_rows():
    """Return the request's rows as a float array, after final_app's full validation."""
    return validator.matrix(parse_json(request.get_data()))


@app.post("/predict")
def predict():
    """Predict every row with one call to the model."""
    return {"predictions": describe(model.predict_proba(read_rows()))}


@app.post("/predict_each")
def predict_each():
    """Predict the same rows with one call to the model per row."""
    rows = read_rows()
    return {"predictions": [describe(model.predict_proba(row[np.newaxis]))[0] for row in rows]}


@app.get("/health")
def health():
    """Answer quickly: the app is up and its model is loaded."""
    return {"status": "ok", "model_version": metadata["model_version"]}


@app.errorhandler(RequestError)
def bad_request(error):
    """Answer invalid input with JSON saying what is wrong."""
    return {"error": {"message": error.message}}, error.status


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5000)))
