"""Retraining recipe of the demo credit-risk model.

Recent logged rows with ground truth show the population as it is now; the original
(synthetic) training table keeps the model from forgetting the rest. The recent rows
are repeated until they weigh as much as the original ones, a quarter of them is held
out to judge the new model on the population it will serve, and the converted ONNX
model (what will actually be served) is the one evaluated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monitoring.services.retraining import RetrainingResult
from phoenix.demo import credit_risk as demo

# The name train_demo_models stores on the model (RegisteredModel.retraining_recipe).
CREDIT_RISK_RECIPE = "demo.credit_risk"
ORIGINAL_ROWS = 8_000
# Below this many labelled rows a quarter of them says little: hold out original rows.
MIN_RECENT_FOR_HOLDOUT = 400
# With this many recent rows they become the new reference: the population served now.
MIN_RECENT_FOR_REFERENCE = 200
REFERENCE_ROWS = 5_000


def retrain(
    *,
    X: np.ndarray,
    y: np.ndarray,
    model_name: str,
    feature_names: list[str],
    seed: int = demo.DEFAULT_SEED,
) -> RetrainingResult:
    """Train a challenger on original + recent labelled rows; see the module docstring.

    Raises ValueError when a label is not 0/1 or a feature is unknown to the demo.
    """
    rng = np.random.default_rng(seed)
    original_X, original_y, original_names = demo.generate_customers(n=ORIGINAL_ROWS, seed=seed)
    missing = [name for name in feature_names if name not in original_names]
    if missing:
        raise ValueError(f"The credit-risk recipe does not know the features {missing}.")
    original_X = original_X[:, [original_names.index(name) for name in feature_names]]
    recent_X = np.asarray(X, dtype=np.float64).reshape(-1, len(feature_names))
    recent_y = _labels(y)

    order = rng.permutation(len(recent_y))
    if len(recent_y) >= MIN_RECENT_FOR_HOLDOUT:
        cut = len(order) // 4
        hold, train = order[:cut], order[cut:]
        holdout_X, holdout_y = recent_X[hold], recent_y[hold]
        recent_X, recent_y = recent_X[train], recent_y[train]
        original_train_X, original_train_y = original_X, original_y
        holdout_source = "recent"
    else:
        cut = len(original_y) // 5
        holdout_X, holdout_y = original_X[:cut], original_y[:cut]
        original_train_X, original_train_y = original_X[cut:], original_y[cut:]
        holdout_source = "original"

    if len(recent_y):
        repeats = max(1, len(original_train_y) // len(recent_y))
        train_X = np.vstack([original_train_X, np.repeat(recent_X, repeats, axis=0)])
        train_y = np.concatenate([original_train_y, np.repeat(recent_y, repeats)])
    else:
        train_X, train_y = original_train_X, original_train_y

    estimator = demo.train_challenger(train_X, train_y, seed=seed)
    model_bytes = demo.to_onnx_bytes(estimator, feature_names)
    metrics: dict[str, Any] = demo.evaluate_onnx(model_bytes, holdout_X, holdout_y)
    metrics["labelled_rows"] = float(len(X))
    metrics["training_rows"] = float(len(train_y))

    # The new reference is the population the model is meant to serve now.
    if len(recent_y) >= MIN_RECENT_FOR_REFERENCE:
        reference = recent_X[:REFERENCE_ROWS]
    else:
        reference = train_X[rng.permutation(len(train_y))[:REFERENCE_ROWS]]
    return RetrainingResult(
        model_bytes=model_bytes,
        metrics=metrics,
        reference=reference,
        tags={"algorithm": "gradient_boosting", "holdout": holdout_source, "demo": "true"},
        description=(
            f"{model_name} retrained on {len(original_train_y)} original and "
            f"{len(recent_y)} recent labelled rows; holdout from {holdout_source} rows."
        ),
    )


def _labels(y: np.ndarray) -> np.ndarray:
    values = np.asarray(y).reshape(-1)
    try:
        labels = np.array([int(float(v)) for v in values], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Credit-risk labels must be 0 or 1: {exc}") from exc
    if labels.size and not np.isin(labels, [0, 1]).all():
        raise ValueError("Credit-risk labels must be 0 or 1.")
    return labels
