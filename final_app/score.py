"""Score a whole file with the served model: python -m final_app.score INPUT OUTPUT [options]

    python -m final_app.score customers.csv scored.csv               # MODEL_DIR as for the app
    python -m final_app.score in.parquet out.parquet --model-dir models/penguins
    python -m final_app.score big.csv scored.csv --engine dask       # a Dask LocalCluster
    python -m final_app.score big.csv scored.csv --engine dask --scheduler tcp://10.0.0.5:8786

INPUT and OUTPUT are CSV or Parquet, by extension, on disk or at any fsspec URL (s3://... with
s3fs installed). The output holds the input's columns, then the answers: `label` and one
`probability_<class>` column per class for a classifier, `value` for a regressor, one row per
scored input row, in the input's order.

Every row goes through the API's own check (final_app/validation.py). A refused row goes to the
errors file (--errors, by default OUTPUT's name with .errors.csv) with its row number (0 for the
first row under the header, as pandas counts), the field and the API's message, and the run goes
on. Outputs are written under a temporary name and renamed when complete: they appear whole or
not at all. Exit status: 0 every row scored, 1 some refused, 2 it could not run (one line says why).

How a CSV cell becomes the value a request would send: an empty cell is null; in a number column,
text written as a JSON number is that number (anything else stays text, and is refused as the API
refuses "abc"); true and false are booleans; a category's values are read as they are written
in the metadata; everything else is text, and dates are ISO 8601 text. Parquet keeps its types
(NaN is null); text in it is read like a CSV cell.

The file is read in chunks of about --chunk-rows rows, so memory stays flat whatever its size.
Most cells are checked a column at a time (pandas); a row that check does not pass goes through
InstanceValidator.row, which has the last word: the rows accepted and refused, and the messages,
are exactly the API's. With --engine dask each partition goes through the same score_chunk().

The web process never imports this module (nor pandas, pyarrow, dask or tqdm through it).
"""
import argparse
import contextlib
import dataclasses
import datetime
import decimal
import io
import json
import os
import posixpath
import re
import shutil
import sys
import time
import uuid

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from final_app.artifact import ModelError, load_engine
from final_app.openapi import probability_keys
from final_app.validation import DATE, BadValue, InstanceValidator, RequestError, value_checker

DEFAULT_CHUNK_ROWS = 20_000
# A text the JSON grammar reads as a number (RE2 and Python's re read it the same way).
JSON_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"
IS_JSON_NUMBER = re.compile(JSON_NUMBER)
# Integers from here on are not all exact as float64: leave them to the row-by-row check.
EXACT_INTEGER_LIMIT = 2.0 ** 53
ERROR_COLUMNS = ("row", "field", "message")
SCHEDULER_TIMEOUT = "10s"  # how long to try to reach a --scheduler before giving up


class CannotRun(Exception):
    """The command cannot run at all (exit status 2); str() is one line saying what to do."""


# --- what a cell means ---------------------------------------------------------------------------

def category_forms(feature):
    """Return {text: value} for a category's values that are not text (1, true), as a CSV writes them."""
    return {json.dumps(value): value for value in feature.get("values", ()) if type(value) is not str}


def cell_value(feature, text):
    """Return a CSV cell (text, None when empty) as the JSON value a request would send for it."""
    if text is None:
        return None
    kind = feature["type"]
    if kind in ("number", "integer") and IS_JSON_NUMBER.fullmatch(text):
        try:
            return json.loads(text)
        except ValueError:  # an integer of over 4300 digits, more than Python turns into an int: a double
            return float(text)  # (infinity, so out of range, as orjson reads it: "number is infinity")
    truth = text.lower() if text.lower() in ("true", "false") else None  # True, TRUE: as spreadsheets write them
    if kind == "boolean" and truth:
        return truth == "true"
    if kind == "category":
        return category_forms(feature).get(truth or text, text)
    return text


def typed_value(feature, value):
    """Return a typed (Parquet) value as the JSON value a request would send for it."""
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return cell_value(feature, value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, decimal.Decimal):  # a Parquet decimal column: a number, as JSON would send it
        return float(value)
    if isinstance(value, datetime.datetime):
        if feature["type"] == "date" and value.tzinfo is None and value.time() == datetime.time(0):
            return value.date().isoformat()  # pandas keeps dates as times at midnight
        return value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def request_value(feature, value):
    """Return one input cell, text or typed, as the JSON value a request would send for it."""
    return cell_value(feature, value) if isinstance(value, str) else typed_value(feature, value)


# --- checking a column at a time ---------------------------------------------------------------

