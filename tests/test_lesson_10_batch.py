"""Lesson 10: penguin_file.py writes the file the notebook scores, and app.py serves the same model as the
batch command, refusing a row with the message the errors file gives it. (nbval runs the notebook itself.)"""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests

from conftest import LESSON_APP_COMMANDS
from final_app import score
from lesson_helpers import running
from lesson_modules import import_lesson_file

LESSON = Path(__file__).resolve().parent.parent / "lessons" / "10_batch"
PENGUINS = LESSON.parent / "08_own_model" / "models" / "penguins"
penguin_file = import_lesson_file("10_batch", "penguin_file")


def test_the_file_has_the_models_columns_and_one_spoiled_row_in_a_hundred_of_each_kind_in_turn(tmp_path):
    spoiled = penguin_file.write_csv(tmp_path / "p.csv", 3000)
    frame = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert list(frame.columns) == penguin_file.COLUMNS and len(frame) == 3000
    assert len(spoiled) == 30 and list(spoiled) == sorted(spoiled)
    assert frame.loc[spoiled[0::3], "island"].eq("Atlantis").all()
    assert frame.loc[spoiled[1::3], "bill_length_mm"].eq("39,1").all()
    assert frame.loc[spoiled[2::3], "island"].eq("").all()
    assert not frame.drop(index=spoiled)["island"].isin(["Atlantis", ""]).any()


def test_the_file_is_written_by_the_command_line_too(tmp_path):
    result = subprocess.run([sys.executable, "penguin_file.py", str(tmp_path / "p.csv"), "500"], cwd=LESSON,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == f"wrote 500 rows to {tmp_path / 'p.csv'}, 5 of them spoiled\n"


@pytest.mark.parametrize("command", LESSON_APP_COMMANDS.values(), ids=LESSON_APP_COMMANDS.keys())
def test_app_py_refuses_a_row_with_the_message_the_errors_file_gives(command, tmp_path):
    spoiled = penguin_file.write_csv(tmp_path / "p.csv", 400)
    score.score_file(tmp_path / "p.csv", tmp_path / "out.csv", model_dir=PENGUINS)
    errors = pd.read_csv(tmp_path / "out.errors.csv", dtype=str, keep_default_na=False)
    features = score.load_engine(PENGUINS)[1]["features"]
    with running(command, cwd=LESSON, env={"MODEL_DIR": ""}, ready_path="/health") as (base_url, _server):
        for error in errors.itertuples(index=False):
            row = [score.cell_value(feature, getattr(error, feature["name"]) or None) for feature in features]
            answer = requests.post(base_url + "/predict", json={"instances": [row]}, timeout=10)
            assert answer.status_code == 400
            assert answer.json()["error"]["message"] == f"instances[0].{error.field} {error.message}"
        good = requests.post(base_url + "/predict", json={"instances": [["Dream", "male", 39.1, 18.7, 181, 3750]]},
                             timeout=10)
    assert good.status_code == 200 and good.json()["model_version"].startswith("penguins-logreg-")
    assert errors["row"].astype(int).tolist() == spoiled.tolist()
