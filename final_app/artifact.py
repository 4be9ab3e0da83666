"""A model artifact: the joblib file, the ONNX graph when one is proven, and the metadata JSON beside them.

save_model() writes them from a fitted scikit-learn model and its training features. The metadata
holds everything the app shows and checks: the input schema (each feature's name, type, range or
allowed values, and whether it may be missing), the task, the classes, the engine that serves the
model and how close it is to the model (final_app/convert.py), a sha256 of each file and the
library versions that trained it.

load_engine() reads back what the app serves: the ONNX graph when there is one (no pickle is
loaded at all), else the model. load_model_and_metadata() reads back the scikit-learn model. A
joblib file is a pickle: loading it runs code. So it never unpickles a file until its sha256
matches the metadata and the library versions installed now match the ones that trained it (a
model may fail to load, or silently mispredict, under others).
"""
import collections
import datetime
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import pathlib
import pickle
import platform
import re
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy as np

from final_app.convert import PROOF_ROWS, compile_model, why_not_compiled
from final_app.convert import largest_difference as graph_difference
from final_app.engines import EngineError, OnnxEngine, SklearnEngine
from final_app.validation import (BadValue, InstanceValidator, RequestError, as_columns, model_input, shown,
                                  value_checker)

MODEL_DIR = pathlib.Path(__file__).resolve().parent / "model"
MODEL_FILE = "model.joblib"
GRAPH_FILE = "model.onnx"
METADATA_FILE = "model.json"

# The distributions whose exact versions every model depends on (PyPI names); pandas joins them
# when the model was fitted on a DataFrame.
PINNED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")
REQUIRED_KEYS = ("model_version", "task", "input", "features", "sha256", "versions")

RETRAIN_HINT = "re-train and save the model again (for the iris model: make train)"
REINSTALL_HINT = "install the pinned versions (pip install -r requirements.txt) or " + RETRAIN_HINT

# How many training rows save_model() sends through the app's own input path to check it.
CHECK_ROWS = 20
# The model file is hashed this many bytes at a time.
READ_CHUNK_BYTES = 1024 * 1024


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

# A text column is a "category" when its values repeat: at most this many different values, or
# no more different values than half its rows. Otherwise it is free "text".
CATEGORY_MAX_VALUES = 50
# A text feature accepts up to twice its longest training value, and at least this many characters.
TEXT_MIN_LENGTH = 100
# The types a column may be given with types=, by the type inferred for it.
TYPE_CHOICES = {
    "number": ("number",),
    "integer": ("integer", "category"),
    "boolean": ("boolean", "category"),
    "category": ("category",),  # a pandas category column (text that repeats may be text too: column_kind)
    "text": ("text", "category"),
    "date": ("date", "datetime"),
    "datetime": ("datetime",),
}
# Types whose values have a range (min, max) that bounds= may set.
RANGED_TYPES = ("number", "integer", "date", "datetime")
# Answers are equal when labels are identical and numbers differ by no more than this. The same
# arithmetic on the same numbers in another memory layout (a DataFrame's columns one by one, the
# rebuilt frame as one block) adds in another order and can differ in the last bit, about 1e-16:
# far below this, and far above it any difference would be a real one.
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12
KNOWN_TYPES_TEXT = "numbers, integers, booleans, categories, text, dates and date-times"


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
    """True for the values pandas and scikit-learn treat as missing: None and NaN (pandas.NA, NaT too)."""
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


def default_time_bounds(low, high):
    """Return the accepted range for dates or times seen from low to high (pandas Timestamps).

    As for numbers, the training range widened by its own width on each side (by a year when
    every value is the same), out to whole days.
    """
    import pandas as pd

    width = max(high - low, pd.Timedelta(days=1)) if high > low else pd.Timedelta(days=365)
    return (low - width).floor("D"), (high + width).ceil("D")


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


def is_dates(present):
    """True when every present value of a datetime64 column is at midnight: dates, not times."""
    return bool((present == present.dt.normalize()).all())


def text_kind(present):
    """Return "category" for text values that repeat, "text" for free text (see CATEGORY_MAX_VALUES)."""
    distinct = len(set(present))
    return "category" if distinct <= CATEGORY_MAX_VALUES or distinct <= len(present) / 2 else "text"


