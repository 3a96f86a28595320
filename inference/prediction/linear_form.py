"""Is an ONNX graph a linear model? Read its weights if so (onnx only, no Django).

skl2onnx writes a linear regression as one ``LinearRegressor`` node and a logistic
regression as one ``LinearClassifier`` node, after an optional ``Scaler`` (a
``StandardScaler`` step of the pipeline); output-shaping nodes after them (Cast,
Identity, ZipMap, Normalizer) change no score. Such a graph is w.x + b per class
on its raw input, and its attributions have a closed form (``attributions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_AFTER = frozenset({"Cast", "Identity", "ZipMap", "Normalizer"})


@dataclass(frozen=True)
class LinearForm:
    """Scores = x @ weights.T + intercepts (one row per class; one row for a regressor)."""

    weights: FloatArray  # classes x features
    intercepts: FloatArray  # classes
    classes: tuple[Any, ...]  # class labels in weight-row order; () for a regressor
    post_transform: str  # what turns scores into outputs: NONE, LOGISTIC, SOFTMAX...

    def row_for(self, label: Any) -> int:
        """The weight row whose score decides ``label`` (0 for a regressor)."""
        return self.classes.index(label) if self.classes else 0


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def linear_form_read(path: str) -> LinearForm | None:
    """The linear form of the model at ``path``, or None when it is not one."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    nodes = list(model.graph.node)
    if len(model.graph.input) != 1 or not nodes:
        return None
    scale: FloatArray | None = None
    offset: FloatArray | None = None
    if nodes[0].op_type == "Scaler":
        attributes = _attributes(nodes.pop(0))
        scale = np.asarray(attributes.get("scale", [1.0]), dtype=np.float64)
        offset = np.asarray(attributes.get("offset", [0.0]), dtype=np.float64)
    if not nodes or nodes[0].op_type not in ("LinearClassifier", "LinearRegressor"):
        return None
    head, rest = nodes[0], nodes[1:]
    if any(node.op_type not in _AFTER for node in rest):
        return None
    attributes = _attributes(head)
    coefficients = np.asarray(attributes["coefficients"], dtype=np.float64)
    intercepts = np.asarray(attributes.get("intercepts", [0.0]), dtype=np.float64)
    if head.op_type == "LinearRegressor":
        classes: tuple[Any, ...] = ()
        targets = int(attributes.get("targets", 1))
        if targets != 1:
            return None
    else:
        labels = attributes.get("classlabels_ints") or attributes.get("classlabels_strings")
        classes = tuple(v.decode() if isinstance(v, bytes) else v for v in labels or [])
        if not classes:
            return None
    weights = coefficients.reshape(max(len(classes), 1), -1)
    intercepts = np.broadcast_to(intercepts, (weights.shape[0],)).astype(np.float64)
    if scale is not None and offset is not None:
        # Scaler: x' = (x - offset) * scale, so w.x' + b = (w*scale).x + (b - w.(offset*scale)).
        scale = np.broadcast_to(scale, (weights.shape[1],))
        offset = np.broadcast_to(offset, (weights.shape[1],))
        intercepts = intercepts - weights @ (offset * scale)
        weights = weights * scale
    post = attributes.get("post_transform", b"NONE")
    return LinearForm(
        weights=weights,
        intercepts=intercepts,
        classes=classes,
        post_transform=post.decode() if isinstance(post, bytes) else str(post),
    )
