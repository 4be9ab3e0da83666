"""Check the model artifact the way the app loads it, and predict one flower: python -m final_app.check

Exits 0 and prints one line when the model is usable; prints the reason and exits 1 when it is not.
Heroku's build runs this, so a broken or mismatched model fails the build instead of the app.
"""
import os
import sys

from final_app.model import ModelError, load_model_and_metadata

SAMPLE = [5.1, 3.5, 1.4, 0.2]  # the first flower of the iris data set: a setosa


def main(model_dir=None):
    """Load and verify the model, predict SAMPLE, print one line; return the exit status."""
    model_dir = model_dir or os.environ.get("MODEL_DIR") or None  # the folder the app would load
    try:
        model, metadata = load_model_and_metadata(model_dir)
    except ModelError as error:
        print(error)
        return 1
    label = metadata["classes"][int(model.predict([SAMPLE])[0])]
    print(f"model {metadata['model_version']} OK: sha256 and versions match, {SAMPLE} -> {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
