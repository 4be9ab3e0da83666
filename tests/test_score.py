"""final_app/score.py: scoring a whole file, with the API's own checks, locally and on a real Dask cluster.

The cluster is one `dask scheduler` and two `dask worker` processes on loopback, started once for
this module and always stopped. Files here are small (thousands of rows); the 2,000,000-row run is
bench/score_bench.py's.
"""
import datetime
import decimal
import os
import pathlib
import re
import subprocess
import sys

import fsspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import assert_same_answers, fuzz_settings
from final_app import score
from final_app.artifact import load_model_and_metadata
from lesson_helpers import free_port, stop
from lesson_modules import import_lesson_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "lessons" / "08_own_model" / "models"
PENGUINS = MODELS / "penguins"
BIN = pathlib.Path(sys.executable).parent
penguin_file = import_lesson_file("10_batch", "penguin_file")


@pytest.fixture(scope="module")
def penguins():
    """(model, metadata) of lesson 08's species classifier (served by its ONNX graph)."""
    return load_model_and_metadata(PENGUINS)


@pytest.fixture(scope="module")
def penguin_csv(tmp_path_factory):
    """(path, spoiled row numbers): 3,000 penguins, one in a hundred spoiled."""
    path = tmp_path_factory.mktemp("score") / "penguins.csv"
    return path, penguin_file.write_csv(path, 3000).tolist()


def own_answers(model, metadata, frame):
    """The scikit-learn model's own (labels, probabilities) for rows read back from a CSV."""
    names = [feature["name"] for feature in metadata["features"]]
    dtypes = {feature["name"]: feature["dtype"] for feature in metadata["features"]}
    X = frame[names].astype(object).where(frame[names].notna(), None)
    X = pd.DataFrame({name: pd.Series(pd.to_numeric(X[name]) if dtypes[name] == "float64" else X[name],
                                      dtype=dtypes[name]) for name in names})
    return model.predict(X), model.predict_proba(X)


def as_predictions(scored, metadata):
    """The output's answer columns in the API's shape: [{"label", "probabilities"}]."""
    keys = [f"probability_{name}" for name in metadata["classes"]]
    return [{"label": label, "probabilities": dict(zip(metadata["classes"], row))}
            for label, row in zip(scored["label"], scored[keys].to_numpy().tolist())]


# --- how a cell is read --------------------------------------------------------------------------

NUMBER = {"name": "x", "type": "number", "min": 0, "max": 10, "nullable": False}
CODES = {"name": "c", "type": "category", "values": [1, 2, "two"], "nullable": False}
FLAG = {"name": "f", "type": "boolean", "nullable": False}


@pytest.mark.parametrize("feature, text, value", [
    (NUMBER, "3", 3), (NUMBER, "3.5", 3.5), (NUMBER, "-1e2", -100.0), (NUMBER, None, None),
    (NUMBER, " 3", " 3"), (NUMBER, "+3", "+3"), (NUMBER, "03", "03"), (NUMBER, ".5", ".5"), (NUMBER, "NaN", "NaN"),
    (NUMBER, "3,5", "3,5"), (NUMBER, "Infinity", "Infinity"), (NUMBER, "9" * 5000, float("inf")),
    (CODES, "1", 1), (CODES, "two", "two"), (CODES, "3", "3"), (FLAG, "true", True), (FLAG, "False", False),
    (FLAG, "yes", "yes"), ({"name": "t", "type": "text"}, "3", "3"),
])
def test_a_csv_cell_is_the_json_value_a_request_would_send(feature, text, value):
    found = score.cell_value(feature, text)
    assert found == value and type(found) is type(value)


# --- the same verdicts as the API ----------------------------------------------------------------

