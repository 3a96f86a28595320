"""The prediction path: one service behind REST predict, the v2 protocol and the data plane.

- ``tables``: request bodies of named features -> input tensors (pure).
- ``outputs``: model outputs -> predictions, probabilities, confidence (pure).
- ``shadow``: the challenger scoring a copy of the champion's request, off the answer.
- ``service``: authorize, route, build inputs, score, publish the event, count metrics.
- ``table_scoring``: a whole table scored off the request path (drift's reference
  predictions).
"""

from __future__ import annotations

from .service import Prediction, prediction_create, tensor_infer, warm_execution

__all__ = ["Prediction", "prediction_create", "tensor_infer", "warm_execution"]
