"""Compile a fitted model to an ONNX graph at save time, and prove it gives the model's own answers.

save_model calls compile_model. It converts the model with skl2onnx, in double precision where
the converter can and in single (float32) precision otherwise, runs the graph with ONNX Runtime
exactly as the app will (final_app/engines.py), and compares its answers with the model's own on
the training rows, rebuilt from the schema as requests send them:

- labels: identical, every one;
- probabilities and values: within the tolerance of the precision (below).

Only a graph that passes is written; otherwise the metadata says why, and the app serves the
scikit-learn model. Nothing here runs in the web process: the app only loads the graph.
"""
import copy
import importlib.metadata
import json

import numpy as np

from final_app.engines import MATRIX_INPUT, EngineError, OnnxEngine, SklearnEngine
from final_app.validation import as_columns

# "Equal" for each precision. Double: the same arithmetic in another order differs in the last
# bits only. Float32 keeps about 7 significant digits.
TOLERANCES = {"double": (1e-9, 1e-12), "float": (1e-5, 1e-6)}  # (relative, absolute)
PROOF_ROWS = 10_000  # at most this many training rows are compared; every one of a smaller set
SINGLE_ROWS = 20  # and the first ones also one at a time, as a one-row request sends them
NUMBER_KINDS = ("number", "integer", "boolean")
GRAPH_NAME = "final_app"
REASON_CHARACTERS = 300  # a converter's message is cut here, visibly


def converter_version():
    """Return skl2onnx's version, or None if it is not installed."""
    try:
        return importlib.metadata.version("skl2onnx")
    except importlib.metadata.PackageNotFoundError:
        return None


def why_not_compiled(metadata):
    """Return why this model cannot be compiled before trying (a date, own code), or None."""
    dates = [feature["name"] for feature in metadata["features"] if feature["type"] in ("date", "datetime")]
    if dates:
        return f"ONNX has no date type, and the model takes dates ({', '.join(dates[:3])})"
    if metadata.get("modules"):
        return (f"the model runs Python functions of its own ({', '.join(metadata['modules'])}), "
                "which a graph cannot")
    if converter_version() is None:
        return "skl2onnx is not installed (pip install -r requirements-dev.txt)"
    return None


def column_kind(feature, precision):
    """Return the tensor type of one feature's column: precision for numbers, int64 or string."""
    if feature["dtype"] in ("float64", "float32"):
        return precision
    if feature["dtype"] in ("int64", "int32", "int16", "int8"):
        return "int64"
    return "string"


def input_layouts(metadata):
    """Return the ways to try to give the graph its inputs: one array, one column per feature, or both."""
    matrix = all(feature["type"] in NUMBER_KINDS for feature in metadata["features"])
    if metadata["input"] == "array":
        return ["matrix"]
    return ["matrix", "columns"] if matrix else ["columns"]


def graph_inputs(metadata, layout, precision):
    """Return [(name, tensor type)] for the graph's inputs in this layout and precision."""
    if layout == "matrix":
        return [(MATRIX_INPUT, precision)]
    return [(feature["name"], column_kind(feature, precision)) for feature in metadata["features"]]


