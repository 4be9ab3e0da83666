"""A model artifact: the joblib file and, beside it, the metadata JSON that describes and protects it.

save_model() writes both from a fitted scikit-learn model and its training features. The metadata
holds everything the app shows and checks: the input schema (each feature's name, type, range or
allowed values, and whether it may be missing), the task, the classes, a sha256 of the model file
and the library versions that trained it.

load_model_and_metadata() reads them back. A joblib file is a pickle: loading it runs code. So it
never unpickles a file until its sha256 matches the metadata and the library versions installed now
match the ones that trained it (a model may fail to load, or silently mispredict, under others).
"""
import hashlib
import importlib.metadata
import io
import json
import math
import os
import pathlib
import platform
import re
import tempfile
import warnings

import numpy as np

from final_app.validation import model_input

MODEL_DIR = pathlib.Path(__file__).resolve().parent / "model"
MODEL_FILE = "model.joblib"
METADATA_FILE = "model.json"

# The distributions whose exact versions every model depends on (PyPI names); pandas joins them
# when the model was fitted on a DataFrame.
PINNED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")
REQUIRED_KEYS = ("model_version", "task", "input", "features", "sha256", "versions")

RETRAIN_HINT = "re-train and save the model again (for the iris model: make train)"
REINSTALL_HINT = "install the pinned versions (pip install -r requirements.txt) or " + RETRAIN_HINT

# How many training rows save_model() sends through the app's own input path to check it.
CHECK_ROWS = 20


class ModelError(Exception):
    """The model artifact cannot be trusted or loaded; str() is one line saying what and what to do."""


def model_error(path, what, expected, found, advice):
    """Build the one-line ModelError naming the file, the expected and the found value, and advice."""
    return ModelError(f"model check failed for {path}: {what} expected {expected}, found {found}; {advice}")


def installed_versions(names=PINNED_LIBRARIES):
    """Return the versions running now, in the same shape as the metadata's "versions"."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def major_minor(version):
    """Return "3.11" for "3.11.9": a model does not depend on Python's patch release."""
    return ".".join(version.split(".")[:2])


def sha256_of(data):
    """Return the hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


# --- saving -------------------------------------------------------------------------------------

def is_data_frame(X):
    """True for a pandas DataFrame (checked without importing pandas)."""
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "iloc")


def columns_of(X, feature_names):
    """Return [(name, 1-D column)] for a DataFrame, or a 2-D array with its feature names."""
    if is_data_frame(X):
        names = list(X.columns)
        if feature_names is not None and list(feature_names) != names:
            raise ValueError("feature_names= differs from the DataFrame's columns: leave it out")
        if not all(isinstance(name, str) for name in names):
            raise ValueError(f"every column name must be text, got {names}")
        return [(name, X[name]) for name in names]
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows and features), got {X.ndim} dimension(s)")
    if feature_names is None or len(feature_names) != X.shape[1]:
        raise ValueError(f"X is an array with {X.shape[1]} columns: pass feature_names= with one "
                         "name per column")
    return [(str(name), X[:, index]) for index, name in enumerate(feature_names)]


def is_missing(value):
    """True for the values pandas and scikit-learn treat as missing: None and NaN (pandas.NA too)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:  # pandas.NA refuses to be a bool
        return True


def plain(value):
    """Return a numpy or pandas scalar as the plain Python value JSON can hold."""
    return value.item() if hasattr(value, "item") else value


def default_bounds(low, high, integer):
    """Return the accepted range for a number seen from low to high in training.

    The range widens the training range by its own width on each side (a value twice as far out
    as anything seen is still accepted), rounded outwards to a tenth of the width's order of
    magnitude, and does not go below 0 when no training value did, so that a quantity that
    cannot be negative stays so. Pass bounds= to choose your own.
    """
    width = (high - low) or max(abs(high), 1)
    step = 10 ** math.floor(math.log10(width)) / 10
    # round() first, so that 0.7000000000000001 steps of 0.1 count as 7, not 8
    lower = math.floor(round((low - width) / step, 9)) * step
    upper = math.ceil(round((high + width) / step, 9)) * step
    if low >= 0:
        lower = max(lower, 0)
    if integer:
        return math.floor(lower), math.ceil(upper)
    return round(lower, 12), round(upper, 12)