def inferred_kind(name, column, present):
    """Return the type a column's dtype and values say it holds, or raise ValueError naming it."""
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
    if kind == "M":
        return "date" if is_dates(present) else "datetime"
    types = {type(plain(value)) for value in present}
    if types == {bool}:
        return "boolean"
    if types and types <= {str}:
        return text_kind(present)
    found = ", ".join(sorted(kind.__name__ for kind in types)) or "none"
    advice = "the schema knows " + KNOWN_TYPES_TEXT
    if kind == "m":
        found, advice = "durations", "convert them to a number (for example seconds) first"
    elif types & {datetime.date, datetime.datetime} or "Timestamp" in found:
        advice = "convert the column with pandas.to_datetime first"
    elif kind in "OSU":
        advice += ("; convert the column to one of these in the DataFrame, or do that work inside "
                   "the pipeline with a function from a module file")
    raise ValueError(f"column {name!r} holds values of type {found} ({dtype}): {advice}")


def column_kind(name, column, present, wanted=None):
    """Return the column's type: the inferred one, or the one types= asks for if the data allows it."""
    kind = inferred_kind(name, column, present)
    if wanted is None or wanted == kind:
        return kind
    # Text that repeats is a category by the rule (text_kind), so it may be text too; a pandas
    # category column stays one.
    repeating_text = kind == "category" and getattr(column.dtype, "name", "") != "category"
    choices = TYPE_CHOICES["text"] if repeating_text else TYPE_CHOICES[kind]
    if wanted not in choices:
        raise ValueError(f"types= asks for column {name!r} to be {wanted}, but it holds {kind} values: "
                         f"it can be {' or '.join(choices)}")
    return wanted


def iso_text(value, kind):
    """Return a pandas Timestamp as the ISO 8601 text requests send: a date, or a date and time."""
    if kind == "date":
        return value.date().isoformat()
    # A request's time has at most microseconds, as Python's. Cut them in UTC: in local time an hour
    # the clocks go back through happens twice, and pandas will not guess which one is meant.
    if value.tzinfo is not None:
        return value.tz_convert("UTC").floor("us").tz_convert(value.tzinfo).isoformat()
    return value.floor("us").isoformat()