def is_text(column):
    """True for a column of text (every CSV column; text columns of a Parquet file)."""
    return pd.api.types.is_string_dtype(column)  # for an object column: every value present is text


def one_by_one(feature, column, check):
    """Return (checked values, refused mask) for a column, each cell through the API's own check."""
    values, refused = [], np.zeros(len(column), dtype=bool)
    for position, value in enumerate(column.tolist()):
        try:
            values.append(check(request_value(feature, value)))
        except BadValue:
            values.append(None)
            refused[position] = True
    return values, refused


def checked_numbers(feature, numbers, missing, negative_zero):
    """Return (checked values, cells to look at again) for a column of numbers read as float64.

    The values are an array: int64 for an integer, float64 for a number that may not be missing
    (the model's own type), and Python objects with None where a number may be missing.
    """
    with np.errstate(invalid="ignore"):
        good = (numbers >= feature["min"]) & (numbers <= feature["max"]) & (np.abs(numbers) < EXACT_INTEGER_LIMIT)
        if feature["type"] == "integer":
            good &= numbers == np.floor(numbers)
        else:
            good &= ~negative_zero  # JSON's -0 is the integer 0, its -0.0 a float: leave both to the check
    values = np.where(good, numbers, 0).astype(np.int64) if feature["type"] == "integer" else numbers
    if feature.get("nullable"):
        values = values.astype(object)
        values[missing] = None
        good |= missing
    return values, ~good


def text_numbers(feature, texts):
    """Check a text column of a number or integer feature: the cells written as JSON numbers, in range."""
    missing = texts.isna().to_numpy()
    written_as_number = texts.str.fullmatch(JSON_NUMBER).fillna(False).to_numpy(dtype=bool)
    numbers = texts.where(written_as_number).astype("float64").to_numpy()
    negative_zero = (numbers == 0) & texts.str.startswith("-").fillna(False).to_numpy(dtype=bool)
    values, again = checked_numbers(feature, numbers, missing, negative_zero)
    return values, again | (~written_as_number & ~missing)


def typed_numbers(feature, column):
    """Check a Parquet column of numbers for a number or integer feature (NaN is null)."""
    numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(numbers)
    # A float's -0.0 is sent as -0.0 and checked as such: nothing to look at again.
    return checked_numbers(feature, numbers, missing, np.zeros(len(numbers), dtype=bool))


def text_categories(feature, texts):
    """Check a text column of a category whose values are all text: one of them, or null if allowed."""
    missing = texts.isna().to_numpy()
    good = texts.isin(feature["values"]).to_numpy(dtype=bool) | (missing & bool(feature.get("nullable")))
    return texts.astype(object).where(~missing, None).tolist(), ~good


def text_texts(feature, texts):
    """Check a column of free text: at most max_length characters, or null if allowed."""
    missing = texts.isna().to_numpy()
    short = (texts.str.len() <= feature["max_length"]).fillna(False).to_numpy(dtype=bool)
    good = short | (missing & bool(feature.get("nullable")))
    return texts.astype(object).where(~missing, None).tolist(), ~good


def text_dates(feature, texts):
    """Check a text column of dates: YYYY-MM-DD, a real day, within the range, or null if allowed."""
    missing = texts.isna().to_numpy()
    shaped = texts.str.fullmatch(DATE.pattern).fillna(False) & (texts >= feature["min"]) & (texts <= feature["max"])
    days = pd.to_datetime(texts.where(shaped), format="%Y-%m-%d", errors="coerce")
    good = days.notna().to_numpy() | (missing & bool(feature.get("nullable")))
    values = [None if day is pd.NaT else day.date() for day in days]
    return values, ~good


def checked_column(feature, column, check):
    """Return (checked values, cells to look at again): a column-at-a-time check where there is one."""
    kind = feature["type"]
    if is_text(column):
        text = column.astype("str")
        if kind in ("number", "integer"):
            return text_numbers(feature, text)
        if kind == "category" and all(type(value) is str for value in feature["values"]):
            return text_categories(feature, text)
        if kind == "text":
            return text_texts(feature, text)
        if kind == "date":
            return text_dates(feature, text)
    elif kind in ("number", "integer") and column.dtype.kind in "iuf":
        return typed_numbers(feature, column)
    return one_by_one(feature, column, check)


# --- a chunk -------------------------------------------------------------------------------------

def answer_names(metadata):
    """Return the names of the answer columns: value; or label and probability_<class> for each class."""
    if metadata["task"] == "regression":
        return ["value"]
    if not metadata.get("probabilities"):
        return ["label"]
    return ["label"] + [f"probability_{key}" for key in probability_keys(metadata["classes"])]


