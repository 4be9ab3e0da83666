"""Check a /predict request body and turn it into rows of numbers, or say exactly what is wrong.

InstanceValidator.rows() is the rule book: one loop over the rows with a type and range check
per value, and a message naming the row and field of the first problem. matrix() gives the same
verdicts for a batch over twice as fast, by checking whole columns at once with numpy, and
falls back to rows() whenever it finds anything unusual, so every message comes from one place.
"""
import itertools
import json

import numpy as np
import orjson

EXAMPLE = '{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


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


def parse_json(body):
    """Parse the raw request body; raise RequestError(400) if it is empty or not valid JSON."""
    if not body:
        raise RequestError(f"the request body is empty: send a JSON object like {EXAMPLE}")
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


class InstanceValidator:
    """Validate {"instances": [...]} against the model's features and their bounds."""

    def __init__(self, features, max_rows):
        self.names = [feature["name"] for feature in features]
        self.name_set = set(self.names)
        self.bounds = [(feature["name"], feature["min"], feature["max"], feature.get("unit", ""))
                       for feature in features]
        self.max_rows = max_rows
        self.low, self.high = feature_bounds(features)

    def rows(self, payload):
        """Return the instances as lists of numbers in model order; raise RequestError if invalid."""
        return self.checked_rows(self.instances(payload))

    def checked_rows(self, instances):
        """Check each instance in turn: its values in model order, or the error naming row and field."""
        return [self.row(row, index) for index, row in enumerate(instances)]

    def matrix(self, payload):
        """Return the instances as a float64 array, one row per instance, exactly as rows() would.

        The common case, every row a list of plain numbers within bounds, is checked a column
        at a time. Anything else (rows given as objects, a wrong type, a value out of range)
        goes through checked_rows(), which accepts it or raises the error naming the row and field.
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
                f"the request body must be a JSON object like {EXAMPLE}, got {json_type(payload)}")
        if "instances" not in payload:
            raise RequestError(f'missing key "instances": send a JSON object like {EXAMPLE}')
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
            raise RequestError(f"instances[{index}] must be an array of {len(self.names)} numbers "
                               f"or an object with keys {', '.join(self.names)}, got {json_type(row)}")
        for value, (name, low, high, unit) in zip(values, self.bounds):
            # type() rather than isinstance(): JSON true arrives as True, and bool is an int subclass.
            if (type(value) is not float and type(value) is not int) or not low <= value <= high:
                raise RequestError(self.bad_value(value, index, name, low, high, unit))
        return values

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

    @staticmethod
    def bad_value(value, index, name, low, high, unit):
        """Describe a value that is not a number or is out of its feature's range."""
        if type(value) is not float and type(value) is not int:
            return f"instances[{index}].{name} must be a number, got {json_type(value)} {shown(value)}"
        return f"instances[{index}].{name} must be between {low} and {high} {unit}, got {shown(value)}"


def feature_bounds(features):
    """Return (lowest, highest) allowed value of each feature, in model order, as float64 arrays."""
    low = np.array([feature["min"] for feature in features], dtype=np.float64)
    high = np.array([feature["max"] for feature in features], dtype=np.float64)
    return low, high


def feature_label(name):
    """Return the words a person reads for a feature name: "sepal_length" -> "Sepal length"."""
    return name.replace("_", " ").capitalize()


def parse_form(form, features):
    """Return (row, errors) from the page's form: the numbers in model order, or a message per field."""
    row, errors = [], {}
    for feature in features:
        name, low, high, unit = feature["name"], feature["min"], feature["max"], feature["unit"]
        text = form.get(name, "").strip()
        if not text:
            errors[name] = f"Enter the {feature_label(name).lower()} in {unit}."
            continue
        try:
            value = float(text)
        except ValueError:
            errors[name] = f"Enter a number in {unit}, like 5.1."
            continue
        if not low <= value <= high:  # also false for nan; inf is above any bound
            errors[name] = f"Enter a number from {low} to {high} {unit}."
            continue
        row.append(value)
    return row, errors