SCHEMA = {"task": "regression", "input": "dataframe", "features": [
    {"name": "n", "type": "number", "min": -5, "max": 5.5, "nullable": True},
    {"name": "i", "type": "integer", "min": 0, "max": 9, "nullable": False},
    {"name": "c", "type": "category", "values": ["a", "b", "Biscoe"], "nullable": True},
    {"name": "k", "type": "category", "values": [1, 2, True], "nullable": False},
    {"name": "t", "type": "text", "max_length": 5, "nullable": False},
    {"name": "d", "type": "date", "min": "2020-01-01", "max": "2024-12-31", "nullable": True},
    {"name": "m", "type": "datetime", "min": "2020-01-01T00:00:00", "max": "2024-12-31T00:00:00",
     "timezone": None, "nullable": False},
    {"name": "b", "type": "boolean", "nullable": True},
]}
HOSTILE_TEXT = ["", "0", "-0", "-0.0", "5.5", "5.50001", "-5", "1e0", "1E1", "9", "10", "3.0", "2.5", "0x1",
                "1_0", "nan", "inf", "-inf", "1e999", "12345678901234567890", " 1", "1 ", "+1", "a", "b", "Biscoe",
                "biscoe", "True", "true", "FALSE", "1", "2", "abcdef", "abcde", "é", "2020-01-01", "2024-12-31",
                "2025-01-01", "2023-02-29", "2024-02-29", "2024-2-9", "2022-06-01T10:00:00", "2022-06-01 10:00",
                "2022-06-01T10:00:00Z", "٣", "\n", "null"]
HOSTILE = st.one_of(st.none(), st.sampled_from(HOSTILE_TEXT), st.text(max_size=8),
                    st.floats(allow_nan=True).map(repr), st.integers(-20, 20).map(str))
# Cells each feature of SCHEMA accepts, the bounds and odd spellings among them.
VALID = {
    "n": st.one_of(st.none(), st.floats(-5, 5.5).map(repr), st.integers(-5, 5).map(str),
                   st.sampled_from(["5.5", "-5", "-0", "0", "-0.0", "5.50", "1e0", "55e-1", "-5E+0"])),
    "i": st.one_of(st.integers(0, 9).map(str), st.sampled_from(["9.0", "0", "9e0", "-0", "0.0", "4.000"])),
    "c": st.sampled_from(["a", "b", "Biscoe", None]),
    "k": st.sampled_from(["1", "2", "true", "True"]),
    "t": st.text(min_size=1, max_size=5),
    "d": st.one_of(st.none(), st.dates(datetime.date(2020, 1, 1), datetime.date(2024, 12, 31)).map(str)),
    "m": st.datetimes(datetime.datetime(2020, 1, 1), datetime.datetime(2024, 12, 31)).map(datetime.datetime.isoformat),
    "b": st.sampled_from(["true", "false", "True", "FALSE", None]),
}
# Near misses: what each feature's check must refuse, just past its rules.
NEAR = {
    "n": ["5.50001", "-5.1", "+1", " 1", "1.", ".5", "nan", "inf", "1e999", "0x1", "5,5", "abc", "true"],
    "i": ["2.5", "10", "-1", "9.5", "1e1", "+3", "3 ", "0.1", "1e-1", None],
    "c": ["A", "c", " a", "biscoe", "1", "true"],
    "k": ["3", "0", "false", "1.0", "01", "yes", None],
    "t": ["abcdef", "abcdefgh", None],
    "d": ["2023-02-29", "2019-12-31", "2025-01-01", "2024-2-9", "2024-02-29T00:00:00", "20240229", "2024-13-01"],
    "m": ["2022-06-01T10:00:00Z", "2019-12-31T23:59:59", "2024-12-31T00:00:01", "2022-06-01T25:00:00", None,
          "2022-06-01T10:00:00.1234567"],
    "b": ["yes", "1", "0", "t", "truee"],
}


@st.composite
def hostile_rows(draw):
    """A row of valid cells for SCHEMA, in two rows of three one or two cells spoiled (near misses or worse)."""
    names = [feature["name"] for feature in SCHEMA["features"]]
    row = [draw(VALID[name]) for name in names]
    for _ in range(draw(st.integers(0, 2))):
        column = draw(st.integers(0, len(names) - 1))
        row[column] = draw(st.one_of(st.sampled_from(NEAR[names[column]]), HOSTILE))
    return row


def api_verdicts(validator, features, rows):
    """What the API says about each row sent as JSON: (checked values, None) or (None, its message)."""
    verdicts = []
    for index, row in enumerate(rows):
        try:
            verdicts.append((validator.row([score.cell_value(f, cell) for f, cell in zip(features, row)], index),
                             None))
        except score.RequestError as error:
            verdicts.append((None, error.message))
    return verdicts


