"""The two ways final_app computes answers: a compiled ONNX graph, or the scikit-learn model itself.

Both take what the validator has checked (InstanceValidator.checked: for a model fitted on an
array of numbers, a float64 array with a row per instance; else a list of values per feature, in
the model's order, None where a value is missing) and return (labels or values, probabilities or
None) as numpy arrays.

- OnnxEngine runs the graph save_model converted and proved (final_app/convert.py) with
  ONNX Runtime: one session per process, one thread per call, shared by gunicorn's threads.
  It needs neither scikit-learn nor the pickle: only the graph and numpy.
- SklearnEngine calls the model's own predict (and predict_proba): any model, any column type.
"""

import numpy as np

from final_app.validation import model_input

MATRIX_INPUT = "X"  # the graph's one input when it takes every feature as one array

# How the checked values of one feature become the graph's input, for each tensor type a graph's
# input may have (ONNX Runtime calls them tensor(double), tensor(float), ...).
COLUMN_MAKERS = {
    "double": lambda values: number_column(values, np.float64),
    "float": lambda values: number_column(values, np.float32),
    "int64": lambda values: number_column(values, np.int64),
    "string": lambda values: text_column(values),
}


def short_list(items, count=4):
    """Return the first few items of a list as text, with how many more there are."""
    more = f" and {len(items) - count} more" if len(items) > count else ""
    return ", ".join(f"{name} ({kind})" for name, kind in items[:count]) + more


class EngineError(Exception):
    """The compiled graph cannot be served as the metadata describes it; str() is one line."""


def number_column(values, dtype):
    """Return one column of numbers, missing values as NaN, shaped (rows, 1).

    numpy itself turns None into NaN in a float array; an int64 input is never missing (save_model
    gives a feature that may be missing a float input).
    """
    return np.array(values, dtype=dtype).reshape(-1, 1)


def text_column(values):
    """Return one column of texts, shaped (rows, 1); a missing text is the empty text.

    save_model only compiles a model whose graph maps the empty text where scikit-learn's
    imputer maps a missing value, and proves the two agree on rows with missing values.
    """
    return np.array(["" if value is None else value for value in values], dtype=object).reshape(-1, 1)


class OnnxEngine:
    """Answers from a compiled ONNX graph, run by ONNX Runtime with one thread per call."""

    name = "onnx"

    def __init__(self, graph, metadata):
        import onnxruntime  # here, not at the top: a model served by scikit-learn never needs it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # gunicorn's threads and workers share the cores
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 (a graph ONNX Runtime cannot read: say what it said)
            raise EngineError(f"ONNX Runtime cannot load the graph: {str(error).splitlines()[0][:200]}") from None
        engine = metadata["engine"]
        self.task = metadata["task"]
        self.with_probabilities = self.task == "classification" and metadata.get("probabilities", False)
        self.float_type = np.float32 if engine["precision"] == "float" else np.float64
        # What save_model recorded: the graph's inputs, in order, each with its tensor type.
        inputs = [(name, kind) for name, kind in engine["inputs"]]
        self.takes_matrix = [name for name, _kind in inputs] == [MATRIX_INPUT]
        self.columns = [(name, COLUMN_MAKERS[kind]) for name, kind in inputs]
        found = [(graph_input.name, graph_input.type) for graph_input in self.session.get_inputs()]
        expected = [(name, f"tensor({kind})") for name, kind in inputs]
        if found != expected:
            raise EngineError(f"the graph's inputs are {short_list(found)}, its metadata says {short_list(expected)}")
        self.outputs = [output.name for output in self.session.get_outputs()]
        # JSON's own class values (a label comes out of the graph as a numpy value: 1 for True, ...).
        self.class_of = {value: value for value in metadata.get("classes", [])}

    def feed(self, checked):
        """Return the graph's inputs for checked values: one array, or one column per feature."""
        if isinstance(checked, np.ndarray):  # a row per instance
            return {MATRIX_INPUT: np.asarray(checked, dtype=self.float_type)}
        if self.takes_matrix:  # numbers, a list per feature: numpy makes None NaN in a float array
            return {MATRIX_INPUT: np.ascontiguousarray(np.array(checked, dtype=self.float_type).T)}
        return {name: make(values) for (name, make), values in zip(self.columns, checked)}

    def answers(self, checked):
        """Return (labels or values, probabilities or None) for checked values (InstanceValidator.checked)."""
        results = self.session.run(self.outputs, self.feed(checked))
        if self.task == "regression":
            return np.asarray(results[0], dtype=np.float64).reshape(-1), None
        labels = [self.class_of[label] for label in results[0].reshape(-1).tolist()]
        # A classifier without predict_proba still has a second output (its scores): not an answer.
        probabilities = np.asarray(results[1], dtype=np.float64) if self.with_probabilities else None
        if probabilities is not None and self.float_type is np.float32:
            # Rounded to float32, a probability may come out a hair above 1 (1.0000001): keep it a probability.
            np.clip(probabilities, 0.0, 1.0, out=probabilities)
        return np.array(labels, dtype=object), probabilities


class SklearnEngine:
    """Answers from the scikit-learn model itself: predict, and predict_proba for a classifier."""

    name = "sklearn"

    def __init__(self, model, metadata):
        self.model = model
        self.metadata = metadata
        self.task = metadata["task"]
        self.with_probabilities = self.task == "classification" and metadata.get("probabilities", False)
        # The validator has already checked every value; unless a value may be missing (NaN, on
        # purpose), scikit-learn need not scan the rows for NaN and infinity a second time.
        self.assume_finite = not any(feature.get("nullable") for feature in metadata["features"])
        import sklearn  # here, once: a model served by its graph never needs it

        self.config_context = sklearn.config_context

    def answers(self, checked):
        """Return (labels or values, probabilities or None) for checked values (InstanceValidator.checked)."""
        X = checked if isinstance(checked, np.ndarray) else model_input(checked, self.metadata)
        with self.config_context(assume_finite=self.assume_finite):
            answers = np.asarray(self.model.predict(X))
            if not self.with_probabilities:
                return answers, None
            return answers, np.asarray(self.model.predict_proba(X))
