"""Check a /predict request body against the model's input schema, and build what the model takes.

InstanceValidator.row() is the rule book: a check per value (its type, and its range or allowed
values, or null where the feature may be missing), and a message naming the row and field of the
first problem. The usual request, every value plainly fine, is checked a column at a time first
(columns_if_plain, or for a model that takes an array of numbers, matrix() with numpy), which
gives the same verdicts several times as fast; anything unusual goes a row at a time, so every
message comes from one place. checked() gives the engines (final_app/engines.py) the checked
values: a float64 array for a model of numbers, else one list of values per feature. model_input()
turns those columns into what the model was fitted on: a float64 array, or a pandas DataFrame with
the training columns, order and dtypes.
"""
import datetime
import itertools
import json
import math
import re

import numpy as np
import orjson

EXAMPLE = '{"instances": [[...], ...]}'
# The ISO 8601 forms a date or a date and time may take: 2024-05-01, 2024-05-01T12:30:00[.123][+02:00 or Z]
DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?", re.ASCII)


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


def too_many_values(body, limit):
    """True if a JSON body holds more than limit values, told apart before it is parsed.

    Parsed, four bytes of JSON ("[],") become a Python list of 56 bytes: a body that is nothing
    but empty arrays would grow twenty-fold in memory. So what opens or separates values (commas,
    [ and {) and the strings are counted outside the strings first, and a body that holds more
    than limit of them is refused as it is. The quick count over the raw bytes settles every
    ordinary body; only one whose strings hold many commas or brackets is read string by string,
    and never past the limit.
    """
    if len(body) <= limit:  # each of those is at least one byte: none to count
        return False
    if body.count(b",") + body.count(b"[") + body.count(b"{") <= limit:
        return False
    text = body.decode("utf-8", "replace")
    count = strings = position = 0
    while count <= limit and strings <= limit:
        quote = text.find('"', position)
        end = len(text) if quote < 0 else quote
        count += text.count(",", position, end) + text.count("[", position, end) + text.count("{", position, end)
        if quote < 0:
            break
        try:
            position = json.decoder.scanstring(text, quote + 1)[1]
        except ValueError:  # not valid JSON from here on: the parser will say so
            break
        strings += 1
    return count > limit or strings > limit


# --- one value ----------------------------------------------------------------------------------

class BadValue(Exception):
    """A value that does not fit its feature; str() says what is expected ("must be ...")."""


def is_number(value):
    """True for a JSON number (type() rather than isinstance(): JSON true arrives as True, an int)."""
    return type(value) is float or type(value) is int


def unit_text(feature):
    """Return " cm" for a feature with a unit, "" for one without."""
    return f" {feature['unit']}" if feature.get("unit") else ""


def short(value, limit=30):
    """Return a value for a list in a message: JSON, a long text cut to limit characters."""
    if type(value) is str and len(value) > limit:
        return json.dumps(value[:limit - 3] + "...")
    return shown(value)


def category_text(values):
    """Return "one of ..." for a category's values: all of them when few, else a few and the count."""
    listed = [short(value) for value in values[:6]]
    if len(values) <= 6 and sum(map(len, listed)) <= 150:
        return "one of " + ", ".join(listed)
    return f"one of {len(values)} values such as {', '.join(listed[:3])} (GET /model lists them all)"


def time_text(feature):
    """Return what a date or date-time value must look like, with its range."""
    between = f" from {feature['min']} to {feature['max']}"
    if feature["type"] == "date":
        return "a date (YYYY-MM-DD)" + between
    offset = "with" if feature.get("timezone") else "without"
    return f"an ISO 8601 date and time {offset} a UTC offset" + between


def expected_text(feature):
    """Return what a feature's value must be, for messages: "a number", "one of ...", ..."""
    kind = feature["type"]
    if kind == "category":
        text = category_text(feature["values"])
    elif kind in ("date", "datetime"):
        text = time_text(feature)
    elif kind == "text":
        text = f"text of at most {feature['max_length']} characters"
    else:
        text = {"number": "a number", "integer": "a whole number", "boolean": "true or false"}[kind]
    return text + (" or null" if feature.get("nullable") else "")