def missing_mask(column):
    """Return a boolean array: True where the column (Series or 1-D array) has a missing value."""
    if hasattr(column, "isna"):
        return column.isna().to_numpy()
    if column.dtype.kind == "f":
        return np.isnan(column)
    if column.dtype.kind == "O":
        return np.array([is_missing(value) for value in column], dtype=bool)
    return np.zeros(len(column), dtype=bool)


def present_values(column):
    """Return a column (Series or 1-D array) without its missing values."""
    return column[~missing_mask(column)]


def column_kind(column, present):
    """Return "number", "integer", "boolean" or "category" for a column's dtype and values."""
    dtype = column.dtype
    if getattr(dtype, "name", "") == "category":
        return "category"
    kind = getattr(dtype, "kind", "O")
    if kind == "b" or str(dtype) == "boolean":
        return "boolean"
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "number"
    types = {type(plain(value)) for value in present}
    if types == {bool}:
        return "boolean"
    if types and types <= {str}:
        return "category"
    raise ValueError(f"cannot tell what type of value the column holds ({dtype}, values of type "
                     f"{', '.join(sorted(kind.__name__ for kind in types)) or 'none'}): convert it to "
                     "numbers, text or a pandas category first")


def describe_feature(name, column, bounds=None, unit=None):
    """Return the schema entry of one feature from its training column."""
    present = present_values(column)
    kind = column_kind(column, present)
    feature = {"name": name, "type": kind, "dtype": str(column.dtype)}
    if unit:
        feature["unit"] = unit
    if kind in ("number", "integer"):
        if not len(present):
            raise ValueError(f"feature {name!r} has no values in the training data")
        low, high = bounds or default_bounds(plain(present.min()), plain(present.max()), kind == "integer")
        feature["min"], feature["max"] = plain(low), plain(high)
    elif kind == "category":
        categories = getattr(column.dtype, "categories", None)
        if categories is not None:
            feature["values"] = [plain(value) for value in categories]
            feature["ordered"] = bool(column.dtype.ordered)
        else:
            feature["values"] = sorted({plain(value) for value in present})
    feature["nullable"] = len(present) < len(column)
    return feature


def task_of(model):
    """Return "classification" or "regression" for a fitted scikit-learn estimator."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    raise ValueError(f"{type(model).__name__} is neither a classifier nor a regressor")


def value_at(column, index):
    """Return a column's value at a row position as a plain value, or None where it is missing."""
    value = plain(column.iloc[index] if hasattr(column, "iloc") else column[index])
    return None if is_missing(value) else value


def training_rows(columns, indices):
    """Return the training rows at these positions as lists of plain values, missing values as None."""
    return [[value_at(column, index) for _name, column in columns] for index in indices]


def rows_to_check(columns, count=CHECK_ROWS):
    """Return the positions of the first count rows, and of the first count rows with a missing value."""
    length = len(columns[0][1])
    with_missing = np.flatnonzero(np.logical_or.reduce([missing_mask(column) for _name, column in columns]))
    return sorted(set(range(min(count, length))) | set(with_missing[:count].tolist()))


def predictions_of(model, X, task):
    """Return what the app answers for X: predict, plus predict_proba when the model has it."""
    answers = [np.asarray(model.predict(X))]
    if task == "classification" and hasattr(model, "predict_proba"):
        answers.append(np.asarray(model.predict_proba(X)))
    return answers