def field_and_problem(message, index, names):
    """Split the API's "instances[i].field problem" message into (field, problem)."""
    rest = message.removeprefix(f"instances[{index}].")
    name = max((name for name in names if rest.startswith(name + " ")), key=len)
    return name, rest[len(name) + 1:]


class ChunkScorer:
    """Check the rows of a chunk as the API does, and answer the good ones with the model's engine."""

    def __init__(self, engine, metadata):
        self.engine = engine
        self.metadata = metadata
        self.features = metadata["features"]
        self.names = [feature["name"] for feature in self.features]
        self.validator = InstanceValidator(metadata, max_rows=1)
        self.checks = [value_checker(feature) for feature in self.features]
        self.answer_names = answer_names(metadata)

    def missing_columns(self, columns):
        """Return the features a table with these columns lacks."""
        return [name for name in self.names if name not in columns]

    def checked_rows(self, frame, first_row):
        """Return (positions of the good rows, their checked values, errors as (row, field, message)).

        The checked values are what the API gives the engine: for a model of numbers only, a
        float64 array (validator.matrix), else one list of values per feature (validator.checked).
        """
        columns, again = [], np.zeros(len(frame), dtype=bool)
        for feature, check in zip(self.features, self.checks):
            values, look_again = checked_column(feature, frame[feature["name"]], check)
            columns.append(values)
            again |= look_again
        accepted, errors = self.looked_at_again(frame, np.flatnonzero(again), first_row)
        refused = np.zeros(len(frame), dtype=bool)
        refused[[row - first_row for row, _field, _message in errors]] = True
        good = np.flatnonzero(~refused)
        if self.validator.takes_matrix:
            matrix = np.column_stack(columns).astype(np.float64)
            for position, row in accepted.items():
                matrix[position] = row
            return good, matrix[good], errors
        columns = [column.tolist() if isinstance(column, np.ndarray) else list(column) for column in columns]
        for position, row in accepted.items():
            for column, value in zip(columns, row):
                column[position] = value
        good_positions = good.tolist()
        return good, [[column[position] for position in good_positions] for column in columns], errors

    def looked_at_again(self, frame, positions, first_row):
        """Send rows through the API's own row check: return ({position: checked row}, [(row, field, message)])."""
        accepted, errors = {}, []
        cells = [frame[name].iloc[positions].tolist() for name in self.names]
        for position, values in zip(positions.tolist(), zip(*cells)):
            values = [request_value(feature, value) for feature, value in zip(self.features, values)]
            try:
                accepted[position] = self.validator.row(values, first_row + position)
            except RequestError as error:
                field, problem = field_and_problem(error.message, first_row + position, self.names)
                errors.append((first_row + position, field, problem))
        return accepted, errors

    def answers(self, checked, count):
        """Return the answer columns for the checked values of count good rows, as {name: pyarrow array}."""
        if not count:
            return {name: pa.array([], type=self.answer_type(name)) for name in self.answer_names}
        labels, probabilities = self.engine.answers(checked)
        if self.metadata["task"] == "regression":
            return {"value": pa.array(np.asarray(labels, dtype=np.float64))}
        columns = {"label": pa.array(labels.tolist(), type=self.answer_type("label"))}
        for index, name in enumerate(self.answer_names[1:]):
            columns[name] = pa.array(probabilities[:, index])
        return columns

    def answer_type(self, name):
        """Return the Arrow type of an answer column (the classes' type for the label)."""
        return pa.array(self.metadata["classes"]).type if name == "label" else pa.float64()

    def score_chunk(self, table, first_row):
        """Return (the good rows with their answers, the refused rows with row, field and message)."""
        frame = table.to_pandas()
        good, checked, errors = self.checked_rows(frame, first_row)
        scored = table.take(pa.array(good, type=pa.int64()))
        for name, values in self.answers(checked, len(good)).items():
            scored = scored.append_column(name, values)
        return scored, self.error_table(table, errors, first_row)

    def error_table(self, table, errors, first_row):
        """Return the refused rows: row, field, message, then the input's own columns as read."""
        rows = [row for row, _field, _message in errors]
        refused = table.take(pa.array([row - first_row for row in rows], type=pa.int64()))
        front = {"row": pa.array(rows, type=pa.int64()),
                 "field": pa.array([field for _row, field, _message in errors], type=pa.string()),
                 "message": pa.array([message for _row, _field, message in errors], type=pa.string())}
        return pa.table({**front, **{name: refused[name] for name in table.column_names}})


