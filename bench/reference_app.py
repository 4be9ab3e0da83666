"""The comparison for the benchmark: the same iris model behind FastAPI, uvicorn and pydantic, written the lean way.

This is NOT part of the tutorial's app. `make bench` runs it next to final_app so the
numbers in bench/RESULTS.md answer "how does the Flask app compare with the usual
alternative, written well?". It serves the same artifact (final_app/model/model.joblib, loaded
through final_app's own checked loader), takes the same request, gives the same response, and
validates just as strictly: 1 to MAX_BATCH_ROWS rows, each 4 finite numbers (a list in
model order or an object with the 4 names), each within the bounds in model.json.

The lean way: pydantic validates each row, the rows go to the model as a list of lists (it was
fitted on a numpy array), predict_proba is called once per request, and each label is the
class in model.classes_ with the largest probability.

Run from the repository root:  uvicorn bench.reference_app:app --workers 2 --port 8001
"""
import json
import os
import pathlib
from typing import Annotated, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from final_app.artifact import load_model

MODEL_DIR = pathlib.Path(__file__).resolve().parent.parent / "final_app" / "model"
METADATA = json.loads((MODEL_DIR / "model.json").read_text())
FEATURES = [feature["name"] for feature in METADATA["features"]]
MAX_BATCH_ROWS = int(os.environ.get("MAX_BATCH_ROWS", "10000"))
MODEL = load_model(MODEL_DIR)
CLASSES = [str(name) for name in MODEL.classes_]


def feature_type(feature):
    """A strict float within the feature's bounds (no strings, booleans, NaN or infinity)."""
    return Annotated[float, Field(strict=True, ge=feature["min"], le=feature["max"],
                                  allow_inf_nan=False)]


# The object form of a row: exactly the four named measurements, nothing else.
NamedRow = create_model(
    "NamedRow",
    __config__=ConfigDict(extra="forbid"),
    **{feature["name"]: (feature_type(feature), ...) for feature in METADATA["features"]},
)

# The list form of a row: the same four measurements, in model order.
ListRow = tuple[tuple(feature_type(feature) for feature in METADATA["features"])]

# A row is either form. "left_to_right" tries the list form first and stops at the first that
# fits; pydantic's default ("smart") tries both, which took 3 times as long for 1000 lists.
Instance = Annotated[Union[ListRow, NamedRow], Field(union_mode="left_to_right")]


class PredictRequest(BaseModel):
    """The body of POST /predict."""

    model_config = ConfigDict(extra="forbid")
    instances: Annotated[list[Instance], Field(min_length=1, max_length=MAX_BATCH_ROWS)]


class Prediction(BaseModel):
    """One row's answer."""

    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    """The body of a successful POST /predict."""

    model_version: str
    predictions: list[Prediction]


app = FastAPI(title="iris reference (FastAPI)", docs_url=None, redoc_url=None)


@app.exception_handler(RequestValidationError)
def invalid_request(request: Request, error: RequestValidationError):
    """Answer bad input with 400 and the same error shape as final_app."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:])
    return JSONResponse({"error": {"message": f"{where}: {first['msg']}"}}, status_code=400)


@app.get("/health")
def health():
    """Cheap liveness answer."""
    return {"status": "ok", "model_version": METADATA["model_version"]}


def as_lists(instances):
    """Turn validated rows (lists or named objects) into lists in model order."""
    return [[getattr(row, name) for name in FEATURES] if isinstance(row, BaseModel) else row
            for row in instances]


# `async def`, not `def`: FastAPI would run a plain `def` endpoint in a thread pool, and on
# this benchmark that costs the reference about 15 % more CPU per request. The response_model
# makes FastAPI write the JSON in pydantic's compiled code, its fast path.
@app.post("/predict", response_model=PredictResponse)
async def predict(body: PredictRequest):
    """Predict the species and class probabilities for every row: one call to the model."""
    probabilities = MODEL.predict_proba(as_lists(body.instances))
    labels = MODEL.classes_[probabilities.argmax(axis=1)].tolist()
    predictions = [{"label": str(label), "probabilities": dict(zip(CLASSES, row))}
                   for label, row in zip(labels, probabilities.tolist())]
    return {"model_version": METADATA["model_version"], "predictions": predictions}