def as_timestamp(name, value, column):
    """Return a bound given for a date or time column as a Timestamp in the column's timezone."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ValueError(f"bounds= for {name!r}: {value!r} is not a date") from None
    zone = column.dt.tz
    if zone is not None:
        return stamp.tz_localize(zone) if stamp.tzinfo is None else stamp.tz_convert(zone)
    if stamp.tzinfo is not None:
        raise ValueError(f"bounds= for {name!r}: {value!r} has a timezone and the column has none")
    return stamp


def checked_bounds(name, kind, bounds, column):
    """Return bounds= for one feature as (low, high) after checking they make sense, or None."""
    if bounds is None:
        return None
    if kind not in RANGED_TYPES:
        raise ValueError(f"bounds= for {name!r}: a {kind} column has no range (only numbers, "
                         "integers, dates and date-times do)")
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(f"bounds= for {name!r} must be a pair (min, max), got {bounds!r}") from None
    if kind in ("date", "datetime"):
        low, high = as_timestamp(name, low, column), as_timestamp(name, high, column)
    elif not all(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                 for value in (low, high)):
        raise ValueError(f"bounds= for {name!r} must be two finite numbers, got {bounds!r}")
    if low > high:
        shown_low, shown_high = ((iso_text(low, kind), iso_text(high, kind)) if kind in ("date", "datetime")
                                 else (low, high))
        raise ValueError(f"bounds= for {name!r}: min {shown_low} is above max {shown_high}")
    return low, high


def text_length(name, present, max_length):
    """Return the most characters a text feature accepts: max_length=, or twice the longest seen."""
    if max_length is None:
        longest = max((len(value) for value in present), default=0)
        return max(TEXT_MIN_LENGTH, 2 * longest)
    if type(max_length) is not int or max_length < 1:
        raise ValueError(f"max_length= for {name!r} must be a whole number above 0, got {max_length!r}")
    return max_length


def describe_feature(name, column, bounds=None, unit=None, wanted_type=None, max_length=None):
    """Return the schema entry of one feature from its training column."""
    present = present_values(column)
    kind = column_kind(name, column, present, wanted_type)
    feature = {"name": name, "type": kind, "dtype": str(column.dtype)}
    if unit:
        feature["unit"] = unit
    if max_length is not None and kind != "text":
        raise ValueError(f"max_length= for {name!r}: only a text column has a maximum length, this is {kind}")
    if kind in RANGED_TYPES and not len(present):
        raise ValueError(f"feature {name!r} has no values in the training data")
    bounds = checked_bounds(name, kind, bounds, column)
    if kind in ("number", "integer"):
        low, high = bounds or default_bounds(plain(present.min()), plain(present.max()), kind == "integer")
        feature["min"], feature["max"] = plain(low), plain(high)
    elif kind in ("date", "datetime"):
        low, high = bounds or default_time_bounds(present.min(), present.max())
        if kind == "date" and not all(value == value.normalize() for value in (low, high)):
            raise ValueError(f"bounds= for {name!r}: a date column's bounds are dates, got {bounds!r}")
        feature["min"], feature["max"] = iso_text(low, kind), iso_text(high, kind)
        zone = column.dt.tz
        feature["timezone"] = None if zone is None else str(zone)
    elif kind == "text":
        feature["max_length"] = text_length(name, present, max_length)
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


def json_value(value, feature):
    """Return a training value as a request sends it: plain JSON, dates as ISO 8601 text, None if missing."""
    if is_missing(value):
        return None
    if feature["type"] in ("date", "datetime"):
        return iso_text(value, feature["type"])
    return plain(value)


def training_rows(columns, indices, features):
    """Return the training rows at these positions as a request would send them (missing values as None)."""
    return [[json_value(column.iloc[index] if hasattr(column, "iloc") else column[index], feature)
             for (_name, column), feature in zip(columns, features)] for index in indices]


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


def largest_difference(expected, found):
    """Return the largest difference between two sets of answers; raise ValueError unless they are equal.

    Equal means: labels identical, numbers within RELATIVE_TOLERANCE (ABSOLUTE_TOLERANCE near 0).
    """
    largest = 0.0
    for want, got in zip(expected, found):
        if want.shape != got.shape:
            raise ValueError(f"the model answers {got.shape} for the rebuilt rows, {want.shape} for X")
        if want.dtype.kind != "f" or got.dtype.kind != "f":
            if not np.array_equal(want, got):
                raise ValueError("the model predicts other labels when its input is rebuilt from the "
                                 "schema: check that X is the data the model was fitted on")
            continue
        if not np.allclose(got, want, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE, equal_nan=True):
            raise ValueError("the model answers differently when its input is rebuilt from the "
                             "schema: check that X is the data the model was fitted on")
        if want.size:
            largest = max(largest, float(np.max(np.nan_to_num(np.abs(got - want)))))
    return largest


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
            answers = predictions_of(model, model_input(as_columns(emptied), metadata), metadata["task"])
            feature["nullable"] = all(np.isfinite(answer).all() for answer in answers
                                      if answer.dtype.kind == "f")
        except Exception:  # noqa: BLE001 (any failure means: this model cannot take it missing)
            feature["nullable"] = False


def check_round_trip(model, X, columns, metadata):
    """Check that the app's input path gives the model's own answers on training rows.

    Return (the rows it accepted, the largest difference found); raise ValueError if none is
    accepted or the answers differ.
    """
    validator = InstanceValidator(metadata, max_rows=CHECK_ROWS * 2)
    indices, rows, refused = [], [], None
    for index in rows_to_check(columns):
        row = training_rows(columns, [index], metadata["features"])[0]
        try:
            validator.row(row, 0)
        except RequestError as problem:  # a missing value the model cannot take, or outside bounds=
            refused = refused or problem.message
            continue
        indices.append(index)
        rows.append(row)
    if not rows:
        raise ValueError(f"no training row fits the schema (the first one refused: {refused}): "
                         "check bounds= and types=")
    sample = X.iloc[indices] if is_data_frame(X) else np.asarray(X)[indices]
    expected = predictions_of(model, sample, metadata["task"])
    found = predictions_of(model, validator.model_input({"instances": rows}), metadata["task"])
    return rows, largest_difference(expected, found)


def typical_value(column, feature):
    """Return a made-up value for the example row: the median, the most frequent value, or a short text."""
    present = present_values(column)
    kind = feature["type"]
    if kind == "text":
        return "example text"[:feature["max_length"]]
    if kind in ("date", "datetime"):
        middle = present.sort_values().iloc[len(present) // 2]
        return iso_text(middle.floor("D") if kind == "date" else middle.floor("s"), kind)
    if kind in ("number", "integer"):
        middle = float(np.median(np.asarray(present, dtype=float)))
        return int(round(middle)) if kind == "integer" else round(middle, 6)
    counts = collections.Counter(plain(value) for value in present)
    return counts.most_common(1)[0][0]


def example_row(example, columns, features):
    """Return the example row: example= in feature order, or one made of each column's typical value."""
    names = [feature["name"] for feature in features]
    if example is None:
        return [typical_value(column, feature) for (_name, column), feature in zip(columns, features)]
    if isinstance(example, dict):
        if set(example) != set(names):
            raise ValueError(f"example= must have exactly the features {', '.join(names)}")
        return [example[name] for name in names]
    if len(example) != len(names):
        raise ValueError(f"example= has {len(example)} values, the model has {len(names)} features")
    return list(example)