def parse_time(feature, value):
    """Return an ISO 8601 text as a date or datetime of the feature's kind, or None if it is not one."""
    try:
        if feature["type"] == "date":
            return datetime.date.fromisoformat(value) if DATE.fullmatch(value) else None
        moment = datetime.datetime.fromisoformat(value) if DATE_TIME.fullmatch(value) else None
    except ValueError:  # a date that does not exist, like 2024-02-30
        return None
    if moment is not None and (moment.tzinfo is None) != (feature.get("timezone") is None):
        return None  # an offset where the column has none, or none where it has one
    return moment


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

    def check_text(value):
        if type(value) is not str or len(value) > feature["max_length"]:
            raise BadValue(expected)
        return value

    if kind in ("date", "datetime"):
        low, high = (parse_time(feature, feature[end]) for end in ("min", "max"))

    def check_time(value):
        moment = parse_time(feature, value) if type(value) is str else None
        if moment is None or not low <= moment <= high:
            raise BadValue(expected)
        return moment

    check = {"number": check_number, "integer": check_number, "boolean": check_boolean,
             "category": check_category, "text": check_text, "date": check_time, "datetime": check_time}[kind]

    def check_value(value):
        if value is None:
            if nullable:
                return None
            raise BadValue(expected)
        return check(value)

    return check_value


def column_checker(feature):
    """Return a quick check of one column: True only if value_checker would return every value unchanged.

    False means "not sure", never "wrong": the rows are then checked one at a time.
    """
    kind, nullable = feature["type"], feature.get("nullable", False)
    allowed = {(type(value), value) for value in feature.get("values", ())}

    def present(column):
        return [value for value in column if value is not None] if nullable else column

    def numbers(column):
        values = present(column)
        if not set(map(type, values)) <= ({int} if kind == "integer" else {int, float}):
            return False  # bool is not int here: type(True) is bool
        # Python compares an int and a float exactly (numpy would round a large int first).
        return not values or (min(values) >= feature["min"] and max(values) <= feature["max"])

    def booleans(column):
        return set(map(type, present(column))) <= {bool}

    def categories(column):
        values = present(column)
        # The types first: a list or an object in the column cannot be looked up in a set.
        return set(map(type, values)) <= {str, int, bool} and allowed.issuperset(zip(map(type, values), values))

    def texts(column):
        values = present(column)
        return set(map(type, values)) <= {str} and max(map(len, values), default=0) <= feature["max_length"]

    def never(column):  # a date is parsed into another value: only value_checker makes it
        return False

    # A None where the feature may not be missing fails each check's types: NoneType is none of them.
    return {"number": numbers, "integer": numbers, "boolean": booleans, "category": categories,
            "text": texts}.get(kind, never)


# --- a request ----------------------------------------------------------------------------------

def example_body(metadata):
    """Return a short request body built from the metadata's example row, for messages."""
    body = json.dumps({"instances": [metadata["example"]]}) if metadata.get("example") else EXAMPLE
    return body if len(body) <= 120 else EXAMPLE


def names_text(names, budget=100):
    """Return feature names for a message: all of them when they fit in budget characters, else the
    first few and how many more."""
    listed = []
    for name in map(str, names):
        if len(", ".join(listed + [name])) > budget:
            return f"{', '.join(listed)} and {len(names) - len(listed)} more (GET /model lists them)"
        listed.append(name)
    return ", ".join(listed)


