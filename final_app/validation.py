"""Check a /predict request body against the model's input schema, and build what the model takes.

InstanceValidator.rows() is the rule book: one loop over the rows with a check per value (its
type, and its range or allowed values, or null where the feature may be missing), and a message
naming the row and field of the first problem. For a model that takes an array of numbers,
matrix() gives the same verdicts for a batch over twice as fast, by checking whole columns at once
with numpy, and falls back to rows() whenever it finds anything unusual, so every message comes
from one place. model_input() turns checked rows into what the model was fitted on: a float64
array, or a pandas DataFrame with the training columns, order and dtypes.
"""
import itertools
import json
import math

import numpy as np
import orjson

EXAMPLE = '{"instances": [[...], ...]}'


class RequestError(Exception):
    """A request the API refuses; message is for the person who sent it, status is the HTTP code."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.message = message
        self.status = status


def json_type(value):
    """Return the JSON name of a parsed value's type: "string", "boolean", "null", ..."""
    names = {str: "string", bool: "boolean", type(None): "null", list: "array", dict: "object",
             int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


def shown(value):
    """Return a short printable form of a value for an error message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # RecursionError: arrays nested ~1000 deep
        text = repr(type(value).__name__)
    return text if len(text) <= 40 else text[:37] + "..."


def reject_constant(name):
    """Refuse NaN, Infinity and -Infinity, which Python's json would otherwise accept."""
    raise ValueError(f"{name} is not a JSON number: send finite numbers only")


def parse_json(body, example=EXAMPLE):
    """Parse the raw request body; raise RequestError(400) if it is empty or not valid JSON."""
    if not body:
        raise RequestError(f"the request body is empty: send a JSON object like {example}")
    try:
        # orjson reads a 1000-row body about 2.5 times as fast as the json module. It refuses
        # some bodies that json accepts (UTF-16 text, for one), and its error messages say less,
        # so anything it refuses is read again by json below, which accepts or refuses it as
        # before and says precisely what is wrong. Two differences remain, both harmless here:
        # an integer too big for 64 bits arrives as the nearest float (out of range either
        # way), and arrays may nest up to 1024 deep, where json stops at about 1000.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=reject_constant)
    except UnicodeDecodeError:
        raise RequestError("the request body is not valid UTF-8 text") from None
    except RecursionError:
        raise RequestError("the request body is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError is a ValueError, and so is our NaN refusal
        raise RequestError(f"the request body is not valid JSON: {error}") from None


# --- one value ----------------------------------------------------------------------------------

class BadValue(Exception):
    """A value that does not fit its feature; str() says what is expected ("must be ...")."""


def is_number(value):
    """True for a JSON number (type() rather than isinstance(): JSON true arrives as True, an int)."""
    return type(value) is float or type(value) is int


def unit_text(feature):
    """Return " cm" for a feature with a unit, "" for one without."""
    return f" {feature['unit']}" if feature.get("unit") else ""


def expected_text(feature):
    """Return what a feature's value must be, for messages: "a number", "one of ...", ..."""
    kind = feature["type"]
    if kind == "category":
        text = "one of " + ", ".join(shown(value) for value in feature["values"])
    else:
        text = {"number": "a number", "integer": "a whole number", "boolean": "true or false"}[kind]
    return text + (" or null" if feature.get("nullable") else "")


def value_checker(feature):
    """Return a function that returns a value as the model needs it, or raises BadValue."""
    kind, nullable = feature["type"], feature.get("nullable", False)
    expected = "must be " + expected_text(feature)

    def check_number(value):
        if not is_number(value):
            raise BadValue(expected)
        if kind == "integer":
            if type(value) is float and not value.is_integer():
                raise BadValue(expected)
            if not feature["min"] <= value <= feature["max"]:
                raise BadValue(f"must be a whole number between {feature['min']} and {feature['max']}"
                               f"{unit_text(feature)}")
            return int(value)
        if not feature["min"] <= value <= feature["max"]:  # also false for NaN
            raise BadValue(f"must be between {feature['min']} and {feature['max']}{unit_text(feature)}")
        return value

    def check_boolean(value):
        if type(value) is not bool:
            raise BadValue(expected)
        return value

    allowed = {(type(value), value) for value in feature.get("values", ())}

    def check_category(value):
        if type(value) not in (str, int, bool) or (type(value), value) not in allowed:
            raise BadValue(expected)
        return value

    check = {"number": check_number, "integer": check_number, "boolean": check_boolean,
             "category": check_category}[kind]

    def check_value(value):
        if value is None:
            if nullable:
                return None
            raise BadValue(expected)
        return check(value)

    return check_value


# --- a request ----------------------------------------------------------------------------------

def example_body(metadata):
    """Return a short request body built from the metadata's example row, for messages."""
    return json.dumps({"instances": [metadata["example"]]}) if metadata.get("example") else EXAMPLE


class InstanceValidator:
    """Validate {"instances": [...]} against the model's features, and build the model's input."""

    def __init__(self, metadata, max_rows):
        self.metadata = metadata
        features = metadata["features"]
        self.names = [feature["name"] for feature in features]
        self.name_set = set(self.names)
        self.checks = [(feature["name"], value_checker(feature)) for feature in features]
        self.max_rows = max_rows
        self.example = example_body(metadata)
        self.all_numbers = all(feature["type"] == "number" and not feature.get("nullable")
                               for feature in features)
        self.kind_of_values = "numbers" if self.all_numbers else "values"
        # A model fitted on a float64 array of numbers can take the column-at-a-time check below.
        self.takes_matrix = (self.all_numbers and metadata.get("input") == "array"
                             and metadata.get("array_dtype", "float64") == "float64")
        if self.all_numbers:
            self.low, self.high = feature_bounds(features)

    def model_input(self, payload):
        """Return the instances as the model takes them; raise RequestError if any is invalid."""
        if self.takes_matrix:
            return self.matrix(payload)
        return model_input(self.rows(payload), self.metadata)

    def rows(self, payload):
        """Return the instances as lists of values in model order; raise RequestError if invalid."""
        return self.checked_rows(self.instances(payload))

    def checked_rows(self, instances):
        """Check each instance in turn: its values in model order, or the error naming row and field."""
        return [self.row(row, index) for index, row in enumerate(instances)]

    def matrix(self, payload):
        """Return the instances as a float64 array, one row per instance, exactly as rows() would.

        Only for features that are all numbers. The common case, every row a list of plain
        numbers within bounds, is checked a column at a time. Anything else (rows given as
        objects, a wrong type, a value out of range) goes through checked_rows(), which accepts
        it or raises the error naming the row and field.
        """
        instances = self.instances(payload)
        if (set(map(type, instances)) == {list} and set(map(len, instances)) == {len(self.names)}
                and set(map(type, itertools.chain.from_iterable(instances))) <= {float, int}):
            try:
                X = np.array(instances, dtype=np.float64)
            except OverflowError:  # an integer too large for a float: out of range, said below
                pass
            else:
                if (X >= self.low).all() and (X <= self.high).all():
                    return X
        return np.array(self.checked_rows(instances), dtype=np.float64)

    def instances(self, payload):
        """Return payload["instances"] after checking the shape around it."""
        if type(payload) is not dict:
            raise RequestError(
                f"the request body must be a JSON object like {self.example}, got {json_type(payload)}")
        if "instances" not in payload:
            raise RequestError(f'missing key "instances": send a JSON object like {self.example}')
        extra = sorted(key for key in payload if key != "instances")
        if extra:
            raise RequestError(f'unexpected key {shown(extra[0])}: only "instances" is allowed')
        instances = payload["instances"]
        if type(instances) is not list:
            raise RequestError(f'"instances" must be an array of rows, got {json_type(instances)}')
        if not instances:
            raise RequestError(f'"instances" is empty: send 1 to {self.max_rows} rows')
        if len(instances) > self.max_rows:
            raise RequestError(f'"instances" has {len(instances)} rows, the limit is {self.max_rows}: '
                               "split them into smaller requests", status=413)
        return instances

    def row(self, row, index):
        """Return one row's values in model order; raise RequestError naming the row and field."""
        if type(row) is list:
            if len(row) != len(self.names):
                raise RequestError(f"instances[{index}] has {len(row)} values, expected "
                                   f"{len(self.names)} in this order: {', '.join(self.names)}")
            values = row
        elif type(row) is dict:
            if row.keys() != self.name_set:
                raise RequestError(self.wrong_names(row, index))
            values = [row[name] for name in self.names]
        else:
            raise RequestError(f"instances[{index}] must be an array of {len(self.names)} "
                               f"{self.kind_of_values} or an object with keys {', '.join(self.names)}, "
                               f"got {json_type(row)}")
        checked = []
        for value, (name, check) in zip(values, self.checks):
            try:
                checked.append(check(value))
            except BadValue as problem:
                raise RequestError(f"instances[{index}].{name} {problem}, got {described(value)}") from None
        return checked

    def wrong_names(self, row, index):
        """Describe which feature names a row object is missing, and which it has extra."""
        missing = [name for name in self.names if name not in row]
        extra = sorted(str(key) for key in row if key not in self.name_set)
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("unexpected " + ", ".join(shown(key) for key in extra))
        return f"instances[{index}]: {'; '.join(parts)} (expected exactly {', '.join(self.names)})"


def described(value):
    """Return a value as an error message shows it: 'null', '-1.4', 'string "abc"', ..."""
    if value is None or is_number(value):
        return shown(value)
    return f"{json_type(value)} {shown(value)}"


def feature_bounds(features):
    """Return (lowest, highest) allowed value of each feature, in model order, as float64 arrays."""
    low = np.array([feature["min"] for feature in features], dtype=np.float64)
    high = np.array([feature["max"] for feature in features], dtype=np.float64)
    return low, high


# --- what the model takes -----------------------------------------------------------------------

def model_input(rows, metadata):
    """Return checked rows (None where missing) as the model was fitted: an array or a DataFrame."""
    if metadata["input"] == "array":
        dtype = np.dtype(metadata.get("array_dtype", "float64"))
        if dtype.kind in "fO":
            rows = [[math.nan if value is None else value for value in row] for row in rows]
        return np.array(rows, dtype=dtype)
    import pandas as pd  # only for a model fitted on a DataFrame

    columns = {feature["name"]: data_frame_column(pd, feature, [row[index] for row in rows])
               for index, feature in enumerate(metadata["features"])}
    return pd.DataFrame(columns)


def data_frame_column(pd, feature, values):
    """Return one column with the dtype (and for a category, the categories) it had in training."""
    if feature["dtype"] == "category":
        dtype = pd.CategoricalDtype(feature["values"], ordered=feature.get("ordered", False))
        return pd.Series(values, dtype=dtype)
    if feature["dtype"] == "object":  # pandas reads a missing text value as NaN, not None
        return pd.Series([math.nan if value is None else value for value in values], dtype=object)
    return pd.Series(values, dtype=feature["dtype"])


# --- the HTML form ------------------------------------------------------------------------------

def feature_label(name):
    """Return the words a person reads for a feature name: "sepal_length" -> "Sepal length"."""
    return name.replace("_", " ").capitalize()


def form_choices(feature):
    """Return [(form value, text shown)] for a feature offered as a choice list."""
    if feature["type"] == "boolean":
        return [("true", "yes"), ("false", "no")]
    return [(json.dumps(value) if type(value) is not str else value, str(value))
            for value in feature["values"]]


def parse_form(form, features, example=None):
    """Return (row, errors) from the page's form: the values in model order, or a message per field."""
    row, errors = [], {}
    for index, feature in enumerate(features):
        text = form.get(feature["name"], "").strip()
        try:
            row.append(form_value(feature, text, example[index] if example else None))
        except BadValue as problem:
            errors[feature["name"]] = str(problem)
    return row, errors


def form_value(feature, text, example):
    """Return one form field's text as the feature's value, or raise BadValue with what to enter."""
    name, kind, unit = feature_label(feature["name"]).lower(), feature["type"], unit_text(feature)
    if not text:
        if feature.get("nullable"):
            return None
        verb = "Enter" if kind in ("number", "integer") else "Choose"
        raise BadValue(f"{verb} the {name}{' in' + unit if unit else ''}.")
    if kind in ("boolean", "category"):
        for value, (form_text, _shown) in zip(feature.get("values", [True, False]), form_choices(feature)):
            if text == form_text:
                return value
        raise BadValue(f"Choose one of: {', '.join(shown for _text, shown in form_choices(feature))}.")
    like = f", like {example}" if example is not None else ""
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"Enter a {'whole ' if kind == 'integer' else ''}number"
                       f"{' in' + unit if unit else ''}{like}.") from None
    if kind == "integer" and value.is_integer():
        value = int(value)
    elif kind == "integer":
        raise BadValue(f"Enter a whole number{' in' + unit if unit else ''}{like}.")
    if not feature["min"] <= value <= feature["max"]:  # also false for nan; inf is above any bound
        raise BadValue(f"Enter a number from {feature['min']} to {feature['max']}{unit}.")
    return value