def check_example(model, metadata, bounds, given):
    """Check that the example row fits the schema (and so bounds=) and that the model predicts it."""
    example = metadata["example"]
    made = "" if given else " (made from the training data's medians and most frequent values)"
    for value, feature in zip(example, metadata["features"]):
        try:
            value_checker(feature)(value)
        except BadValue as problem:
            where = f"bounds= for {feature['name']!r}" if feature["name"] in bounds else repr(feature["name"])
            raise ValueError(f"the example row's value {shown(value)} for {feature['name']!r}{made} {problem}: "
                             f"check {where}, or pass example= with a row that fits") from None
    validator = InstanceValidator(metadata, max_rows=1)
    try:
        answers = predictions_of(model, validator.model_input({"instances": [example]}), metadata["task"])
    except Exception as error:  # noqa: BLE001 (whatever the model raises, say so and what to do)
        raise ValueError(f"the model cannot predict the example row {shown(example)}{made}: "
                         f"{type(error).__name__}: {error}; pass example= with a row it predicts") from None
    if not all(np.isfinite(answer).all() for answer in answers if answer.dtype.kind == "f"):
        raise ValueError(f"the model's answer for the example row {shown(example)}{made} is not a finite "
                         "number: pass example= with a row it predicts")


# --- the code a model needs ---------------------------------------------------------------------

# Where gunicorn starts: the repository's top folder, the one above this package (the Procfile's).
REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
LOAD_IN_FRESH_PYTHON = "import sys; sys.path.insert(0, sys.argv[1]); import joblib; joblib.load(sys.argv[2])"


class RecordingUnpickler(pickle.Unpickler):
    """An unpickler that notes each function and class it imports (module and name)."""

    def find_class(self, module, name):
        self.needed.add((module, name))
        return super().find_class(module, name)


def code_the_model_needs(model):
    """Return the sorted (module, name) pairs that loading the model imports, from a pickling round trip.

    Large arrays travel out of band (pickle protocol 5), so this costs little memory.
    """
    buffers = []
    try:
        data = pickle.dumps(model, protocol=5, buffer_callback=buffers.append)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(f"the model cannot be saved: {str(error).splitlines()[0][:200]}. A lambda, or a "
                         "function defined inside another function, cannot be pickled: write it as a "
                         "function in a module file inside the repository, import it, and fit again") from None
    unpickler = RecordingUnpickler(io.BytesIO(data), buffers=buffers)
    unpickler.needed = set()
    unpickler.load()
    return sorted(unpickler.needed)