# --- reading -------------------------------------------------------------------------------------

def file_format(url):
    """Return "csv" or "parquet" as the name's extension says, or raise CannotRun."""
    name = url.rstrip("/").lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if re.search(r"\.csv(\.(gz|bz2|xz|zst))?$", name):
        return "csv"
    raise CannotRun(f"{url}: name a .csv or .parquet file (the extension says which)")


@dataclasses.dataclass
class Source:
    """An input table: its URL, format, files (a Parquet folder has several) and column names."""

    url: str
    format: str
    files: list
    columns: list
    header: bytes = b""  # a CSV's first line, which each Dask partition is read with


def csv_header(url):
    """Return a CSV's first line: its column names."""
    with fsspec.open(url, "rb", compression="infer") as file:
        return file.readline()


def parquet_files(fs, path):
    """Return the Parquet file at path, or the parts of a Parquet folder in name order."""
    if fs.isdir(path):
        files = sorted(fs.glob(path.rstrip("/") + "/*.parquet"))
        if not files:
            raise CannotRun(f"{path}: a folder with no .parquet file in it")
        return [fs.unstrip_protocol(file) for file in files]
    return [fs.unstrip_protocol(path)]


def open_source(url):
    """Return the input's Source after checking it exists and has a header; raise CannotRun if not."""
    form = file_format(url)
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise CannotRun(f"{url}: no such file")
    if form == "parquet":
        files = parquet_files(fs, path)
        with fsspec.open(files[0], "rb") as file:
            columns = pq.ParquetFile(file).schema_arrow.names
        return Source(url, form, files, columns)
    header = csv_header(url)
    if not header.strip():
        raise CannotRun(f"{url}: the file is empty: its first line must name the columns")
    columns = pa_csv.read_csv(io.BytesIO(header)).column_names
    return Source(url, form, [url], columns, header)


def csv_options(source, block_size):
    """Return pyarrow's options to read a CSV with every column as text, an empty cell as null."""
    convert = pa_csv.ConvertOptions(column_types={name: pa.string() for name in source.columns},
                                    strings_can_be_null=True, quoted_strings_can_be_null=True)
    # One thread reads no blocks ahead (with threads, about 140 MB more for a 70 MB file), and is no slower.
    read = pa_csv.ReadOptions(block_size=block_size, use_threads=False)
    # Quoted values may hold line breaks: free text does.
    return dict(read_options=read, parse_options=pa_csv.ParseOptions(newlines_in_values=True), convert_options=convert)


# What pyarrow's "straddles two block boundaries" means here, and what to do about it.
STRADDLE_HINT = ("a row is longer than the bytes read at a time, which are guessed from the first rows' "
                 "length: pass a larger --chunk-rows (more rows, and so more bytes, at a time)")
MAX_BLOCK_BYTES = 256 << 20  # a first row of 50 MB must not make every block gigabytes long


def csv_block_size(source, chunk_rows):
    """Return how many bytes hold about chunk_rows rows of a CSV, from the length of its first lines.

    pyarrow reads a CSV a block at a time, and a row must fit in one block (see STRADDLE_HINT).
    """
    with fsspec.open(source.url, "rb", compression="infer") as file:
        sample = file.read(1 << 16)
    bytes_per_row = len(sample) / max(sample.count(b"\n"), 1)
    return min(max(int(chunk_rows * bytes_per_row), 1 << 12), MAX_BLOCK_BYTES)


def row_group_count(url):
    """Return how many row groups a Parquet file has."""
    with fsspec.open(url, "rb") as file:
        return pq.ParquetFile(file).metadata.num_row_groups


def parquet_tables(url, group, chunk_rows):
    """Yield one row group of a Parquet file as pyarrow Tables of at most chunk_rows rows."""
    with fsspec.open(url, "rb") as file:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=chunk_rows, row_groups=[group]):
            yield pa.Table.from_batches([batch])


def read_chunks(source, chunk_rows):
    """Yield the input as pyarrow Tables of about chunk_rows rows each, in order."""
    if source.format == "parquet":
        for url in source.files:
            for group in range(row_group_count(url)):
                yield from parquet_tables(url, group, chunk_rows)
        return
    options = csv_options(source, csv_block_size(source, chunk_rows))
    with fsspec.open(source.url, "rb", compression="infer") as file:
        reader = pa_csv.open_csv(file, **options)
        for batch in reader:
            yield pa.Table.from_batches([batch])


