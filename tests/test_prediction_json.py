"""final_app's fast JSON for predictions gives exactly the bytes json.dumps would."""
import json

import numpy as np
import pytest

from final_app.app import Predictor


def compact(value):
    """The compact JSON json_response writes."""
    return json.dumps(value, separators=(",", ":"))


class FixedModel:
    """A stand-in model whose predict_proba returns the given rows, whatever it is asked."""

    def __init__(self, probabilities):
        self.probabilities = np.array(probabilities, dtype=np.float64)

    def predict_proba(self, rows):
        return self.probabilities


def test_predict_as_json_matches_json_dumps_for_every_iris_row(trained, iris_rows):
    model, metadata = trained
    predictor = Predictor(model, metadata["classes"])
    assert predictor.predict(iris_rows, as_json=True) == compact(predictor.predict(iris_rows))


@pytest.mark.parametrize("probabilities", [
    [[1.0, 0.0, 0.0]],
    [[5e-324, 1e-300, 1 - 1e-16]],
    [[0.1 + 0.2, 1 / 3, 2 / 3], [1e-05, 0.99999, 1e16]],
    [[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]],
])
def test_predict_as_json_matches_json_dumps_for_awkward_floats(probabilities):
    predictor = Predictor(FixedModel(probabilities), ["setosa", "versicolor", "virginica"])
    rows = [[1.0, 1.0, 1.0, 1.0]] * len(probabilities)
    assert predictor.predict(rows, as_json=True) == compact(predictor.predict(rows))


def test_class_names_that_need_escaping_are_written_as_json_would():
    classes = ['50% "sure"', "naïve", "back\\slash"]
    predictor = Predictor(FixedModel([[0.2, 0.3, 0.5]]), classes)
    text = predictor.predict([[1.0, 1.0, 1.0, 1.0]], as_json=True)
    assert text == compact(predictor.predict([[1.0, 1.0, 1.0, 1.0]]))
    assert json.loads(text) == [{"label": "back\\slash",
                                 "probabilities": {classes[0]: 0.2, classes[1]: 0.3, classes[2]: 0.5}}]


def test_predict_answer_is_the_compact_json_of_the_model_output(client, trained, iris_rows):
    model, metadata = trained
    response = client.post("/predict", json={"instances": iris_rows})
    assert response.status_code == 200
    assert response.content_type == "application/json"
    expected = {"model_version": metadata["model_version"],
                "predictions": Predictor(model, metadata["classes"]).predict(iris_rows)}
    assert response.get_data(as_text=True) == compact(expected)