def is_installed(module):
    """True when a module is part of Python or of an installed package (site-packages), not your own code."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    spec = importlib.util.find_spec(top)
    places = [spec.origin] if spec and spec.origin else list(getattr(spec, "submodule_search_locations", None) or [])
    packages = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return bool(places) and all(any(pathlib.Path(place).is_relative_to(folder) for folder in packages)
                                for place in places)


def own_code(needed):
    """Return the modules of your own (not Python's, not an installed package's) among the needed code.

    Raise ValueError for code defined in __main__ (a notebook, or the script that fitted the model):
    no other Python process has it.
    """
    in_main = [name for module, name in needed if module == "__main__"]
    if in_main:
        raise ValueError(f"the model needs {', '.join(in_main)}, defined in the notebook or script that fitted "
                         "it (__main__), which no other Python process has: move it into a module file "
                         "inside the repository (for example model_code/features.py), import it from "
                         "there, and fit the model again")
    return sorted({module for module, _name in needed if not is_installed(module)})


def check_loads_in_fresh_python(data, modules, needed):
    """Load the pickled model in a new Python started in the repository's top folder, as gunicorn does."""
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / MODEL_FILE
        path.write_bytes(data)
        result = subprocess.run([sys.executable, "-I", "-c", LOAD_IN_FRESH_PYTHON, str(REPOSITORY), str(path)],
                                cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    if result.returncode == 0:
        return
    error = (result.stderr.strip().splitlines() or ["no output"])[-1][:200]
    names = ", ".join(f"{module}.{name}" for module, name in needed if module in modules)
    raise ValueError(f"the model needs {names}, and a new Python started in the repository's top folder "
                     f"(as gunicorn starts) cannot load it: {error}. Move that code into a module file inside "
                     f"the repository, importable from its top folder (for example model_code/"
                     f"{modules[0].split('.')[-1]}.py), import it from there, and fit the model again")


# --- saving, all together -----------------------------------------------------------------------

def slug(text):
    """Return text as lower-case words joined by hyphens: "Iris model" -> "iris-model"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def write_atomically(path, data):
    """Write bytes to path so that a reader sees the old file or the new one, never half of one."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(data)
        temporary = pathlib.Path(file.name)
    os.replace(temporary, path)


def check_options(names, bounds, units, types, max_length):
    """Raise ValueError if bounds=, units=, types= or max_length= name a feature X lacks, or a type unknown."""
    unknown = sorted({name for option in (bounds, units, types, max_length) for name in option} - set(names))
    if unknown:
        raise ValueError(f"bounds=, units=, types= or max_length= name features that X does not have: "
                         f"{', '.join(unknown)}")
    for name, kind in types.items():
        if kind not in TYPE_CHOICES:
            raise ValueError(f"types= for {name!r}: {kind!r} is not a type; use one of {', '.join(TYPE_CHOICES)}")


def save_model(model, X, model_dir, *, feature_names=None, name="model", title=None, description="",
               target="prediction", metrics=None, bounds=None, units=None, types=None, max_length=None,
               example=None, engine="onnx"):
    """Save a fitted model and its metadata into model_dir; return the metadata.

    X is the training features: a pandas DataFrame, or a 2-D array with feature_names=[...].
    bounds= maps a number, integer, date or date-time feature's name to its (min, max), overriding
    the default range; units= maps a feature's name to the unit shown next to it; types= maps a
    feature's name to the type it is given ("text" or "category" for a text column, ...);
    max_length= maps a text feature's name to the most characters it accepts. example= is the row
    shown in messages and the documentation (default: one made of each column's median or most
    frequent value, not a real row). name goes into the model version; title, description and
    target (the name of what is predicted) are what people read. engine="onnx" (the default) also
    writes an ONNX graph when the model converts and the graph proves equal to it (final_app/convert.py),
    and the app serves that; engine="sklearn" does not try, and the app calls the model itself.
    """
    import joblib

    if engine not in ("onnx", "sklearn"):
        raise ValueError(f'engine= must be "onnx" or "sklearn", got {engine!r}')
    bounds, units, types, max_length = bounds or {}, units or {}, types or {}, max_length or {}
    columns = columns_of(X, feature_names)
    names = [name_ for name_, _column in columns]
    check_options(names, bounds, units, types, max_length)
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
        "features": [describe_feature(name_, column, bounds.get(name_), units.get(name_), types.get(name_),
                                      max_length.get(name_))
                     for name_, column in columns],
    }
    if not is_data_frame(X):
        metadata["array_dtype"] = str(np.asarray(X).dtype)
    if task == "classification":
        metadata["classes"] = [plain(value) for value in model.classes_]
        metadata["probabilities"] = hasattr(model, "predict_proba")
    needed = code_the_model_needs(model)
    modules = own_code(needed)
    rows = training_rows(columns, range(min(CHECK_ROWS * 5, len(columns[0][1]))), metadata["features"])
    mark_nullable(model, metadata, rows)
    accepted, difference = check_round_trip(model, X, columns, metadata)
    metadata["example"] = example_row(example, columns, metadata["features"])
    check_example(model, metadata, bounds, example is not None)
    libraries = PINNED_LIBRARIES + (("pandas",) if metadata["input"] == "dataframe" else ())

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    data = buffer.getvalue()
    if modules:
        check_loads_in_fresh_python(data, modules, needed)
    sha256 = sha256_of(data)
    metadata["modules"] = modules
    graph, metadata["engine"] = compiled(model, metadata, columns, engine)
    if graph is not None:
        libraries += ("onnxruntime",)
    metadata.update(model_version=f"{slug(name)}-{sha256[:12]}",
                    checked={"rows": len(accepted), "largest_difference": difference,
                             "relative_tolerance": RELATIVE_TOLERANCE, "absolute_tolerance": ABSOLUTE_TOLERANCE},
                    metrics=metrics or {}, sha256=sha256, versions=installed_versions(libraries))
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(model_dir / MODEL_FILE, data)
    if graph is not None:
        write_atomically(model_dir / GRAPH_FILE, graph)
    else:  # a graph left from an earlier save would not be this model's
        (model_dir / GRAPH_FILE).unlink(missing_ok=True)
    write_atomically(model_dir / METADATA_FILE, (json.dumps(metadata, indent=2) + "\n").encode())
    return metadata