def mark_nullable(model, metadata, rows):
    """Keep "nullable" only on features where the model really predicts with the value missing.

    Each such feature is emptied, alone, in training rows that have no other missing value.
    """
    rows = [row for row in rows if None not in row] or rows
    for index, feature in enumerate(metadata["features"]):
        if not feature["nullable"]:
            continue
        emptied = [row[:index] + [None] + row[index + 1:] for row in rows]
        try:
            answers = predictions_of(model, model_input(emptied, metadata), metadata["task"])
            feature["nullable"] = all(np.isfinite(answer).all() for answer in answers
                                      if answer.dtype.kind == "f")
        except Exception:  # noqa: BLE001 (any failure means: this model cannot take it missing)
            feature["nullable"] = False


def check_round_trip(model, X, columns, metadata):
    """Raise ValueError unless the app's input path gives the model's own answers on training rows."""
    features = metadata["features"]
    indices, rows = [], []
    for index in rows_to_check(columns):
        row = training_rows(columns, [index])[0]
        if all(value is not None or feature["nullable"] for value, feature in zip(row, features)):
            indices.append(index)
            rows.append(row)
    if not rows:
        raise ValueError("no training row can be sent to the app: each has a missing value "
                         "in a feature the model cannot predict without")
    sample = X.iloc[indices] if is_data_frame(X) else np.asarray(X)[indices]
    expected = predictions_of(model, sample, metadata["task"])
    found = predictions_of(model, model_input(rows, metadata), metadata["task"])
    for want, got in zip(expected, found):
        if want.shape != got.shape or not np.array_equal(want, got, equal_nan=want.dtype.kind == "f"):
            raise ValueError("the model answers differently when its input is rebuilt from the "
                             "schema: check that X is the data the model was fitted on")
    return rows


def slug(text):
    """Return text as lower-case words joined by hyphens: "Iris model" -> "iris-model"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def write_atomically(path, data):
    """Write bytes to path so that a reader sees the old file or the new one, never half of one."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(data)
        temporary = pathlib.Path(file.name)
    os.replace(temporary, path)


def save_model(model, X, model_dir, *, feature_names=None, name="model", title=None, description="",
               target="prediction", metrics=None, bounds=None, units=None):
    """Save a fitted model and its metadata into model_dir; return the metadata.

    X is the training features: a pandas DataFrame, or a 2-D array with feature_names=[...].
    bounds= maps a number feature's name to its (min, max), overriding the default range;
    units= maps a feature's name to the unit shown next to it. name goes into the model version;
    title, description and target (the name of what is predicted) are what people read.
    """
    import joblib

    bounds, units = bounds or {}, units or {}
    columns = columns_of(X, feature_names)
    names = [name_ for name_, _column in columns]
    unknown = sorted(set(bounds) - set(names)) + sorted(set(units) - set(names))
    if unknown:
        raise ValueError(f"bounds= or units= name features that X does not have: {', '.join(unknown)}")
    fitted_names = getattr(model, "feature_names_in_", None)
    if fitted_names is not None and list(fitted_names) != names:
        raise ValueError(f"the model was fitted on columns {list(fitted_names)}, X has {names}")
    task = task_of(model)
    metadata = {
        "model_version": None,
        "title": title or name,
        "description": description,
        "target": target,
        "task": task,
        "input": "dataframe" if fitted_names is not None else "array",
        "features": [describe_feature(name_, column, bounds.get(name_), units.get(name_))
                     for name_, column in columns],
    }
    if not is_data_frame(X):
        metadata["array_dtype"] = str(np.asarray(X).dtype)
    if task == "classification":
        metadata["classes"] = [plain(value) for value in model.classes_]
        metadata["probabilities"] = hasattr(model, "predict_proba")
    rows = training_rows(columns, range(min(CHECK_ROWS * 5, len(columns[0][1]))))
    mark_nullable(model, metadata, rows)
    accepted = check_round_trip(model, X, columns, metadata)
    # A row to show in messages and the documentation, and for final_app.check to predict.
    metadata["example"] = next((row for row in accepted if None not in row), accepted[0])
    libraries = PINNED_LIBRARIES + (("pandas",) if metadata["input"] == "dataframe" else ())

    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    sha256 = sha256_of(data)
    metadata.update(model_version=f"{slug(name)}-{sha256[:12]}", metrics=metrics or {},
                    sha256=sha256, versions=installed_versions(libraries))
    write_atomically(model_dir / MODEL_FILE, data)
    write_atomically(model_dir / METADATA_FILE, (json.dumps(metadata, indent=2) + "\n").encode())
    return metadata


