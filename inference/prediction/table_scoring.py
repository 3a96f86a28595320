"""Score a whole table off the request path (a drift check scoring reference data).

Not the serving path: no routing, no events, no metrics; a CPU session of its own,
made from the version's bytes, run in chunks. Pure: onnxruntime, numpy and the
prediction modules' own table and output functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from models_registry.tensor_types import numpy_dtype, signature_dtype

from . import tables
from .outputs import outputs_read

CHUNK_ROWS = 2_048


@dataclass(frozen=True)
class TablePredictions:
    predictions: list[Any]
    # None when the model gives no class probabilities (a regressor).
    probabilities: list[list[float]] | None
    confidence: list[float] | None


def table_predict(
    *, model_bytes: bytes, feature_names: Sequence[str], table: np.ndarray
) -> TablePredictions:
    """The model's outputs for every row of ``table`` (rows x features in
    ``feature_names`` order; an object array where features are texts).

    Raises ValueError when the model takes no table of these features; onnxruntime's
    errors when it refuses the values.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    inputs = [
        (
            a.name,
            numpy_dtype(signature_dtype(a.type)),
            [d if isinstance(d, int) else None for d in a.shape],
        )
        for a in session.get_inputs()
    ]
    layout = tables.layout_for(feature_names, inputs)
    if layout is None:
        raise ValueError("the model takes no table of its named features")
    output_names = [o.name for o in session.get_outputs()]
    predictions: list[Any] = []
    probabilities: list[list[float]] = []
    confidence: list[float] = []
    classifier = True
    for start in range(0, len(table), CHUNK_ROWS):
        chunk = table[start : start + CHUNK_ROWS]
        outputs = session.run(output_names, tables.feeds(layout, chunk))
        found, probs, conf = outputs_read(output_names, outputs)
        predictions.extend(found)
        if probs is None or conf is None:
            classifier = False
        else:
            probabilities.extend(probs)
            confidence.extend(conf)
    if not classifier:
        return TablePredictions(predictions, None, None)
    return TablePredictions(predictions, probabilities, confidence)
