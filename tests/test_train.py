"""final_app.train: a fixed seed, numpy only, and metadata that describes the file it sits beside."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from final_app.artifact import MODEL_DIR, PINNED_LIBRARIES, installed_versions, load_model_and_metadata, sha256_of

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """Run `python -m final_app.train` into a temp folder, as `make train` does; return the folder."""
    folder = tmp_path_factory.mktemp("retrained")
    result = subprocess.run([sys.executable, "-W", "error", "-m", "final_app.train", "--model-dir", str(folder)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning of any kind (feature names, convergence, deprecation)
    assert result.stdout.startswith("trained iris-logreg-")
    return folder


def test_retrained_model_loads_through_the_verification(retrained):
    model, metadata = load_model_and_metadata(retrained)
    assert metadata["sha256"] == sha256_of((retrained / "model.joblib").read_bytes())
    assert metadata["versions"] == installed_versions((*PINNED_LIBRARIES, "onnxruntime"))  # ONNX: its runtime too


def test_retraining_gives_identical_predictions(retrained, trained, iris_rows):
    committed_model, _ = trained
    new_model, _ = load_model_and_metadata(retrained)
    assert (new_model.predict(iris_rows) == committed_model.predict(iris_rows)).all()
    np.testing.assert_allclose(new_model.predict_proba(iris_rows), committed_model.predict_proba(iris_rows),
                               rtol=0, atol=1e-12)


def test_retraining_with_the_same_versions_rewrites_the_same_metadata(retrained):
    new = json.loads((retrained / "model.json").read_text())
    committed = json.loads((MODEL_DIR / "model.json").read_text())
    if new["versions"] != committed["versions"]:
        pytest.fail(f"the installed versions {new['versions']} differ from the pins the model was "
                    f"trained with {committed['versions']}: install requirements.txt")
    for key in ("features", "classes", "metrics"):
        assert new[key] == committed[key]
    # The graph's bytes and its measured difference follow the model's last bits, which another CPU
    # may round differently; how it was compiled and what "equal" means may not differ.
    def compiled(engine):
        return dict({key: engine[key] for key in ("name", "precision", "inputs")},
                    **{key: engine["checked"][key] for key in ("rows", "relative_tolerance", "absolute_tolerance")})

    assert compiled(new["engine"]) == compiled(committed["engine"])


def test_metadata_describes_features_in_model_order(retrained):
    metadata = json.loads((retrained / "model.json").read_text())
    assert [feature["name"] for feature in metadata["features"]] == [
        "sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert metadata["classes"] == ["setosa", "versicolor", "virginica"]
    assert set(metadata["versions"]) == {"python", "scikit-learn", "numpy", "scipy", "joblib", "onnxruntime"}


def test_upper_bounds_leave_room_but_reject_millimetres(retrained, iris_rows):
    features = json.loads((retrained / "model.json").read_text())["features"]
    largest = np.max(iris_rows, axis=0)
    for feature, biggest_seen in zip(features, largest):
        assert feature["min"] == 0 and feature["unit"] == "cm"
        assert 1.5 * biggest_seen <= feature["max"] < 10 * biggest_seen


def test_metrics_are_plausible(retrained):
    metrics = json.loads((retrained / "model.json").read_text())["metrics"]
    assert metrics["train_rows"] + metrics["holdout_rows"] == 150
    assert metrics["cv_folds"] == 5
    assert 0.85 <= metrics["holdout_accuracy"] <= 1
    assert 0.85 <= metrics["cv_accuracy_mean"] <= 1
    assert 0 <= metrics["cv_accuracy_std"] < 0.15


def test_model_is_trained_on_plain_arrays(trained):
    model, _ = trained
    assert not hasattr(model, "feature_names_in_")  # so numpy rows predict without name warnings
    assert model.n_features_in_ == 4