# --- loading ------------------------------------------------------------------------------------

def read_metadata(model_dir=None):
    """Read and return the metadata JSON that sits beside the model file."""
    path = pathlib.Path(model_dir or MODEL_DIR) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise model_error(path, "file", "present", "nothing", RETRAIN_HINT) from None
    except (OSError, ValueError) as error:
        raise model_error(path, "JSON", "readable", type(error).__name__, RETRAIN_HINT) from None
    if type(metadata) is not dict:
        raise model_error(path, "JSON", "an object", type(metadata).__name__, RETRAIN_HINT)
    keys = REQUIRED_KEYS + (("classes",) if metadata.get("task") == "classification" else ())
    for key in keys:
        if key not in metadata:
            raise model_error(path, f"key {key!r}", "present", "missing", RETRAIN_HINT)
    return metadata


def check_versions(metadata, metadata_path, found=None):
    """Raise ModelError if Python (major.minor) or a pinned library differs from the metadata."""
    expected = metadata["versions"]
    names = [name for name in expected if name != "python"]
    found = found or installed_versions(names)
    if major_minor(expected.get("python", "?")) != major_minor(found["python"]):
        raise model_error(metadata_path, "Python version", major_minor(expected.get("python", "?")),
                          major_minor(found["python"]), "run with the Python version that trained the model or " + RETRAIN_HINT)
    for name in (*PINNED_LIBRARIES, *names):
        if expected.get(name) != found.get(name):
            raise model_error(metadata_path, f"{name} version", expected.get(name), found.get(name),
                              REINSTALL_HINT)


def read_verified_bytes(model_path, expected_sha256):
    """Return the model file's bytes, after checking their sha256 against the metadata."""
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise model_error(model_path, "file", "present", "nothing", RETRAIN_HINT) from None
    found_sha256 = sha256_of(data)
    if found_sha256 != expected_sha256:
        raise model_error(model_path, "sha256", expected_sha256, found_sha256,
                          "this is not the file the metadata describes: restore it or " + RETRAIN_HINT)
    return data


def unpickle(data, model_path):
    """Unpickle the (already verified) bytes, treating a scikit-learn version warning as an error."""
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return joblib.load(io.BytesIO(data))
        except InconsistentVersionWarning as warning:
            raise model_error(model_path, "scikit-learn version", warning.original_sklearn_version,
                              warning.current_sklearn_version, REINSTALL_HINT) from None
        except Exception as error:  # a corrupt pickle can fail in many ways; all mean "do not serve"
            raise model_error(model_path, "loadable joblib file", "yes",
                              f"{type(error).__name__}: {error}".splitlines()[0], RETRAIN_HINT) from None


def load_model_and_metadata(model_dir=None):
    """Verify the artifact in model_dir (default: the package's model folder); return (model, metadata)."""
    model_dir = pathlib.Path(model_dir or MODEL_DIR)
    metadata = read_metadata(model_dir)
    data = read_verified_bytes(model_dir / MODEL_FILE, metadata["sha256"])
    check_versions(metadata, model_dir / METADATA_FILE)
    return unpickle(data, model_dir / MODEL_FILE), metadata


def load_model(model_dir=None):
    """Verify the artifact in model_dir (default: the package's model folder) and return the model."""
    model, _metadata = load_model_and_metadata(model_dir)
    return model
