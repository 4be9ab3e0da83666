"""final_app.artifact (loading) and final_app.check: verify the artifact before unpickling, refuse clearly."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import joblib
import pytest
import sklearn.base
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from final_app import check
from final_app.artifact import (METADATA_FILE, MODEL_DIR, MODEL_FILE, ModelError, installed_versions,
                             load_model, load_model_and_metadata, sha256_of)

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def model_copy(tmp_path):
    """A temp copy of the committed model folder, safe to tamper with."""
    copy = tmp_path / "model"
    shutil.copytree(MODEL_DIR, copy)
    return copy


def edit_metadata(model_dir, change):
    """Apply change(metadata) to the metadata JSON in model_dir."""
    path = model_dir / METADATA_FILE
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def assert_one_line_error(error, path, expected, found, advice):
    """Assert a ModelError is one line naming the file, expected and found value, and advice."""
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    assert f"expected {expected}, found {found}" in message
    assert advice in message


def test_committed_model_loads_and_matches_its_metadata():
    model, metadata = load_model_and_metadata()
    assert isinstance(model, Pipeline)
    assert metadata["sha256"] == sha256_of((MODEL_DIR / MODEL_FILE).read_bytes())
    assert metadata["versions"]["scikit-learn"] == sklearn.__version__
    assert [feature["name"] for feature in metadata["features"]] == [
        "sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert metadata["classes"] == ["setosa", "versicolor", "virginica"]
    assert all(feature["unit"] == "cm" and feature["min"] == 0 for feature in metadata["features"])
    assert model.predict([[5.1, 3.5, 1.4, 0.2]]).tolist() == ["setosa"]


def test_load_model_returns_the_same_model_as_load_model_and_metadata(iris_rows):
    assert (load_model().predict_proba(iris_rows) == load_model_and_metadata()[0].predict_proba(iris_rows)).all()


def test_model_path_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_model(), Pipeline)


def test_tampered_file_is_refused_before_unpickling(model_copy, monkeypatch):
    data = bytearray((model_copy / MODEL_FILE).read_bytes())
    data[-10] ^= 0xFF
    (model_copy / MODEL_FILE).write_bytes(bytes(data))
    monkeypatch.setattr(joblib, "load", lambda *args: pytest.fail("unpickled a tampered file"))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    expected = json.loads((model_copy / METADATA_FILE).read_text())["sha256"]
    assert_one_line_error(error, model_copy / MODEL_FILE, expected, sha256_of(bytes(data)), "make train")


@pytest.mark.parametrize("library, planted", [
    ("scikit-learn", "1.7.2"), ("numpy", "1.26.4"), ("scipy", "1.13.0"), ("joblib", "1.4.2")])
def test_library_version_mismatch_is_refused_before_unpickling(model_copy, monkeypatch, library, planted):
    edit_metadata(model_copy, lambda metadata: metadata["versions"].update({library: planted}))
    monkeypatch.setattr(joblib, "load", lambda *args: pytest.fail("unpickled under other versions"))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert_one_line_error(error, model_copy / METADATA_FILE, planted, installed_versions()[library],
                          "pip install -r requirements.txt")
    assert f"{library} version" in str(error.value)


def test_python_minor_version_mismatch_is_refused(model_copy):
    edit_metadata(model_copy, lambda metadata: metadata["versions"].update(python="3.10.14"))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    found = ".".join(installed_versions()["python"].split(".")[:2])
    assert_one_line_error(error, model_copy / METADATA_FILE, "3.10", found, "make train")


def test_python_patch_release_does_not_matter(model_copy):
    major, minor, _patch = installed_versions()["python"].split(".")[:3]
    edit_metadata(model_copy, lambda metadata: metadata["versions"].update(python=f"{major}.{minor}.0"))
    assert isinstance(load_model(model_copy), Pipeline)


def test_inconsistent_version_warning_is_an_error(model_copy, monkeypatch):
    # Plant a pickle that says another scikit-learn made it, with metadata that otherwise matches.
    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", "1.7.2")
        joblib.dump(Pipeline([("scale", StandardScaler().fit([[1.0], [2.0]]))]), model_copy / MODEL_FILE)
    sha256 = sha256_of((model_copy / MODEL_FILE).read_bytes())
    edit_metadata(model_copy, lambda metadata: metadata.update(sha256=sha256))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert_one_line_error(error, model_copy / MODEL_FILE, "1.7.2", sklearn.__version__,
                          "pip install -r requirements.txt")


def test_missing_model_file(model_copy):
    (model_copy / MODEL_FILE).unlink()
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert_one_line_error(error, model_copy / MODEL_FILE, "present", "nothing", "make train")


def test_missing_metadata(tmp_path):
    with pytest.raises(ModelError) as error:
        load_model(tmp_path)
    assert_one_line_error(error, tmp_path / METADATA_FILE, "present", "nothing", "make train")


def test_unreadable_metadata(model_copy):
    (model_copy / METADATA_FILE).write_text("{not json")
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert_one_line_error(error, model_copy / METADATA_FILE, "readable", "JSONDecodeError", "make train")


def test_metadata_without_sha256(model_copy):
    edit_metadata(model_copy, lambda metadata: metadata.pop("sha256"))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert_one_line_error(error, model_copy / METADATA_FILE, "present", "missing", "make train")


def test_not_a_pickle_with_a_matching_checksum(model_copy):
    (model_copy / MODEL_FILE).write_bytes(b"this is not a pickle")
    edit_metadata(model_copy, lambda metadata: metadata.update(sha256=sha256_of(b"this is not a pickle")))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert "model check failed for" in str(error.value) and "\n" not in str(error.value)


# --- python -m final_app.check ------------------------------------------------------------------

def test_check_passes_on_the_committed_model(capsys):
    assert check.main() == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert "OK, served by onnx: sha256 and versions match" in line and "-> setosa" in line


def test_check_times_the_largest_request(monkeypatch, capsys):
    shapes = []
    real = check.Predictor.predict
    monkeypatch.setattr(check.Predictor, "predict", lambda self, rows: shapes.append(rows.shape) or real(self, rows))
    monkeypatch.setenv("MAX_BATCH_ROWS", "2500")
    assert check.main() == 0
    assert shapes == [(1, 4), (2500, 4)]  # the example row, then 2,500 times, read and checked as a request is
    assert re.search(r"; a request of 2500 rows took \d+\.\d s \(limit 30 s\)\n$", capsys.readouterr().out)


@pytest.mark.parametrize("seconds, warned", [(9.9, False), (10.1, True), (45.0, True)])
def test_check_warns_past_a_third_of_herokus_30_s(seconds, warned):
    note = check.timing_note(seconds, 10_000)
    assert note.startswith(f"a request of 10000 rows took {seconds:.1f} s (limit 30 s)")
    assert ("warning: over a third of Heroku's limit" in note) is warned
    if warned:
        assert note.endswith(f"set MAX_BATCH_ROWS to {int(10_000 * 10 / seconds)} or fewer")


def test_check_fails_on_a_version_mismatch(model_copy, capsys):
    edit_metadata(model_copy, lambda metadata: metadata["versions"].update(numpy="1.26.4"))
    assert check.main(model_copy) == 1
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert line.startswith(f"model check failed for {model_copy / METADATA_FILE}: numpy version expected 1.26.4")


def test_check_command_exit_codes(model_copy):
    command = [sys.executable, "-m", "final_app.check"]
    good = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert len(good.stdout.splitlines()) == 1 and good.stderr == ""
    (model_copy / MODEL_FILE).write_bytes(b"tampered")
    bad = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, MODEL_DIR=str(model_copy)))
    assert bad.returncode == 1
    assert len(bad.stdout.splitlines()) == 1 and "sha256 expected" in bad.stdout


# A model holding a 100 MiB array, saved by one new Python ...
SAVE_A_BIG_MODEL = """
import sys
import numpy as np
from sklearn.linear_model import LinearRegression
from final_app.artifact import save_model

X = np.arange(30.0).reshape(10, 3)
model = LinearRegression().fit(X, X[:, 0])
model.ballast_ = np.ones(100 * 2**20 // 8)
save_model(model, X, sys.argv[1], feature_names=["a", "b", "c"])
"""
# ... and loaded by another, which prints how far its peak memory (ru_maxrss, KiB on Linux) grew.
LOAD_A_BIG_MODEL = """
import resource, sys
import sklearn.linear_model
from final_app.artifact import load_model_and_metadata

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model, _metadata = load_model_and_metadata(sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
def test_loading_a_model_peaks_near_its_own_size(tmp_path):
    # The file is hashed in chunks and unpickled from the same open file: never held whole in memory.
    for script in (SAVE_A_BIG_MODEL, LOAD_A_BIG_MODEL):
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120, check=True)
    size = (tmp_path / MODEL_FILE).stat().st_size
    growth = int(result.stdout)
    assert size > 100 * 2**20
    assert growth < 1.2 * size, f"loading a {size / 2**20:.0f} MiB model grew the peak by {growth / 2**20:.0f} MiB"