# --- loading ------------------------------------------------------------------------------------

def proof_rows(columns, metadata):
    """Return the rows the compiled graph is proven on: training rows the schema accepts, as the app checks them.

    Then, for each feature that may be missing, rows with it missing, and the example row.
    """
    validator = InstanceValidator(metadata, max_rows=1)
    features = metadata["features"]
    rows = []
    for row in training_rows(columns, range(min(PROOF_ROWS, len(columns[0][1]))), features):
        try:
            rows.append(validator.row(row, 0))
        except RequestError:  # outside bounds= on purpose: the app refuses it too
            continue
    complete = [row for row in rows if None not in row][:CHECK_ROWS] or rows[:CHECK_ROWS]
    for index, feature in enumerate(features):
        if feature["nullable"]:
            rows += [row[:index] + [None] + row[index + 1:] for row in complete]
    return rows + [validator.row(metadata["example"], 0)]


def compiled(model, metadata, columns, engine):
    """Return (the ONNX graph or None, the metadata's "engine"): what the app will serve, and why."""
    if engine == "sklearn":
        return None, {"name": "sklearn", "reason": 'save_model was called with engine="sklearn"'}
    reason = why_not_compiled(metadata)
    if reason:  # said before the rows are made: they are not needed
        return None, {"name": "sklearn", "reason": reason}
    rows = proof_rows(columns, metadata)
    graph, engine = compile_model(model, metadata, rows)
    if graph is not None:
        engine["sha256"] = sha256_of(graph)
        engine["example_answer"] = example_answer(*SklearnEngine(model, metadata).answers(as_columns(rows[-1:])),
                                                  metadata["task"])
    return graph, engine


def example_answer(labels, numbers, task):
    """Return the first row's answer as JSON values: {"value"}, or {"label"} and maybe {"probabilities"}."""
    if task == "regression":
        return {"value": float(labels[0])}
    answer = {"label": labels.tolist()[0]}
    if numbers is not None:
        answer["probabilities"] = numbers[0].tolist()
    return answer


def answer_arrays(answer):
    """Return example_answer's JSON values as engines answer: (labels or values, probabilities or None)."""
    if "value" in answer:
        return np.array([answer["value"]], dtype=np.float64), None
    probabilities = answer.get("probabilities")
    return (np.array([answer["label"]], dtype=object),
            None if probabilities is None else np.array([probabilities], dtype=np.float64))


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


def open_verified(model_path, expected_sha256):
    """Open the model file and check its sha256 while reading it in chunks; return it open, at its start.

    The model is then unpickled from this same open file: the bytes checked are the bytes loaded,
    and the file is never held in memory whole (loading peaks near the model's own size, not twice it).
    """
    try:
        file = open(model_path, "rb")
    except FileNotFoundError:
        raise model_error(model_path, "file", "present", "nothing", RETRAIN_HINT) from None
    digest = hashlib.sha256()
    while chunk := file.read(READ_CHUNK_BYTES):
        digest.update(chunk)
    if digest.hexdigest() != expected_sha256:
        file.close()
        raise model_error(model_path, "sha256", expected_sha256, digest.hexdigest(),
                          "this is not the file the metadata describes: restore it or " + RETRAIN_HINT)
    file.seek(0)
    return file


