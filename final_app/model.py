"""Load the saved model, but only after checking it is the file we trained, under the same versions.

A joblib file is a pickle: loading it runs code. So we never unpickle a file until its sha256
matches the one written by our own training run, and the library versions installed now match
the ones that trained it (a model may fail to load, or silently mispredict, under other versions).
"""
import hashlib
import importlib.metadata
import io
import json
import pathlib
import platform
import warnings

MODEL_DIR = pathlib.Path(__file__).resolve().parent / "model"
MODEL_FILE = "iris.joblib"
METADATA_FILE = "iris.json"

# The distributions whose exact versions the model depends on (PyPI names).
PINNED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")

RETRAIN_HINT = "re-train with `make train` (python -m final_app.train)"
REINSTALL_HINT = "install the pinned versions (pip install -r requirements.txt) or " + RETRAIN_HINT


class ModelError(Exception):
    """The model artifact cannot be trusted or loaded; str() is one line saying what and what to do."""


def model_error(path, what, expected, found, advice):
    """Build the one-line ModelError naming the file, the expected and the found value, and advice."""
    return ModelError(f"model check failed for {path}: {what} expected {expected}, found {found}; {advice}")


def installed_versions():
    """Return the versions running now, in the same shape as the metadata's "versions"."""
    versions = {"python": platform.python_version()}
    for name in PINNED_LIBRARIES:
        versions[name] = importlib.metadata.version(name)
    return versions


def major_minor(version):
    """Return "3.11" for "3.11.9": a model does not depend on Python's patch release."""
    return ".".join(version.split(".")[:2])


def sha256_of(data):
    """Return the hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def read_metadata(model_dir=None):
    """Read and return the metadata JSON that sits beside the model file."""
    path = pathlib.Path(model_dir or MODEL_DIR) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise model_error(path, "file", "present", "nothing", RETRAIN_HINT) from None
    except (OSError, ValueError) as error:
        raise model_error(path, "JSON", "readable", type(error).__name__, RETRAIN_HINT) from None
    for key in ("model_version", "features", "classes", "sha256", "versions"):
        if key not in metadata:
            raise model_error(path, f"key {key!r}", "present", "missing", RETRAIN_HINT)
    return metadata


def check_versions(metadata, metadata_path, found=None):
    """Raise ModelError if Python (major.minor) or a pinned library differs from the metadata."""
    found = found or installed_versions()
    expected = metadata["versions"]
    if major_minor(expected.get("python", "?")) != major_minor(found["python"]):
        raise model_error(metadata_path, "Python version", major_minor(expected.get("python", "?")),
                          major_minor(found["python"]), "run with the Python version that trained the model or " + RETRAIN_HINT)
    for name in PINNED_LIBRARIES:
        if expected.get(name) != found[name]:
            raise model_error(metadata_path, f"{name} version", expected.get(name), found[name], REINSTALL_HINT)


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