def input_schema(source):
    """Return the Arrow schema the input is read with: text for a CSV, the file's own for Parquet."""
    if source.format == "csv":
        return pa.schema([(name, pa.string()) for name in source.columns])
    with fsspec.open(source.files[0], "rb") as file:
        return pq.ParquetFile(file).schema_arrow


# --- writing -------------------------------------------------------------------------------------

def output_schema(scorer, source):
    """Return the output's schema: the input's columns, then the answers."""
    return pa.schema(list(input_schema(source)) + [(name, scorer.answer_type(name)) for name in scorer.answer_names])


def error_schema(source):
    """Return the errors file's schema: row, field, message, then the input's columns."""
    front = [("row", pa.int64()), ("field", pa.string()), ("message", pa.string())]
    return pa.schema(front + list(input_schema(source)))


class TableWriter:
    """Write tables one after another into an open binary file, as CSV or Parquet."""

    def __init__(self, file, form, schema, header=True):
        self.schema = schema
        if form == "csv":
            options = pa_csv.WriteOptions(include_header=header, quoting_style="needed")
            self.writer = pa_csv.CSVWriter(file, schema, write_options=options)
        else:
            self.writer = pq.ParquetWriter(file, schema)

    def write(self, table):
        """Append a table's rows (cast to the schema: a column of nulls only reads as another type)."""
        if table.num_rows:
            self.writer.write_table(table.cast(self.schema))

    def close(self):
        """Finish the file (Parquet writes its footer here)."""
        self.writer.close()


def errors_url(output):
    """Return the default errors file beside OUTPUT: scored.csv -> scored.errors.csv."""
    stem = re.sub(r"(\.csv(\.(gz|bz2|xz|zst))?|\.parquet|\.pq)$", "", output.rstrip("/"), flags=re.I)
    return stem + ".errors.csv"


class Staged:
    """Outputs written under temporary names beside their final ones, and renamed once all are complete."""

    def __init__(self):
        self.pending = []  # (file system, temporary path, final path)
        self.scratches = []  # (file system, folder): removed in the end, whatever happens

    def scratch(self, fs, folder):
        """Return a folder for intermediate files, removed by commit() and discard()."""
        self.scratches.append((fs, folder))
        return folder

    def add(self, url):
        """Return (file system, temporary path) for an output that will become url."""
        fs, final = fsspec.core.url_to_fs(url)
        parent = posixpath.dirname(final)
        if parent and not fs.exists(parent):
            fs.makedirs(parent, exist_ok=True)
        temporary = f"{final}.partial-{uuid.uuid4().hex[:8]}"
        self.pending.append((fs, temporary, final))
        return fs, temporary

    def commit(self):
        """Rename every temporary to its final name (a folder that was there is replaced)."""
        for fs, temporary, final in self.pending:
            if fs.isdir(final):
                fs.rm(final, recursive=True)
            fs.mv(temporary, final, recursive=fs.isdir(temporary))
        self.pending = []
        self.discard()

    def discard(self):
        """Remove every temporary: nothing half-written is left behind."""
        for fs, temporary in [(fs, temporary) for fs, temporary, _final in self.pending] + self.scratches:
            if fs.exists(temporary):
                fs.rm(temporary, recursive=True)
        self.pending, self.scratches = [], []


# --- the two engines -----------------------------------------------------------------------------

@dataclasses.dataclass
class Result:
    """What a run did: rows read, scored and refused, how long it took, and which Dask workers helped."""

    rows: int = 0
    scored: int = 0
    refused: int = 0
    seconds: float = 0.0
    workers: tuple = ()


def progress_bar(show):
    """Return a tqdm bar counting rows (shown on a terminal when show is None)."""
    from tqdm import tqdm

    return tqdm(unit=" rows", unit_scale=True, desc="scoring", disable=None if show is None else not show,
                file=sys.stderr, smoothing=0.1)


def score_locally(scorer, source, output, errors, staged, chunk_rows, bar):
    """Score the input chunk by chunk in this process, writing as it goes; return the Result."""
    result = Result()
    out_fs, out_path = staged.add(output)
    err_fs, err_path = staged.add(errors)
    with out_fs.open(out_path, "wb") as out_file, err_fs.open(err_path, "wb") as err_file:
        writer = TableWriter(out_file, file_format(output), output_schema(scorer, source))
        refused_writer = TableWriter(err_file, "csv", error_schema(source))
        for table in read_chunks(source, chunk_rows):
            scored, refused = scorer.score_chunk(table, result.rows)
            writer.write(scored)
            refused_writer.write(refused)
            result.rows += table.num_rows
            result.scored += scored.num_rows
            result.refused += refused.num_rows
            bar.update(table.num_rows)
        writer.close()
        refused_writer.close()
    return result