def missing_code(error):
    """Say which function, class or module a model needs and cannot find, and where it must live."""
    if isinstance(error, ModuleNotFoundError):
        return (f"the model needs the module {error.name!r}, which Python cannot import here: put it in the "
                "repository, importable from its top folder where gunicorn starts (for example "
                f"{(error.name or 'module').replace('.', '/')}.py), and commit it (git status lists it if it is not)")
    found = re.search(r"attribute '([^']+)' on <module '([^']+)'", str(error))
    if not found:
        return f"loadable joblib file expected yes, found AttributeError: {str(error).splitlines()[0][:200]}"
    name, module = found.groups()
    return (f"the model needs {name!r} from the module {module!r}, which has none: if {name} was defined in "
            "the notebook or script that fitted the model, move it into a module file inside the repository, "
            "import it from there and fit the model again; otherwise put it back in that module")


def unpickle(file, model_path):
    """Unpickle the (already verified) open file, treating a scikit-learn version warning as an error."""
    import joblib
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            return joblib.load(file)
        except InconsistentVersionWarning as warning:
            raise model_error(model_path, "scikit-learn version", warning.original_sklearn_version,
                              warning.current_sklearn_version, REINSTALL_HINT) from None
        except (ModuleNotFoundError, AttributeError) as error:
            raise ModelError(f"model check failed for {model_path}: {missing_code(error)}") from None
        except Exception as error:  # a corrupt pickle can fail in many ways; all mean "do not serve"
            raise model_error(model_path, "loadable joblib file", "yes",
                              f"{type(error).__name__}: {error}".splitlines()[0], RETRAIN_HINT) from None


def read_verified(path, expected_sha256):
    """Return the whole (small) file at path once its sha256 matches; raise ModelError otherwise."""
    with open_verified(path, expected_sha256) as file:
        return file.read()


def load_engine(model_dir=None):
    """Verify the artifact in model_dir and return (the engine that serves it, its metadata).

    With a proven ONNX graph, the graph alone is loaded and no pickle is: the app trusts only the
    file whose sha256 the metadata gives, and checks that the graph still gives the example row's
    answer recorded at save time. Otherwise the scikit-learn model is loaded.
    """
    model_dir = pathlib.Path(model_dir or MODEL_DIR)
    metadata = read_metadata(model_dir)
    engine = metadata.get("engine") or {"name": "sklearn"}
    if engine["name"] != "onnx":
        model, metadata = load_model_and_metadata(model_dir)
        return SklearnEngine(model, metadata), metadata
    # The model file is not loaded, but it is checked: the artifact's files are one whole, and a
    # model file replaced alone would otherwise go unnoticed while the old graph is served.
    open_verified(model_dir / MODEL_FILE, metadata["sha256"]).close()
    path = model_dir / GRAPH_FILE
    graph = read_verified(path, engine.get("sha256"))
    check_versions(metadata, model_dir / METADATA_FILE)
    try:
        served = OnnxEngine(graph, metadata)
        check_example_answer(served, metadata)
    except EngineError as error:
        raise ModelError(f"model check failed for {path}: {error}: {RETRAIN_HINT}") from None
    return served, metadata


def check_example_answer(served, metadata):
    """Raise EngineError unless the graph answers the example row as the model did at save time."""
    engine = metadata["engine"]
    recorded = engine.get("example_answer")
    found = served.answers(InstanceValidator(metadata, max_rows=1).checked({"instances": [metadata["example"]]}))
    try:  # "equal" as the save-time proof means it (convert.largest_difference)
        graph_difference(answer_arrays(recorded or {"label": None}), found, engine["precision"])
    except ValueError:
        raise EngineError(f"the graph answers the example row {shown(example_answer(*found, metadata['task']))}, "
                          f"the model answered {shown(recorded)}: this graph is not the model's") from None


def load_model_and_metadata(model_dir=None):
    """Verify the artifact in model_dir (default: the package's model folder); return (model, metadata)."""
    model_dir = pathlib.Path(model_dir or MODEL_DIR)
    metadata = read_metadata(model_dir)
    with open_verified(model_dir / MODEL_FILE, metadata["sha256"]) as file:
        check_versions(metadata, model_dir / METADATA_FILE)
        return unpickle(file, model_dir / MODEL_FILE), metadata


def load_model(model_dir=None):
    """Verify the artifact in model_dir (default: the package's model folder) and return the model."""
    model, _metadata = load_model_and_metadata(model_dir)
    return model