def same_value(found, expected):
    """True when a checked value is the API's: the same type, or for a number the same float64 bits."""
    if type(expected) in (int, float) and type(found) in (int, float) and type(expected) is not type(found):
        return np.float64(found).tobytes() == np.float64(expected).tobytes()  # the model sees a float either way
    return type(found) is type(expected) and (found == expected or
                                              np.float64(found).tobytes() == np.float64(expected).tobytes())


def assert_api_verdicts(rows):
    """Assert that one chunk of these rows gets the API's verdict on each: the same values, or the same message."""
    scorer = score.ChunkScorer(None, SCHEMA)
    frame = pd.DataFrame(rows, columns=scorer.names, dtype="str")
    good, checked, errors = scorer.checked_rows(frame, 0)
    verdicts = api_verdicts(scorer.validator, scorer.features, rows)
    assert good.tolist() == [index for index, (values, _message) in enumerate(verdicts) if values is not None]
    accepted = [values for values, _message in verdicts if values is not None]
    for found, values in zip(zip(*checked), accepted):  # checked: a list of values per feature
        assert all(same_value(a, b) for a, b in zip(found, values)), (found, values)
    assert [f"instances[{row}].{field} {message}" for row, field, message in errors] == [
        message for _values, message in verdicts if message is not None]


VALID_ROW = ["1", "2", "a", "1", "abc", "2022-06-01", "2022-06-01T10:00:00", "true"]
SPELLINGS = {"n": ["5.5", "-5", "-0", "0", "-0.0", "5.50", "1e0", "55e-1", "-5E+0", None],
             "i": ["9.0", "0", "9e0", "-0", "0.0", "4.000", "9"], "c": ["b", "Biscoe", None], "k": ["2", "true", "True"],
             "t": ["abcde", "é"], "d": ["2020-01-01", "2024-12-31", "2024-02-29", None],
             "m": ["2020-01-01T00:00:00", "2024-12-31T00:00:00", "2022-06-01 10:00", "2022-06-01"],
             "b": ["false", "FALSE", None]}


def test_every_near_miss_and_odd_spelling_gets_the_api_verdict():
    names = [feature["name"] for feature in SCHEMA["features"]]
    cells = [(column, cell) for column, name in enumerate(names)
             for cell in NEAR[name] + SPELLINGS[name] + HOSTILE_TEXT]
    assert_api_verdicts([VALID_ROW[:column] + [cell] + VALID_ROW[column + 1:] for column, cell in cells])


@fuzz_settings(100)
@given(st.lists(hostile_rows(), min_size=1, max_size=30))
def test_a_chunk_accepts_and_refuses_exactly_what_the_api_does_with_its_messages(rows):
    assert_api_verdicts(rows)


@fuzz_settings(60)
@given(st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**60, 2**60),
                          st.one_of(st.none(), st.booleans(), st.integers(0, 3))), min_size=1, max_size=20))
def test_typed_parquet_cells_get_the_api_verdicts_too(rows):
    scorer = score.ChunkScorer(None, SCHEMA)
    numbers, integers, codes = zip(*rows)
    frame = pd.DataFrame({"n": pd.Series(numbers, dtype="float64"), "i": pd.Series(integers, dtype="int64"),
                          "c": "a", "k": pd.Series(codes, dtype=object), "t": "x", "d": None,
                          "m": "2022-06-01T10:00:00", "b": None})
    good, checked, errors = scorer.checked_rows(frame, 0)
    cells = [[score.typed_value(f, value) for f, value in zip(scorer.features, row)]
             for row in frame.astype(object).itertuples(index=False)]
    verdicts = []
    for index, row in enumerate(cells):
        try:
            verdicts.append(scorer.validator.row(row, index))
        except score.RequestError as error:
            verdicts.append(error.message)
    assert [list(row) for row in zip(*checked)] == [verdict for verdict in verdicts if isinstance(verdict, list)]
    assert [f"instances[{row}].{field} {message}" for row, field, message in errors] == [
        verdict for verdict in verdicts if isinstance(verdict, str)]