@dataclasses.dataclass
class Partition:
    """One piece of the input for a Dask worker: a byte range of a CSV, or a row group of a Parquet file."""

    index: int
    source: Source
    start: int = 0
    length: int = 0
    row_group: int = 0
    file: str = ""

    def tables(self, chunk_rows):
        """Yield the partition's rows as pyarrow Tables (a CSV block whole, Parquet in chunks)."""
        if self.source.format == "parquet":
            yield from parquet_tables(self.file, self.row_group, chunk_rows)
            return
        from fsspec.utils import read_block

        with fsspec.open(self.source.url, "rb") as file:
            block = read_block(file, self.start, self.length, delimiter=b"\n")
        data = block if self.start == 0 else self.source.header + block
        options = csv_options(self.source, max(len(data), 1 << 12) + 1)
        yield pa_csv.read_csv(io.BytesIO(data), **options)


def partitions(source, chunk_rows):
    """Split the input for Dask: CSV in byte ranges of about chunk_rows rows, Parquet by row groups."""
    if source.format == "parquet":
        groups = [(url, group) for url in source.files for group in range(row_group_count(url))]
        return [Partition(index, source, row_group=group, file=url) for index, (url, group) in enumerate(groups)]
    if not re.search(r"\.csv$", source.url, flags=re.I):
        raise CannotRun(f"{source.url}: a compressed CSV cannot be split between workers: "
                        "decompress it, or use --engine local")
    fs, path = fsspec.core.url_to_fs(source.url)
    size, block = fs.size(path), csv_block_size(source, chunk_rows)
    return [Partition(index, source, start=start, length=block) for index, start in enumerate(range(0, size, block))]


WORKER_SCORERS = {}  # (model folder, model version) -> ChunkScorer, loaded once per Dask worker process


def worker_scorer(model_dir, model_version):
    """Return this worker's ChunkScorer for the model the client scores with, loading it the first time.

    Keyed by the version too: a worker of a long-lived cluster must not keep serving the model a
    folder held before it was saved again.
    """
    key = model_dir, model_version
    if key not in WORKER_SCORERS:
        scorer = ChunkScorer(*load_engine(model_dir))
        if scorer.metadata["model_version"] != model_version:
            raise CannotRun(f"a Dask worker finds model {scorer.metadata['model_version']} in "
                            f"{model_dir or 'final_app/model'}, the command scores with {model_version}: "
                            "give the workers the same model folder")
        WORKER_SCORERS[key] = scorer
    return WORKER_SCORERS[key]


def score_partition(model_dir, model_version, partition, part_url, output_format, schema, chunk_rows):
    """On a Dask worker: score one partition into its own part file; return (counts, errors, worker)."""
    from distributed import get_worker

    scorer = worker_scorer(model_dir, model_version)
    rows = scored_rows = 0
    refused = []
    with fsspec.open(part_url, "wb") as file:
        writer = TableWriter(file, output_format, schema, header=False)
        for table in partition.tables(chunk_rows):
            scored, errors = scorer.score_chunk(table, rows)
            writer.write(scored)
            refused.append(errors)
            rows += table.num_rows
            scored_rows += scored.num_rows
        writer.close()
    errors = pa.concat_tables(refused) if refused else error_schema(partition.source).empty_table()
    return partition.index, rows, scored_rows, errors, get_worker().address


