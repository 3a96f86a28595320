"""Model outputs -> the API's predictions, probabilities and confidence. Pure: numpy only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def outputs_read(
    output_names: Sequence[str], outputs: Sequence[Any]
) -> tuple[list[Any], list[list[float]] | None, list[float] | None]:
    """(predictions, probabilities, confidence) of one scored batch.

    Classifiers (a "probabilities" output beside the labels, as skl2onnx writes with
    zipmap off) get all three: the label per row, every class's probability, and the
    highest of them as the confidence. Any other model gets its first output's values,
    one per row (a scalar output still answers a list).
    """
    names = list(output_names)
    if "probabilities" in names and len(names) >= 2:
        probs = np.asarray(outputs[names.index("probabilities")])
        labels = outputs[names.index("label")] if "label" in names else outputs[0]
        return (
            np.asarray(labels).ravel().tolist(),
            probs.tolist(),
            probs.max(axis=1).astype(float).tolist(),
        )
    first = np.atleast_1d(np.asarray(outputs[0]))
    if first.ndim == 2 and first.shape[1] == 1:
        first = first[:, 0]
    return first.tolist(), None, None