def initial_types(inputs, width):
    """Return skl2onnx's description of the inputs: (name, tensor type of shape [rows, columns])."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    types = {"double": DoubleTensorType, "float": FloatTensorType, "int64": Int64TensorType,
             "string": StringTensorType}
    return [(name, types[kind]([None, width if name == MATRIX_INPUT else 1])) for name, kind in inputs]


def estimators_in(model):
    """Yield model and every estimator inside it (Pipeline steps, ColumnTransformer parts, ...)."""
    yield model
    parts = []
    if hasattr(model, "steps"):
        parts = [step for _name, step in model.steps]
    elif hasattr(model, "transformers_"):
        parts = [part for _name, part, _columns in model.transformers_]
    elif hasattr(model, "transformer_list"):
        parts = [part for _name, part in model.transformer_list]
    for part in parts:
        if hasattr(part, "get_params"):
            yield from estimators_in(part)


def text_missing_as_empty(model):
    """Return a copy of model whose text imputers treat the empty text as missing (for converting only).

    scikit-learn's SimpleImputer marks a missing text as NaN; skl2onnx converts a text imputer
    only when its missing value is a text. The app sends a missing text to the graph as ""
    (engines.text_column), and the proof checks the two agree on rows with missing values.
    """
    from sklearn.impute import SimpleImputer

    model = copy.deepcopy(model)
    for part in estimators_in(model):
        if (type(part) is SimpleImputer and getattr(part, "statistics_", None) is not None
                and part.statistics_.dtype == object and not isinstance(part.missing_values, str)):
            part.missing_values = ""
    return model


def convert(model, inputs, width, task):
    """Return the model converted to an ONNX graph (bytes); raise what skl2onnx raises."""
    import warnings

    from skl2onnx import convert_sklearn

    options = {id(model): {"zipmap": False}} if task == "classification" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skl2onnx's notes on opsets and dtypes: the proof decides
        # A fixed name: skl2onnx names a graph at random otherwise, and the same model would give
        # another file (and sha256) at every save.
        graph = convert_sklearn(model, name=GRAPH_NAME, initial_types=initial_types(inputs, width), options=options)
    return graph.SerializeToString()


def largest_difference(expected, found, precision):
    """Return the largest difference between two answers, or raise ValueError saying how they differ."""
    (want_labels, want_numbers), (got_labels, got_numbers) = expected, found
    if want_labels is not None and want_labels.dtype.kind != "f":
        wrong = sum(json.dumps(a) != json.dumps(b) for a, b in zip(want_labels.tolist(), got_labels.tolist()))
        if wrong or len(want_labels) != len(got_labels):
            raise ValueError(f"the graph gives other labels on {wrong} of {len(want_labels)} rows")
        want_labels = got_labels = None
    largest = 0.0
    relative, absolute = TOLERANCES[precision]
    for want, got in ((want_labels, got_labels), (want_numbers, got_numbers)):
        if want is None:
            continue
        want, got = np.asarray(want, dtype=np.float64), np.asarray(got, dtype=np.float64)
        if want.shape != got.shape:
            raise ValueError(f"the graph answers with shape {got.shape}, the model {want.shape}")
        if not np.allclose(got, want, rtol=relative, atol=absolute, equal_nan=True):
            raise ValueError(f"the graph's numbers differ from the model's by up to "
                             f"{float(np.nanmax(np.abs(got - want))):.2g}, more than {precision} precision allows")
        if want.size:
            largest = max(largest, float(np.nanmax(np.abs(got - want))))
    return largest


def prove(graph, model, metadata, engine, rows):
    """Return the largest difference between the graph's answers and the model's on rows; raise if not equal."""
    served = OnnxEngine(graph, {**metadata, "engine": engine})
    reference = SklearnEngine(model, metadata)
    columns = as_columns(rows)
    largest = largest_difference(reference.answers(columns), served.answers(columns), engine["precision"])
    for row in rows[:SINGLE_ROWS]:
        alone = as_columns([row])
        largest = max(largest, largest_difference(reference.answers(alone), served.answers(alone),
                                                  engine["precision"]))
    return largest


def compile_model(model, metadata, rows):
    """Return (the graph's bytes or None, the metadata's "engine") for a model and its proof rows."""
    reason = why_not_compiled(metadata)
    if reason:
        return None, {"name": "sklearn", "reason": reason}
    rows = rows[:PROOF_ROWS]
    convertible = text_missing_as_empty(model)
    tried = {}  # what went wrong: in which precisions
    for precision in ("double", "float"):
        for layout in input_layouts(metadata):
            inputs = graph_inputs(metadata, layout, precision)
            engine = {"name": "onnx", "precision": precision, "inputs": [list(pair) for pair in inputs]}
            try:
                graph = convert(convertible, inputs, len(metadata["features"]), metadata["task"])
                largest = prove(graph, model, metadata, engine, rows)
            except (ValueError, EngineError) as problem:
                tried.setdefault(str(problem), []).append(precision)
                continue
            except Exception as problem:  # noqa: BLE001 (skl2onnx raises many kinds: each means "cannot")
                message = f"skl2onnx cannot convert it: {type(problem).__name__}: {str(problem).splitlines()[0]}"
                if len(message) > REASON_CHARACTERS:
                    message = message[:REASON_CHARACTERS - 3] + "..."
                tried.setdefault(message, []).append(precision)
                continue
            relative, absolute = TOLERANCES[precision]
            engine.update(converter=f"skl2onnx {converter_version()}",
                          checked={"rows": len(rows), "largest_difference": largest,
                                   "relative_tolerance": relative, "absolute_tolerance": absolute})
            return graph, engine
    return None, {"name": "sklearn", "reason": "; ".join(f"{' and '.join(dict.fromkeys(precisions))} precision: {problem}"
                                                         for problem, precisions in tried.items())}