@contextlib.contextmanager
def dask_client(scheduler, workers):
    """Yield a distributed Client: of the scheduler at that address, or of a new LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
        except (OSError, TimeoutError) as error:
            raise CannotRun(f"no Dask scheduler answers at {scheduler}: {one_line(error)}") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers or usable_cores(), threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def score_on_dask(scorer, model_dir, source, output, errors, staged, chunk_rows, bar, scheduler, workers):
    """Score the input's partitions on Dask workers, each through score_chunk; return the Result."""
    from distributed import as_completed

    output_format = file_format(output)
    if any(in_memory(url) for url in (source.url, output, errors)):
        raise CannotRun("memory:// lives inside one process: with --engine dask use files every worker can reach")
    parts = partitions(source, chunk_rows)
    schema = output_schema(scorer, source)
    err_fs, err_path = staged.add(errors)
    if output_format == "parquet":
        out_fs, folder = staged.add(output)  # the output is this folder of parts
    else:
        out_fs, out_path = staged.add(output)
        folder = staged.scratch(out_fs, f"{out_path}-parts")  # the parts, joined into out_path at the end
    out_fs.makedirs(folder, exist_ok=True)
    part_urls = [out_fs.unstrip_protocol(f"{folder}/part-{part.index:05d}.{output_format}") for part in parts]
    result, done, workers_seen, next_index = Result(), {}, set(), 0
    with dask_client(scheduler, workers) as client, err_fs.open(err_path, "wb") as err_file:
        refused_writer = TableWriter(err_file, "csv", error_schema(source))
        version = scorer.metadata["model_version"]
        futures = [client.submit(score_partition, model_dir, version, part, url, output_format, schema, chunk_rows,
                                 pure=False) for part, url in zip(parts, part_urls)]
        for future in as_completed(futures):
            try:
                index, rows, scored_rows, refused, worker = future.result()
            except ImportError as error:
                raise CannotRun(f"a Dask worker cannot import {error.name}: start each worker in this repository "
                                "with PYTHONPATH=. and the pinned packages installed") from None
            except pa.ArrowInvalid as error:  # a partition starts at a line break, which may be inside quotes
                raise CannotRun(f"a Dask worker could not read its part of the file: {one_line(error)}: if a "
                                "quoted value holds a line break, score this file with --engine local") from None
            except Exception as error:  # noqa: BLE001 (whatever a worker raised: say it in one line)
                raise CannotRun(f"a Dask worker failed: {type(error).__name__}: {one_line(error)}") from None
            workers_seen.add(worker)
            result.scored += scored_rows
            bar.update(rows)
            done[index] = rows, refused
            while next_index in done:  # the errors in input order: a partition's rows follow the one before
                part_rows, part_refused = done.pop(next_index)
                refused_writer.write(shifted_rows(part_refused, result.rows))
                result.rows += part_rows
                result.refused += part_refused.num_rows
                next_index += 1
        refused_writer.close()
    if output_format == "csv":
        concatenate(out_fs, out_path, schema, part_urls)
    result.workers = tuple(sorted(workers_seen))
    return result


def in_memory(url):
    """True for a memory:// URL, which only the process that wrote it can read."""
    return "memory" in fsspec.core.url_to_fs(url)[0].protocol


def shifted_rows(refused, first_row):
    """Return a partition's errors with their row numbers counted from the top of the input."""
    rows = pa.compute.add(refused["row"], pa.scalar(first_row, pa.int64()))
    return refused.set_column(0, "row", rows)


def concatenate(fs, path, schema, part_urls):
    """Write a CSV header and then each part's rows, in order, into one file."""
    with fs.open(path, "wb") as file:
        TableWriter(file, "csv", schema).close()  # the header alone
        for url in part_urls:
            with fsspec.open(url, "rb") as part:
                shutil.copyfileobj(part, file, 1 << 20)


# --- the command ---------------------------------------------------------------------------------

def one_line(error):
    """Return the first line of an error's message, at most 300 characters."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0][:300]


def usable_cores():
    """Return how many cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_columns(scorer, source, output, errors):
    """Raise CannotRun if the input lacks a feature or has a column the output adds, or a file would overwrite another."""
    missing = scorer.missing_columns(source.columns)
    if missing:
        raise CannotRun(f"{source.url} has no column {', '.join(missing)}: the model needs "
                        f"{', '.join(scorer.names)} (the file has {', '.join(source.columns[:20])})")
    taken = [name for name in source.columns if name in scorer.answer_names or name in ERROR_COLUMNS]
    if taken:
        raise CannotRun(f"{source.url} has a column named {taken[0]}, which the output or the errors file "
                        "adds: rename that column")
    if len(set(source.columns)) < len(source.columns):
        raise CannotRun(f"{source.url} names a column twice: give each column its own name")
    if place(source.url) == place(output):
        raise CannotRun("OUTPUT would overwrite INPUT: name another file")
    if place(errors) in (place(source.url), place(output)):
        raise CannotRun("the errors file would overwrite INPUT or OUTPUT: name another with --errors")


def place(url):
    """Return the file a path or URL names, written one way: a/./x.csv, a/b/../x.csv and a link to it are one."""
    fs, path = fsspec.core.url_to_fs(url)
    path = os.path.realpath(path) if isinstance(fs, LocalFileSystem) else posixpath.normpath(path)
    return fs.unstrip_protocol(path.rstrip("/"))