class InstanceValidator:
    """Validate {"instances": [...]} against the model's features, and build the model's input."""

    def __init__(self, metadata, max_rows):
        self.metadata = metadata
        features = metadata["features"]
        self.names = [feature["name"] for feature in features]
        self.name_set = set(self.names)
        self.checks = [(feature["name"], value_checker(feature)) for feature in features]
        self.column_checks = [column_checker(feature) for feature in features]
        self.max_rows = max_rows
        # At most this many values, strings and containers in a body: each row is an array or an
        # object of its values (and, in an object, as many names), plus a few around the rows.
        self.max_values = max_rows * (2 * len(self.names) + 2) + 16
        self.example = example_body(metadata)
        self.all_numbers = all(feature["type"] == "number" and not feature.get("nullable")
                               for feature in features)
        self.kind_of_values = "numbers" if self.all_numbers else "values"
        # A model fitted on a float64 array of numbers can take the column-at-a-time check below.
        self.takes_matrix = (self.all_numbers and metadata.get("input") == "array"
                             and metadata.get("array_dtype", "float64") == "float64")
        if self.all_numbers:
            self.low, self.high = feature_bounds(features)

    def parse(self, body):
        """Parse a request body; refuse (413) one holding more values than max_rows rows could, unparsed."""
        if too_many_values(body, self.max_values):
            raise RequestError(f"the request body holds more values than {self.max_rows} rows of "
                               f"{len(self.names)} features: split the rows into smaller requests", status=413)
        return parse_json(body, self.example)

    def checked(self, payload):
        """Return the instances checked, as the engines take them; raise RequestError if any is invalid.

        For a model fitted on an array of numbers, a float64 array with a row per instance; for
        any other, a list of values per feature (a column), in model order, None where missing.
        """
        return self.matrix(payload) if self.takes_matrix else self.checked_columns(self.instances(payload))

    def model_input(self, payload):
        """Return the instances as the scikit-learn model takes them; raise RequestError if any is invalid."""
        checked = self.checked(payload)
        return checked if self.takes_matrix else model_input(checked, self.metadata)

    def rows(self, payload):
        """Return the instances as lists of values in model order; raise RequestError if invalid."""
        return self.checked_rows(self.instances(payload))

    def checked_columns(self, instances):
        """Check each instance: return the values a column per feature, or raise the error naming row and field.

        The common case, every row of the same shape and every value plainly fine, is checked a
        column at a time (columns_if_plain). Anything else goes a row at a time, which accepts it
        or raises the error naming the row and field: the values accepted, and the messages, are
        the same either way.
        """
        columns = self.columns_if_plain(instances)
        if columns is None:
            columns = as_columns([self.row(row, index) for index, row in enumerate(instances)])
        return columns

    def checked_rows(self, instances):
        """Check each instance in turn: its values in model order (see checked_columns)."""
        return [list(row) for row in zip(*self.checked_columns(instances))]

    def columns_if_plain(self, instances):
        """Return the instances' values a column at a time if every column passes its quick check, else None."""
        shapes = set(map(type, instances))
        if shapes == {dict} and set(map(len, instances)) == {len(self.names)}:
            # As many keys as names, and every name found: the keys are the names.
            try:
                columns = [[row[name] for row in instances] for name in self.names]
            except KeyError:  # a name missing, another key in its place: the row check says which
                return None
        elif shapes == {list} and set(map(len, instances)) == {len(self.names)}:
            columns = [list(column) for column in zip(*instances)]
        else:
            return None
        for column, is_plain in zip(columns, self.column_checks):
            if not is_plain(column):
                return None
        return columns

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
                                   f"{len(self.names)} in this order: {names_text(self.names)}")
            values = row
        elif type(row) is dict:
            if row.keys() != self.name_set:
                raise RequestError(self.wrong_names(row, index))
            values = [row[name] for name in self.names]
        else:
            raise RequestError(f"instances[{index}] must be an array of {len(self.names)} "
                               f"{self.kind_of_values} or an object with keys {names_text(self.names)}, "
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
            parts.append("missing " + names_text(missing, budget=60))
        if extra:
            parts.append("unexpected " + ", ".join(short(key) for key in extra[:2])
                         + (f" and {len(extra) - 2} more" if len(extra) > 2 else ""))
        message = f"instances[{index}]: {'; '.join(parts)}"
        expected = f" (expected exactly {names_text(self.names)})"
        return message + expected if len(message + expected) <= 300 else message


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

def as_columns(rows):
    """Return rows of values (lists in model order) as a list of values per feature."""
    return [list(column) for column in zip(*rows)]


def model_input(columns, metadata):
    """Return checked values, a list per feature (None where missing), as the model was fitted.

    That is an array with a row per instance, or a DataFrame with the training columns and dtypes.
    """
    if metadata["input"] == "array":
        dtype = np.dtype(metadata.get("array_dtype", "float64"))
        if dtype.kind == "O":  # numpy makes None NaN in a float array itself, not in an object one
            columns = [[math.nan if value is None else value for value in column] for column in columns]
        return np.ascontiguousarray(np.array(columns, dtype=dtype).T)  # a row per instance, as fitted
    import pandas as pd  # only for a model fitted on a DataFrame

    return pd.DataFrame({feature["name"]: data_frame_column(pd, feature, values)
                         for feature, values in zip(metadata["features"], columns)})


def data_frame_column(pd, feature, values):
    """Return one column with the dtype (and for a category, the categories) it had in training."""
    if feature["type"] in ("date", "datetime"):
        return time_column(pd, feature, values)
    if feature["dtype"] == "category":
        dtype = pd.CategoricalDtype(feature["values"], ordered=feature.get("ordered", False))
        return pd.Series(values, dtype=dtype)
    if feature["dtype"] == "object":  # pandas reads a missing text value as NaN, not None
        return pd.Series([math.nan if value is None else value for value in values], dtype=object)
    return pd.Series(values, dtype=feature["dtype"])


def time_column(pd, feature, values):
    """Return a date or date-time column (dates, datetimes or ISO 8601 texts) with its training dtype."""
    zone = feature.get("timezone")
    aware = zone is not None and feature["type"] == "datetime"
    moments = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", utc=aware)
    if zone is not None:
        moments = moments.dt.tz_convert(zone) if aware else moments.dt.tz_localize(zone)
    return moments.astype(feature["dtype"])