def test_the_errors_file_says_what_the_api_says_about_each_row(tmp_path):
    from final_app.app import create_app

    rows = [["Biscoe", "male", "45", "15", "220", "5000"], ["Atlantis", "male", "45", "15", "220", "5000"],
            ["Dream", "", "39,1", "18", "190", "3500"], ["", "female", "", "", "", ""],
            ["Dream", "female", "-0", "18", "190", "1e4"], ["Torgersen", "FEMALE", "40", "18", "190", "3500"]]
    path = tmp_path / "few.csv"
    pd.DataFrame(rows, columns=penguin_file.COLUMNS).to_csv(path, index=False)
    score.score_file(path, tmp_path / "out.csv", model_dir=PENGUINS)
    errors = pd.read_csv(tmp_path / "out.errors.csv", keep_default_na=False)
    client = create_app({"MODEL_DIR": PENGUINS}).test_client()
    features = client.get("/model").get_json()["features"]
    for number, row in enumerate(rows):
        instance = [score.cell_value(feature, cell or None) for feature, cell in zip(features, row)]
        response = client.post("/predict", json={"instances": [instance]})
        refused = errors[errors["row"] == number]
        if response.status_code == 200:
            assert refused.empty
        else:
            assert response.status_code == 400
            [(field, message)] = refused[["field", "message"]].itertuples(index=False)
            assert response.get_json()["error"]["message"] == f"instances[0].{field} {message}"
    assert errors["row"].tolist() == [1, 2, 3, 4, 5]


# --- a file, locally -----------------------------------------------------------------------------

def test_every_good_row_is_scored_once_in_order_with_the_models_own_answers(tmp_path, penguin_csv, penguins):
    path, spoiled = penguin_csv
    result = score.score_file(path, tmp_path / "scored.csv", model_dir=PENGUINS, chunk_rows=700)
    model, metadata = penguins
    data = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    scored = pd.read_csv(tmp_path / "scored.csv", dtype=str, keep_default_na=False, na_values=[""])
    errors = pd.read_csv(tmp_path / "scored.errors.csv", dtype={"row": int})
    assert (result.rows, result.scored, result.refused) == (3000, 3000 - len(spoiled), len(spoiled))
    assert list(scored.columns) == penguin_file.COLUMNS + ["label", "probability_Adelie", "probability_Chinstrap",
                                                           "probability_Gentoo"]
    good = data.drop(index=spoiled).reset_index(drop=True)
    assert scored[penguin_file.COLUMNS].equals(good)  # the input's cells, as they were, in order
    labels, probabilities = own_answers(model, metadata, good)
    assert_same_answers(as_predictions(scored.astype({f"probability_{c}": float for c in metadata["classes"]}),
                                       metadata), labels, probabilities, metadata)
    assert errors["row"].tolist() == spoiled
    assert set(errors["field"]) == {"island", "bill_length_mm"}
    assert errors[penguin_file.COLUMNS].astype(str).equals(data.loc[spoiled].reset_index(drop=True).astype(str))
    assert 'must be a number or null, got string "39,1"' in set(errors["message"])


def test_parquet_in_and_out_keep_the_types_and_give_the_same_answers(tmp_path, penguin_csv):
    path, spoiled = penguin_csv
    frame = pd.read_csv(path, dtype={"bill_length_mm": str})  # the decimal commas keep it text
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=1000)
    score.score_file(tmp_path / "in.parquet", tmp_path / "out.parquet", model_dir=PENGUINS)
    score.score_file(path, tmp_path / "out.csv", model_dir=PENGUINS)
    from_parquet, from_csv = pd.read_parquet(tmp_path / "out.parquet"), pd.read_csv(tmp_path / "out.csv")
    assert from_parquet["body_mass_g"].dtype == np.float64 and len(from_parquet) == 3000 - len(spoiled)
    assert from_parquet["label"].tolist() == from_csv["label"].tolist()
    assert np.allclose(from_parquet["probability_Gentoo"], from_csv["probability_Gentoo"], rtol=1e-5, atol=1e-6)
    assert pd.read_csv(tmp_path / "out.errors.csv")["row"].tolist() == spoiled


