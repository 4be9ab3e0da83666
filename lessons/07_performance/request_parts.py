"""Lesson 07: where the time of one final_app request goes, part by part, measured in this process.

    parts = part_seconds(engine, metadata, rows, number=200)     # {part: seconds per request}
    whole = whole_request_seconds(app, rows, number=200)          # the same request through Flask

final_app does five things for each POST /predict, in this order. Each is timed alone here, with
the engine you pass: the ONNX graph final_app serves, or the scikit-learn model itself.

    read the JSON body      validator.parse: orjson turns the bytes into Python lists
    check every value       validator.checked: types, ranges, allowed values (final_app/validation.py)
    the model               engine.answers: labels and probabilities (final_app/engines.py)
    answers as dicts        Predictor.predict, the model left out: one dict per row (final_app/app.py)
    write the JSON answer   orjson.dumps

whole_request_seconds calls the app as gunicorn does: a WSGI call, with the request as a dict.
What that costs beyond the five parts is Flask's own work (the request and response objects,
the routing, the headers). gunicorn's HTTP handling and its access log line come on top: make
bench measures those.
"""
import io
import json
import sys
import timeit
from pathlib import Path

import orjson
from werkzeug.test import EnvironBuilder

# final_app/ is two folders up: put the repository root on Python's import path to reuse it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
from final_app.app import Predictor  # noqa: E402
from final_app.validation import InstanceValidator  # noqa: E402

PARTS = ["read the JSON body", "check every value", "the model", "answers as dicts", "write the JSON answer"]


def best_seconds(function, number):
    """Return the fastest of 5 rounds of number calls, in seconds per call: the least disturbed by load."""
    return min(timeit.repeat(function, number=number, repeat=5)) / number


class Computed:
    """An engine whose answers are already computed: to time what Predictor does around the model."""

    def __init__(self, answers):
        self.computed = answers

    def answers(self, checked):
        """Return the answers computed before, whatever the values checked."""
        return self.computed


def part_seconds(engine, metadata, rows, number):
    """Return {part: seconds} for final_app's five parts of one request of rows, with this engine."""
    validator = InstanceValidator(metadata, max_rows=10_000)
    body = json.dumps({"instances": rows}).encode()
    payload = validator.parse(body)
    checked = validator.checked(payload)
    predictor = Predictor(Computed(engine.answers(checked)), metadata)
    answer = {"model_version": metadata["model_version"], "predictions": predictor.predict(checked)}
    steps = [lambda: validator.parse(body), lambda: validator.checked(payload), lambda: engine.answers(checked),
             lambda: predictor.predict(checked), lambda: orjson.dumps(answer)]
    return {part: best_seconds(step, number) for part, step in zip(PARTS, steps)}


def whole_request_seconds(app, rows, number):
    """Return the seconds app takes for POST /predict with rows, called as gunicorn calls it."""
    body = json.dumps({"instances": rows}).encode()
    environ = EnvironBuilder(path="/predict", method="POST", data=body,
                             content_type="application/json").get_environ()

    def request():
        # A fresh dict and body for each call: Flask reads the body and keeps notes in the dict.
        answer = app(dict(environ, **{"wsgi.input": io.BytesIO(body)}), lambda status, headers: None)
        assert b"predictions" in b"".join(answer)

    return best_seconds(request, number)