def score_file(input_url, output, errors=None, model_dir=None, engine="local", scheduler=None, workers=None,
               chunk_rows=DEFAULT_CHUNK_ROWS, progress=None):
    """Score every row of input_url into output (and refused rows into errors); return the Result.

    Raise CannotRun, with one line saying what to do, when it cannot run at all.
    """
    start = time.perf_counter()
    input_url, output = os.fspath(input_url), os.fspath(output)  # a path or a URL, as text
    errors = os.fspath(errors) if errors else errors_url(output)
    model_dir = model_dir or os.environ.get("MODEL_DIR") or None
    try:
        scorer = ChunkScorer(*load_engine(model_dir))
        source = open_source(input_url)
        file_format(output)
        check_columns(scorer, source, output, errors)
        staged = Staged()
        try:
            with progress_bar(progress) as bar:
                if engine == "dask":
                    served = os.path.abspath(model_dir) if model_dir else None  # the workers may start elsewhere
                    result = score_on_dask(scorer, served, source, output, errors, staged, chunk_rows, bar,
                                           scheduler, workers)
                else:
                    result = score_locally(scorer, source, output, errors, staged, chunk_rows, bar)
            staged.commit()
        finally:
            staged.discard()  # whatever is still temporary: all of it, unless the commit happened
    except ModelError as error:
        raise CannotRun(str(error)) from None
    except pa.ArrowException as error:  # the input could not be read as CSV or Parquet
        if "straddl" in str(error):  # pyarrow: "straddling object straddles two block boundaries"
            raise CannotRun(f"{input_url}: {STRADDLE_HINT}") from None
        raise CannotRun(f"{input_url}: {one_line(error)}") from None
    except OSError as error:  # a file that cannot be read or written: the message names it
        raise CannotRun(one_line(error)) from None
    result.seconds = time.perf_counter() - start
    return result


def summary(result, output, errors):
    """Return the lines the command prints when it is done."""
    lines = [f"scored {result.scored:,} of {result.rows:,} rows: {output}",
             f"refused {result.refused:,} rows: {errors}" if result.refused else f"refused no rows: {errors}"]
    where = f", on {len(result.workers)} Dask workers" if result.workers else ""
    rate = result.rows / result.seconds if result.seconds else 0
    lines.append(f"time {result.seconds:.1f} s, {rate:,.0f} rows/s{where}")
    return lines


def parse_args(argv):
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m final_app.score",
        description="Score every row of a CSV or Parquet file with the model in MODEL_DIR, checked as the API checks "
                    "it; refused rows go to an errors file. Exit status 0: all scored, 1: some refused, 2: cannot run.")
    parser.add_argument("input", metavar="INPUT", help="a .csv or .parquet file (or fsspec URL, like s3://...)")
    parser.add_argument("output", metavar="OUTPUT", help="a .csv or .parquet file to write (with Dask, Parquet is "
                                                         "a folder of parts)")
    parser.add_argument("--errors", metavar="PATH", help="the CSV file of refused rows (default: beside OUTPUT, "
                                                         "named OUTPUT.errors.csv)")
    parser.add_argument("--engine", choices=("local", "dask"), default="local",
                        help="local: this process, chunk by chunk (default); dask: a Dask cluster")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="with --engine dask: the scheduler, like "
                                                               "tcp://10.0.0.5:8786 (default: a LocalCluster here)")
    parser.add_argument("--workers", type=int, metavar="N", help="with --engine dask and no --scheduler: the "
                                                                 "LocalCluster's worker processes (default: one per core)")
    parser.add_argument("--model-dir", metavar="DIR", help="the model folder (default: $MODEL_DIR, else final_app's)")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, metavar="N",
                        help=f"about this many rows are read, checked and written at a time (default {DEFAULT_CHUNK_ROWS})")
    args = parser.parse_args(argv)
    if args.engine != "dask" and (args.scheduler or args.workers):
        parser.error("--scheduler and --workers go with --engine dask")
    if args.chunk_rows < 1 or (args.workers is not None and args.workers < 1):
        parser.error("--chunk-rows and --workers must be whole numbers above 0")
    return args


def main(argv=None):
    """Run the command; return its exit status (0 all scored, 1 some refused, 2 could not run)."""
    args = parse_args(argv)
    errors = args.errors or errors_url(args.output)
    try:
        result = score_file(args.input, args.output, errors, args.model_dir, args.engine, args.scheduler,
                            args.workers, args.chunk_rows)
    except CannotRun as problem:
        print(f"score: {problem}", file=sys.stderr)
        return 2
    print("\n".join(summary(result, args.output, errors)))
    return 1 if result.refused else 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: Dask sends its functions to the workers
    # by name (final_app.score.score_partition), where each worker keeps its model loaded.
    from final_app import score

    sys.exit(score.main())