def test_a_regressor_writes_value_and_a_model_with_dates_and_text_is_checked_too(tmp_path):
    flats = pd.DataFrame({"listed_on": ["2022-12-25", "2022-02-30", "2023-05-01"],
                          "neighbourhood": ["Market Common", "Market Common", "Atlantis"],
                          "area_m2": ["64.85", "50", "70"], "rooms": ["3", "2", "3.5"],
                          "description": ["Bright, with a balcony", "", "x"]})
    flats.to_csv(tmp_path / "flats.csv", index=False)
    result = score.score_file(tmp_path / "flats.csv", tmp_path / "flats.parquet", model_dir=MODELS / "flat_prices")
    model, _metadata = load_model_and_metadata(MODELS / "flat_prices")
    out = pd.read_parquet(tmp_path / "flats.parquet")
    own = model.predict(flats.iloc[[0]].astype({"area_m2": float, "rooms": int}).assign(
        listed_on=lambda frame: pd.to_datetime(frame["listed_on"]).astype("datetime64[us]")))
    assert (result.scored, result.refused) == (1, 2) and list(out.columns)[-1] == "value"
    assert np.allclose(out["value"], own, rtol=1e-9)
    errors = pd.read_csv(tmp_path / "flats.errors.csv")
    assert errors[["row", "field"]].values.tolist() == [[1, "listed_on"], [2, "neighbourhood"]]


def test_fsspec_urls_read_and_write_object_storage_here_in_memory(penguin_csv):
    path, spoiled = penguin_csv
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/in.csv", path.read_bytes())
    result = score.score_file("memory://bucket/in.csv", "memory://bucket/out/scored.csv", model_dir=PENGUINS)
    assert result.refused == len(spoiled)
    assert sorted(memory.ls("/bucket/out", detail=False)) == ["/bucket/out/scored.csv", "/bucket/out/scored.errors.csv"]
    with fsspec.open("memory://bucket/out/scored.csv") as file:
        assert len(pd.read_csv(file)) == 3000 - len(spoiled)


def test_a_file_that_breaks_half_way_leaves_nothing_half_written(tmp_path, penguin_csv):
    path, _spoiled = penguin_csv
    broken = tmp_path / "broken.csv"
    broken.write_bytes(path.read_bytes() + b"Dream,male,1,2,3,4,5,6\n")  # too many values on the last line
    (tmp_path / "out.csv").write_text("the previous run's output\n")
    with pytest.raises(score.CannotRun, match="Expected 6 columns, got 8"):
        score.score_file(broken, tmp_path / "out.csv", model_dir=PENGUINS, chunk_rows=500)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.csv", "out.csv"]
    assert (tmp_path / "out.csv").read_text() == "the previous run's output\n"


def test_a_progress_bar_counts_rows_and_rows_per_second(tmp_path, penguin_csv, capsys):
    score.score_file(penguin_csv[0], tmp_path / "out.csv", model_dir=PENGUINS, progress=True)
    assert re.search(r"scoring: 3\.00k rows \[[0-9:]+, *[0-9.]+k? rows/s\]", capsys.readouterr().err)


# --- the command ---------------------------------------------------------------------------------

