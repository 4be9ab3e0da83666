"""Check the model artifact the way the app loads it, and predict its example row: python -m final_app.check

Exits 0 and prints one line when the model is usable; prints the reason and exits 1 when it is not.
Heroku's build runs this (bin/post_compile), so a broken or mismatched model fails the build
instead of the app. The row it predicts is the example saved in the metadata (a training row).
"""
import os
import sys

from final_app.artifact import ModelError, load_model_and_metadata
from final_app.validation import InstanceValidator, RequestError


def main(model_dir=None):
    """Load and verify the model, predict the metadata's example row, print one line; return the exit status."""
    model_dir = model_dir or os.environ.get("MODEL_DIR") or None  # the folder the app would load
    try:
        model, metadata = load_model_and_metadata(model_dir)
        example = metadata["example"]
        X = InstanceValidator(metadata, max_rows=1).model_input({"instances": [example]})
        answer = model.predict(X)[0]
    except (ModelError, RequestError) as error:
        print(error.message if isinstance(error, RequestError) else error)
        return 1
    except Exception as error:  # noqa: BLE001 (whatever the model raises, the build must say so)
        print(f"the model failed to predict its example row: {type(error).__name__}: {error}")
        return 1
    answer = answer.item() if hasattr(answer, "item") else answer
    print(f"model {metadata['model_version']} OK: sha256 and versions match, {example} -> {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
