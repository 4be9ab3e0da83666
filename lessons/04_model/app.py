"""Lesson 04: serve the saved iris model. POST /predict with {"instances": [[4 numbers], ...]}.

train.py writes model.joblib and model.json into this folder; run it first if they are missing.
"""
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import joblib
from flask import Flask, abort, request
from sklearn.exceptions import InconsistentVersionWarning

HERE = Path(__file__).resolve().parent
MODEL_FILE = HERE / "model.joblib"
METADATA_FILE = HERE / "model.json"


class ModelFileError(Exception):
    """The model file is not the one its metadata describes."""


def load_metadata(metadata_file=METADATA_FILE):
    """Read model.json: features in order, classes, metrics, sha256, library versions."""
    return json.loads(Path(metadata_file).read_text())


def load_model(model_file=MODEL_FILE, metadata_file=METADATA_FILE):
    """Check the model file's sha256 against its metadata, and only then load those same bytes."""
    expected = load_metadata(metadata_file)["sha256"]
    data = Path(model_file).read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ModelFileError(
            f"{Path(model_file).name} has sha256 {found} but {Path(metadata_file).name} "
            f"expects sha256 {expected}: run train.py again, or put back the file you saved"
        )
    with warnings.catch_warnings():
        # A model saved by another scikit-learn version may mispredict: refuse it.
        warnings.simplefilter("error", InconsistentVersionWarning)
        return joblib.load(io.BytesIO(data))  # the bytes just checked, not the file read again


app = Flask(__name__)
# Loaded once, when the app starts. Every request below reuses these two objects.
model = load_model()
metadata = load_metadata()
FEATURES = [feature["name"] for feature in metadata["features"]]


def is_number(value):
    """True for a JSON number a measurement can be: not true/false, NaN, infinity or huge."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return -1e9 < value < 1e9  # NaN fails any comparison, so it is refused here too


def read_instances(body):
    """Return the rows of a request body, or stop with 400 and a message saying what is wrong."""
    if not isinstance(body, dict) or "instances" not in body:
        abort(400, 'send a JSON object like {"instances": [[5.1, 3.5, 1.4, 0.2]]} '
                   "with the header Content-Type: application/json")
    rows = body["instances"]
    if not isinstance(rows, list) or len(rows) == 0:
        abort(400, '"instances" must be a list with at least one row')
    for number, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(FEATURES) or not all(map(is_number, row)):
            abort(400, f"row {number}: expected a list of {len(FEATURES)} numbers in this order: "
                       + ", ".join(FEATURES))
    return rows


def describe(probabilities):
    """Turn one row of predict_proba into a label and a probability per class."""
    plain = probabilities.tolist()  # numpy floats -> Python floats, which JSON understands
    best = plain.index(max(plain))
    return {
        "label": metadata["classes"][best],
        "probabilities": dict(zip(metadata["classes"], plain)),
    }


@app.get("/")
def home():
    """Say how to ask for a prediction and which features, in which order, to send."""
    return {"predict": "POST /predict", "features": FEATURES, "classes": metadata["classes"]}


@app.post("/predict")
def predict():
    """Answer {"instances": [row, ...]} with one prediction per row, in the same order."""
    rows = read_instances(request.get_json(silent=True))
    probabilities = model.predict_proba(rows)
    return {"predictions": [describe(row) for row in probabilities]}


@app.errorhandler(400)
def bad_request(error):
    """Answer a bad request with JSON that says what was wrong, not an HTML page."""
    return {"error": {"message": error.description}}, 400


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5000)))