def run_command(*args, env=None):
    """Run python -m final_app.score from the top of the repository; return (status, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "final_app.score", *map(str, args)], cwd=ROOT, text=True,
                            capture_output=True, timeout=120, env=dict(os.environ, **(env or {})))
    return result.returncode, result.stdout, result.stderr


def test_the_command_exits_1_and_says_how_many_rows_were_refused(tmp_path, penguin_csv):
    path, spoiled = penguin_csv
    status, out, err = run_command(path, tmp_path / "out.csv", "--errors", tmp_path / "bad.csv",
                                   env={"MODEL_DIR": str(PENGUINS)})
    assert (status, err) == (1, "")
    assert out.splitlines()[:2] == [f"scored {3000 - len(spoiled):,} of 3,000 rows: {tmp_path / 'out.csv'}",
                                    f"refused {len(spoiled)} rows: {tmp_path / 'bad.csv'}"]


def test_the_command_exits_0_when_every_row_is_scored(tmp_path, capsys):
    from sklearn.datasets import load_iris

    pd.DataFrame(load_iris().data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"]).to_csv(
        tmp_path / "iris.csv", index=False)
    assert score.main([str(tmp_path / "iris.csv"), str(tmp_path / "iris_scored.csv")]) == 0
    assert capsys.readouterr().out.startswith(f"scored 150 of 150 rows: {tmp_path / 'iris_scored.csv'}\n"
                                              f"refused no rows: {tmp_path / 'iris_scored.errors.csv'}\n")
    assert len(pd.read_csv(tmp_path / "iris_scored.errors.csv")) == 0


def test_a_missing_file_is_exit_status_2_with_one_line_and_no_traceback(tmp_path):
    status, out, err = run_command(tmp_path / "nowhere.csv", tmp_path / "out.csv")
    assert (status, out, err) == (2, "", f"score: {tmp_path / 'nowhere.csv'}: no such file\n")


@pytest.mark.parametrize("columns, rows, message", [
    (["island", "sex"], ["Dream,male"], "has no column bill_length_mm, bill_depth_mm, flipper_length_mm, "
                                        "body_mass_g: the model needs island, sex, bill_length_mm"),
    (penguin_file.COLUMNS + ["label"], ["Dream,male,1,2,3,4,x"], "has a column named label, which the output or "
                                                                  "the errors file adds: rename that column"),
    (penguin_file.COLUMNS + ["row"], ["Dream,male,1,2,3,4,x"], "has a column named row"),
    ([], [], "the file is empty: its first line must name the columns"),
])
def test_wrong_columns_are_exit_status_2_naming_them(tmp_path, capsys, columns, rows, message):
    (tmp_path / "in.csv").write_text("\n".join([",".join(columns)] + rows) + ("\n" if columns else ""))
    status = score.main([str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "--model-dir", str(PENGUINS)])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("args, message", [
    (["in.txt", "out.csv"], "in.txt: name a .csv or .parquet file"),
    (["in.csv", "out.json"], "out.json: name a .csv or .parquet file"),
    (["in.csv", "in.csv"], "OUTPUT would overwrite INPUT"),
    (["in.csv", "./in.csv"], "OUTPUT would overwrite INPUT"),  # one file, written another way
    (["in.csv", "nowhere/../in.csv"], "OUTPUT would overwrite INPUT"),
    (["in.csv", "out.csv", "--errors", "out.csv"], "the errors file would overwrite INPUT or OUTPUT"),
    (["in.csv", "out.csv", "--errors", "./out.csv"], "the errors file would overwrite INPUT or OUTPUT"),
    (["in.csv", "out.csv", "--model-dir", "nowhere"], "model check failed for nowhere/model.json"),
])
def test_what_cannot_run_says_what_to_do(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n")
    (tmp_path / "in.txt").write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n")
    assert score.main(args) == 2
    assert message in capsys.readouterr().err


def test_a_row_longer_than_a_read_says_to_read_more_rows_at_a_time(tmp_path, capsys):
    # pyarrow reads a CSV a block at a time, guessed from the first rows' length; a row must fit in one.
    rows = ["5.1,3.5,1.4,0.2"] * 3000 + ["5.1,3.5,1.4," + "9" * 20_000]
    (tmp_path / "in.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n" + "\n".join(rows) + "\n")
    arguments = [str(tmp_path / "in.csv"), str(tmp_path / "out.csv")]
    assert score.main(arguments + ["--chunk-rows", "100"]) == 2
    assert "a row is longer than the bytes read at a time" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv"]
    assert score.main(arguments + ["--chunk-rows", "10000"]) == 1  # read enough: that row is refused, as the API would
    assert "refused 1 rows" in capsys.readouterr().out


def test_a_parquet_decimal_is_the_number_a_request_would_send():
    found = score.typed_value(NUMBER, decimal.Decimal("3.5"))
    assert found == 3.5 and type(found) is float


def test_a_dask_worker_refuses_a_model_folder_that_holds_another_model():
    # On a long-lived cluster, a folder saved again since must not be scored with what a worker loaded before.
    with pytest.raises(score.CannotRun, match="the command scores with penguins-old-version"):
        score.worker_scorer(str(PENGUINS), "penguins-old-version")
    assert (str(PENGUINS), "penguins-old-version") not in score.WORKER_SCORERS


def test_the_web_process_imports_none_of_what_scoring_needs():
    code = ("import sys, final_app.wsgi; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pandas', 'pyarrow', 'dask', 'distributed', 'tqdm', 'fsspec') or m == 'final_app.score'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={key: value for key, value in os.environ.items() if key != "MODEL_DIR"})
    assert result.stdout.splitlines()[-1] == "[]"


# --- Dask: a real scheduler and two workers --------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """The address of a `dask scheduler` with two `dask worker` processes on loopback, and the workers' addresses."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", DASK_DISTRIBUTED__WORKER__DAEMON="False")
    dask = str(BIN / "dask")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)]
    try:
        for name in ("worker-a", "worker-b"):
            processes.append(subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                 "--name", name], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True))
        with Client(address, timeout="20s") as client:
            client.wait_for_workers(2, timeout=30)
            workers = tuple(sorted(client.scheduler_info()["workers"]))
            yield address, workers
            client.shutdown()  # the scheduler and its workers stop now, sooner than on SIGTERM
    finally:
        for process in reversed(processes):
            stop(process)


