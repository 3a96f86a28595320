"""What a model predicts, read from its ONNX graph, and whether a label fits it.

Pure module (``onnx`` only, no Django). Ground truth feeds accuracy, experiments and
retraining, so feedback is held to the model's output type: a classifier's label must
be one of the classes the graph names (or at least of its label type), a regressor's
a finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

CLASSIFIER = "classifier"
REGRESSOR = "regressor"
OTHER = "other"

# ai.onnx.ml operators that carry the class labels, and the attributes that hold them.
_CLASS_LABEL_ATTRIBUTES = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")
_CLASSIFIER_OPS = frozenset({"LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier"})
_REGRESSOR_OPS = frozenset({"LinearRegressor", "TreeEnsembleRegressor", "SVMRegressor"})
_INTEGER_TYPES = frozenset(
    {
        onnx.TensorProto.INT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT64,
    }
)
_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
)


@dataclass(frozen=True)
class OutputType:
    """``kind``: classifier, regressor or other. ``classes``: a classifier's labels when
    the graph names them; ``label_type``: "int" or "str" for a classifier's labels."""

    kind: str
    classes: tuple[int | str, ...] | None = None
    label_type: str | None = None


def _class_labels(graph: onnx.GraphProto) -> tuple[int | str, ...] | None:
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.name not in _CLASS_LABEL_ATTRIBUTES:
                continue
            if attribute.ints:
                return tuple(int(v) for v in attribute.ints)
            if attribute.strings:
                return tuple(v.decode("utf-8", "replace") for v in attribute.strings)
    return None


def output_type_read(path: Path) -> OutputType:
    """The output type of the ONNX model at ``path`` (external data is not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    ops = {node.op_type for node in graph.node}
    outputs = [(o.name, o.type.tensor_type.elem_type) for o in graph.output]
    classes = _class_labels(graph)
    names = [name for name, _ in outputs]
    if classes is not None or ops & _CLASSIFIER_OPS or "probabilities" in names:
        label_dtype = dict(outputs).get("label", outputs[0][1] if outputs else 0)
        if classes:
            label_type = "str" if isinstance(classes[0], str) else "int"
        elif label_dtype == onnx.TensorProto.STRING:
            label_type = "str"
        elif label_dtype in _INTEGER_TYPES:
            label_type = "int"
        else:
            label_type = None
        return OutputType(kind=CLASSIFIER, classes=classes or None, label_type=label_type)
    if ops & _REGRESSOR_OPS or (outputs and outputs[0][1] in _FLOAT_TYPES):
        return OutputType(kind=REGRESSOR)
    return OutputType(kind=OTHER)


def label_problem(output_type: OutputType, value: Any) -> str | None:
    """Why ``value`` cannot be ground truth for a model of ``output_type``, or None."""
    if value is None:
        return "a label may not be null"
    if output_type.kind == REGRESSOR:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"this model is a regressor: the label must be a number, not {value!r}"
        if not math.isfinite(float(value)):
            return f"this model is a regressor: the label must be a finite number, not {value!r}"
        return None
    if output_type.kind == CLASSIFIER:
        if output_type.label_type == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return _not_a_class(output_type, value, "an integer class")
        elif output_type.label_type == "str" and not isinstance(value, str):
            return _not_a_class(output_type, value, "a class name")
        if output_type.classes is not None and value not in output_type.classes:
            return _not_a_class(output_type, value, "one of its classes")
        return None
    if isinstance(value, dict | list):
        return f"the label must be a single value, not {type(value).__name__}"
    return None


def _not_a_class(output_type: OutputType, value: Any, wanted: str) -> str:
    known = f" {list(output_type.classes)}" if output_type.classes is not None else ""
    return f"this model is a classifier: the label must be {wanted}{known}, not {value!r}"
