"""final_app's /predict answer: JSON whose parsed values are exactly the serving engine's probabilities.

The body is written by orjson, so its text may differ from json.dumps (5e-07 against 5e-7), but
every number must read back as the very float the model returned: compared with ==, never approx.
"""
import json

import numpy as np
import orjson
import pytest

from conftest import assert_same_answers
from final_app.app import Predictor
from final_app.engines import SklearnEngine

CLASSES = ["setosa", "versicolor", "virginica"]
AWKWARD_FLOATS = [5e-324, 1e-300, 1 - 1e-16, 0.1 + 0.2, 1e-05, 1e16, 0.0, 1.0]


class FixedModel:
    """A stand-in classifier whose predict_proba returns the given rows, whatever it is asked."""

    def __init__(self, probabilities, classes=CLASSES):
        self.probabilities = np.array(probabilities, dtype=np.float64)
        self.classes_ = np.array(classes, dtype=object)

    def predict(self, rows):
        return self.classes_[self.probabilities.argmax(axis=1)]

    def predict_proba(self, rows):
        return self.probabilities


def metadata_for(classes):
    """The part of a classifier's metadata that Predictor reads."""
    return {"task": "classification", "classes": classes, "probabilities": True, "features": []}


def use_fixed_model(app, probabilities, classes=CLASSES):
    """Make the app's predictor answer with FixedModel(probabilities) and these class names."""
    predictor = app.extensions["final_app.predictor"]
    # The routes hold this very object: set it up again, with the stand-in model.
    metadata = metadata_for(classes)
    predictor.__init__(SklearnEngine(FixedModel(probabilities, classes), metadata), metadata)
    return predictor


def fixed_predictor(probabilities, classes=CLASSES):
    """Return a Predictor whose engine calls FixedModel(probabilities)."""
    metadata = metadata_for(classes)
    return Predictor(SklearnEngine(FixedModel(probabilities, classes), metadata), metadata)


def post_rows(client, count):
    """POST count valid rows to /predict; return the response."""
    return client.post("/predict", json={"instances": [[1.0, 1.0, 1.0, 1.0]] * count})


def probabilities_in(body):
    """The probabilities of each prediction in a parsed /predict answer, in the answer's order."""
    return [list(prediction["probabilities"].values()) for prediction in body["predictions"]]


def all_floats(rows):
    """True if every value is a Python float (an integer like 1 would be == 1.0 but is not the same)."""
    return all(type(value) is float for row in rows for value in row)


def test_every_iris_row_answers_exactly_the_engines_probabilities(app, client, trained, iris_rows):
    model, metadata = trained
    response = client.post("/predict", json={"instances": iris_rows})
    assert response.status_code == 200
    body = json.loads(response.get_data())
    X = np.array(iris_rows, dtype=np.float64)
    _labels, served = app.extensions["final_app.predictor"].engine.answers(X)
    assert body["model_version"] == metadata["model_version"]
    assert probabilities_in(body) == served.tolist()  # the very floats the engine computed
    assert all_floats(probabilities_in(body))
    assert_same_answers(body["predictions"], model.predict(X), model.predict_proba(X), metadata)
    assert all(list(prediction["probabilities"]) == metadata["classes"] for prediction in body["predictions"])


def test_answer_content_type_is_json(client):
    response = post_rows(client, 1)
    assert response.status_code == 200
    assert response.content_type == "application/json"


def test_each_awkward_float_survives_orjson_exactly():
    for value in AWKWARD_FLOATS:
        text = orjson.dumps(value)
        assert json.loads(text) == value and type(json.loads(text)) is float, text
        assert json.loads(text) == json.loads(json.dumps(value))


@pytest.mark.parametrize("probabilities", [
    [[1.0, 0.0, 0.0]],
    [[5e-324, 1e-300, 1 - 1e-16]],
    [[0.1 + 0.2, 1 / 3, 2 / 3], [1e-05, 0.99999, 1e16]],
    [[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]],
    [AWKWARD_FLOATS[:3], AWKWARD_FLOATS[3:6], AWKWARD_FLOATS[5:]],
])
def test_awkward_floats_come_back_exactly_through_http(app, client, probabilities):
    use_fixed_model(app, probabilities)
    response = post_rows(client, len(probabilities))
    assert response.status_code == 200
    body = json.loads(response.get_data())
    assert probabilities_in(body) == probabilities
    assert all_floats(probabilities_in(body))
    as_json_dumps_would_write = json.loads(json.dumps(
        {"model_version": body["model_version"], "predictions": fixed_predictor(
            probabilities).predict(np.ones((len(probabilities), 4)))}))
    assert body == as_json_dumps_would_write


def test_predict_returns_one_dict_per_row_with_the_argmax_label():
    probabilities = [[0.2, 0.3, 0.5], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]
    predictions = fixed_predictor(probabilities).predict(np.ones((3, 4)))
    assert predictions == [
        {"label": "virginica", "probabilities": {"setosa": 0.2, "versicolor": 0.3, "virginica": 0.5}},
        {"label": "setosa", "probabilities": {"setosa": 0.7, "versicolor": 0.2, "virginica": 0.1}},
        {"label": "versicolor", "probabilities": {"setosa": 0.1, "versicolor": 0.8, "virginica": 0.1}},
    ]


def test_class_names_that_need_escaping_come_out_right(app, client):
    classes = ['50% "sure"', "naïve", "back\\slash"]
    use_fixed_model(app, [[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]], classes)
    response = post_rows(client, 2)
    assert response.status_code == 200
    text = response.get_data().decode("utf-8")  # strict: the body must be valid UTF-8
    assert json.loads(text)["predictions"] == [
        {"label": "back\\slash", "probabilities": {classes[0]: 0.2, classes[1]: 0.3, classes[2]: 0.5}},
        {"label": '50% "sure"', "probabilities": {classes[0]: 0.5, classes[1]: 0.3, classes[2]: 0.2}},
    ]


def test_class_names_that_are_numbers_become_keys_as_json_dumps_writes_them(app, client):
    # A model trained on numeric labels (0, 1, 2) keeps them as numbers in its metadata.
    use_fixed_model(app, [[0.2, 0.3, 0.5]], [0, 1, 2.5])
    response = post_rows(client, 1)
    assert response.status_code == 200
    expected = {"label": 2.5, "probabilities": {"0": 0.2, "1": 0.3, "2.5": 0.5}}
    assert response.get_json()["predictions"] == [expected]
    assert json.loads(json.dumps([expected])) == response.get_json()["predictions"]