def test_dask_scores_the_file_as_the_local_engine_does_and_both_workers_work(tmp_path, penguin_csv, cluster):
    path, spoiled = penguin_csv
    address, workers = cluster
    local = score.score_file(path, tmp_path / "local.csv", model_dir=PENGUINS, chunk_rows=250)
    on_dask = score.score_file(path, tmp_path / "dask.csv", model_dir=PENGUINS, engine="dask", scheduler=address,
                               chunk_rows=250)
    assert on_dask.workers == workers  # each of the two did some of the partitions
    assert (on_dask.rows, on_dask.scored, on_dask.refused) == (local.rows, local.scored, local.refused)
    from_local, from_dask = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "dask.csv")
    assert from_dask.drop(columns=[name for name in from_dask if name.startswith("probability_")]).equals(
        from_local.drop(columns=[name for name in from_local if name.startswith("probability_")]))
    # ONNX Runtime's float arithmetic may round differently in a chunk of another length
    assert np.allclose(from_dask.filter(like="probability_"), from_local.filter(like="probability_"),
                       rtol=1e-5, atol=1e-6)
    assert (tmp_path / "dask.errors.csv").read_bytes() == (tmp_path / "local.errors.csv").read_bytes()
    assert pd.read_csv(tmp_path / "dask.errors.csv")["row"].tolist() == spoiled
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dask.csv", "dask.errors.csv", "local.csv",
                                                                "local.errors.csv"]


def test_dask_writes_parquet_as_a_folder_of_parts_equal_to_the_local_file(tmp_path, penguin_csv, cluster):
    path, spoiled = penguin_csv
    pd.read_csv(path, dtype={"bill_length_mm": str}).to_parquet(tmp_path / "in.parquet", row_group_size=400)
    status = score.main([str(tmp_path / "in.parquet"), str(tmp_path / "dask.parquet"), "--engine", "dask",
                         "--scheduler", cluster[0], "--model-dir", str(PENGUINS)])
    score.score_file(tmp_path / "in.parquet", tmp_path / "local.parquet", model_dir=PENGUINS)
    assert status == 1
    assert len(list((tmp_path / "dask.parquet").glob("part-*.parquet"))) == 8  # one per row group
    assert pd.read_parquet(tmp_path / "dask.parquet").equals(pd.read_parquet(tmp_path / "local.parquet"))
    assert pd.read_csv(tmp_path / "dask.errors.csv")["row"].tolist() == spoiled


def test_dask_refuses_memory_urls_which_its_workers_cannot_reach(penguin_csv, cluster):
    fsspec.filesystem("memory").pipe("/dask/in.csv", penguin_csv[0].read_bytes())
    with pytest.raises(score.CannotRun, match="memory:// lives inside one process"):
        score.score_file("memory://dask/in.csv", "memory://dask/out.csv", model_dir=PENGUINS, engine="dask",
                         scheduler=cluster[0])


def test_no_scheduler_at_the_address_is_exit_status_2(tmp_path, penguin_csv, capsys, monkeypatch):
    monkeypatch.setattr(score, "SCHEDULER_TIMEOUT", "1s")
    status = score.main([str(penguin_csv[0]), str(tmp_path / "out.csv"), "--engine", "dask", "--scheduler",
                         f"tcp://127.0.0.1:{free_port()}", "--model-dir", str(PENGUINS)])
    assert status == 2 and capsys.readouterr().err.startswith("score: no Dask scheduler answers at tcp://127.0.0.1:")
