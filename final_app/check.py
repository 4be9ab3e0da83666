"""Check the model artifact the way the app loads it, and predict its example row: python -m final_app.check

Exits 0 and prints one line when the model is usable; prints the reason and exits 1 when it is not.
Heroku's build runs this (bin/post_compile), so a broken or mismatched model fails the build
instead of the app. The row it predicts is the example saved in the metadata. It also times the
largest request the app accepts (MAX_BATCH_ROWS copies of that row, read, checked and predicted)
and warns when that takes over a third of the 30 s Heroku's router gives a request.
"""
import json
import os
import sys
import time

from final_app.app import DEFAULTS, Predictor
from final_app.artifact import ModelError, load_engine
from final_app.validation import InstanceValidator, RequestError

# Heroku's router answers 503 (error H12) to a request with no response after 30 s; the dyno is not
# told, and goes on computing the answer nobody will read.
ROUTER_LIMIT_S = 30


def seconds_for_largest_request(predictor, metadata, max_rows):
    """Return how long the app's work takes for a request of max_rows copies of the example row."""
    validator = InstanceValidator(metadata, max_rows)
    body = json.dumps({"instances": [metadata["example"]] * max_rows}).encode()
    start = time.perf_counter()
    predictor.predict(validator.checked(validator.parse(body)))
    return time.perf_counter() - start


def timing_note(seconds, max_rows):
    """Return the words about the largest request's time, with a warning past a third of the limit."""
    note = f"a request of {max_rows} rows took {seconds:.1f} s (limit {ROUTER_LIMIT_S} s)"
    if seconds > ROUTER_LIMIT_S / 3:
        fits = max(1, int(max_rows * ROUTER_LIMIT_S / 3 / seconds))
        note += (f"; warning: over a third of Heroku's limit, so a slower or busier dyno may not answer "
                 f"in time: set MAX_BATCH_ROWS to {fits} or fewer")
    return note


def main(model_dir=None):
    """Load and verify the model, predict the metadata's example row, print one line; return the exit status."""
    model_dir = model_dir or os.environ.get("MODEL_DIR") or None  # the folder the app would load
    max_rows = int(os.environ.get("MAX_BATCH_ROWS") or DEFAULTS["MAX_BATCH_ROWS"])
    try:
        engine, metadata = load_engine(model_dir)
        predictor = Predictor(engine, metadata)
        example = metadata["example"]
        answer = predictor.predict(InstanceValidator(metadata, max_rows=1).checked({"instances": [example]}))[0]
        answer = answer.get("label", answer.get("value"))
        seconds = seconds_for_largest_request(predictor, metadata, max_rows)
    except (ModelError, RequestError) as error:
        print(error.message if isinstance(error, RequestError) else error)
        return 1
    except Exception as error:  # noqa: BLE001 (whatever the model raises, the build must say so)
        print(f"the model failed to predict its example row: {type(error).__name__}: {error}")
        return 1
    print(f"model {metadata['model_version']} OK, served by {engine.name}: sha256 and versions match, "
          f"{example} -> {answer}; "
          f"{timing_note(seconds, max_rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
