"""Model performance from ground truth: the metrics that fit the task, and the verdict.

Pure: numpy, scipy and scikit-learn only, no Django. The service
(``monitoring.services.performance``) loads a window of labelled prediction rows and
the version's holdout metrics from the registry, and calls these.

- Classifiers: accuracy and ROC AUC (``sklearn.metrics``; one-vs-rest, macro, for more
  than two classes), and the top-label expected calibration error (ECE, below).
- Regressors: MAE and RMSE (``sklearn.metrics``).
- Both: the labelled share of the window's predictions and the label delay (time from
  prediction to label, quantiles).

A version is *degraded* when a score fell more than ``max_drop`` (absolute) below its
holdout value (accuracy, ROC AUC), or an error grew more than ``max_error_increase``
(relative) above it (MAE, RMSE). Metrics the holdout does not record are reported but
not judged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

Task = Literal["classification", "regression"]

CLASSIFICATION: Task = "classification"
REGRESSION: Task = "regression"

# Higher is better for these; lower is better for the errors. The exported metric
# names (a Prometheus label) are exactly these keys, so the label stays bounded.
SCORES: tuple[str, ...] = ("accuracy", "roc_auc")
ERRORS: tuple[str, ...] = ("mae", "rmse")
CALIBRATION: tuple[str, ...] = ("ece",)
METRICS_BY_TASK: dict[Task, tuple[str, ...]] = {
    CLASSIFICATION: ("accuracy", "roc_auc", "ece"),
    REGRESSION: ("mae", "rmse"),
}
# The metric a chart or a headline shows first, per task.
PRIMARY_METRIC: dict[Task, str] = {CLASSIFICATION: "accuracy", REGRESSION: "mae"}

ECE_BINS = 10

_TASK_WORDS: dict[str, Task] = {
    "classification": CLASSIFICATION,
    "classifier": CLASSIFICATION,
    "binary": CLASSIFICATION,
    "multiclass": CLASSIFICATION,
    "regression": REGRESSION,
    "regressor": REGRESSION,
}
_CLASS_LABEL_DTYPES = frozenset(
    {"string", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)


def task_detect(
    *,
    outputs: Sequence[Mapping[str, Any]],
    declared: Sequence[str | None] = (),
) -> Task:
    """The task of a model from its output signature.

    ``declared``: values a data scientist may have set (a version tag ``task``, ONNX
    metadata ``task``), first one that names a task wins. Otherwise a model with a
    ``probabilities`` output, or whose first output holds integers, booleans or strings
    (labels), is a classifier, as ``inference.prediction.outputs`` reads it; a model
    whose first output is a float is a regressor.
    """
    for value in declared:
        if isinstance(value, str) and value.strip().lower() in _TASK_WORDS:
            return _TASK_WORDS[value.strip().lower()]
    names = [str(o.get("name", "")) for o in outputs]
    if "probabilities" in names:
        return CLASSIFICATION
    if outputs and str(outputs[0].get("dtype", "")) in _CLASS_LABEL_DTYPES:
        return CLASSIFICATION
    return REGRESSION


def label_key(value: Any) -> Any:
    """A label as compared: 1, 1.0, True and "1" from JSON are all the class 1; other
    strings stay strings. Lists of one value (a batch row logged as [x]) are unwrapped."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return int(number) if math.isfinite(number) and number.is_integer() else number
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if math.isfinite(number) and number.is_integer() else text
    return str(value)


def number_or_none(value: Any) -> float | None:
    """A regression target or prediction as a float (one-element lists unwrapped)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def expected_calibration_error(
    correct: NDArray[Any], confidence: NDArray[Any], *, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: sum over equal-width confidence bins of (bin share) x |accuracy in
    the bin - mean confidence in the bin| (Guo et al., 2017).

    Bins as ``sklearn.calibration.calibration_curve(strategy="uniform")`` draws them
    (scikit-learn has the curve but no ECE); 0 is perfectly calibrated, 1 the worst.
    Raises ValueError for empty or mismatched inputs.
    """
    hits = np.asarray(correct, dtype=np.float64).ravel()
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    if hits.size == 0 or hits.size != conf.size:
        raise ValueError("ECE needs one confidence per labelled row, and at least one row")
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], conf, side="right")
    counts = np.bincount(ids, minlength=bins).astype(np.float64)
    hit_sums = np.bincount(ids, weights=hits, minlength=bins)
    conf_sums = np.bincount(ids, weights=conf, minlength=bins)
    filled = counts > 0
    gaps = np.abs(hit_sums[filled] - conf_sums[filled])  # = n_b * |acc_b - conf_b|
    return float(gaps.sum() / hits.size)


def classification_metrics(
    actual: Sequence[Any],
    predicted: Sequence[Any],
    probabilities: Sequence[Sequence[float]] | None = None,
    *,
    classes: Sequence[Any] | None = None,
) -> dict[str, float | None]:
    """Accuracy, ROC AUC and ECE of labelled classifier rows.

    ``probabilities``: one row of class probabilities per prediction, columns in the
    order of ``classes`` (the model's class labels). Without them, or without the class
    order, ROC AUC and ECE are None (ECE needs only the confidence, the top
    probability, so it is given when the probabilities are). ROC AUC is None, too,
    when the labels hold a single class (it is undefined) or a class outside
    ``classes``. Raises ValueError on empty or mismatched inputs.
    """
    y = [label_key(a) for a in actual]
    p = [label_key(v) for v in predicted]
    if not y or len(y) != len(p):
        raise ValueError("classification metrics need as many predictions as labels (>0)")
    y_arr, p_arr = _labels_array(y), _labels_array(p)
    metrics: dict[str, float | None] = {
        "accuracy": float(accuracy_score(y_arr, p_arr)),
        "roc_auc": None,
        "ece": None,
    }
    if probabilities is None:
        return metrics
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != len(y):
        return metrics
    correct = y_arr == p_arr
    metrics["ece"] = expected_calibration_error(correct, proba.max(axis=1))
    if classes is not None and len(classes) == proba.shape[1]:
        metrics["roc_auc"] = _roc_auc(y, proba, [label_key(c) for c in classes])
    return metrics


def _labels_array(labels: list[Any]) -> NDArray[Any]:
    # One dtype for sklearn: a mix of ints and strings compares as strings.
    if all(isinstance(v, int) for v in labels):
        return np.asarray(labels, dtype=np.int64)
    return np.asarray([str(v) for v in labels], dtype=object)


def _roc_auc(y: list[Any], proba: NDArray[Any], classes: list[Any]) -> float | None:
    present = set(y)
    if len(present) < 2 or not present <= set(classes):
        return None
    if len(classes) == 2:
        positive = [1 if v == classes[1] else 0 for v in y]
        return float(roc_auc_score(positive, proba[:, 1]))
    # Classes of the model that the window lacks are dropped; the rest renormalised,
    # as roc_auc_score(multi_class="ovr") needs rows that sum to 1 over its labels.
    keep = [i for i, c in enumerate(classes) if c in present]
    if len(keep) == 2:
        positive = [1 if v == classes[keep[1]] else 0 for v in y]
        return float(roc_auc_score(positive, proba[:, keep[1]]))
    sub = proba[:, keep]
    sums = sub.sum(axis=1, keepdims=True)
    sub = np.divide(sub, sums, out=np.full_like(sub, 1.0 / len(keep)), where=sums > 0)
    index = {classes[i]: j for j, i in enumerate(keep)}
    return float(
        roc_auc_score(
            [index[v] for v in y],
            sub,
            multi_class="ovr",
            average="macro",
            labels=list(range(len(keep))),
        )
    )


def regression_metrics(actual: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """MAE and RMSE of labelled regressor rows. Raises ValueError on empty or mismatched
    inputs."""
    y = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if y.size == 0 or y.shape != p.shape:
        raise ValueError("regression metrics need as many predictions as labels (>0)")
    return {
        "mae": float(mean_absolute_error(y, p)),
        "rmse": float(root_mean_squared_error(y, p)),
    }


def label_delay_summary(delays_s: Sequence[float]) -> dict[str, float | None]:
    """Median, 95th percentile and mean of the seconds from prediction to label (None
    each when no row is labelled). Negative delays (clock skew) count as 0."""
    if len(delays_s) == 0:
        return {"p50": None, "p95": None, "mean": None}
    values = np.clip(np.asarray(delays_s, dtype=np.float64), 0.0, None)
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(values.mean())}


@dataclass(frozen=True)
class Comparison:
    """One metric of the window against its holdout value."""

    metric: str
    current: float
    holdout: float
    change: float  # current - holdout (scores); (current - holdout) / holdout (errors)
    limit: float
    degraded: bool


@dataclass(frozen=True)
class Verdict:
    degraded: bool
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def degraded_metrics(self) -> list[str]:
        return [c.metric for c in self.comparisons if c.degraded]


def performance_verdict(
    current: Mapping[str, float | None],
    holdout: Mapping[str, Any],
    *,
    max_drop: float,
    max_error_increase: float,
) -> Verdict:
    """Compare the window's metrics with the version's holdout metrics.

    A score (accuracy, ROC AUC) is degraded when it is more than ``max_drop`` below the
    holdout value (absolute: 0.05 is five points of accuracy); an error (MAE, RMSE)
    when it is more than ``max_error_increase`` above it, relative to it (0.2: 20 %
    larger). A metric missing on either side is not compared. Raises ValueError for a
    negative threshold.
    """
    if max_drop < 0 or max_error_increase < 0:
        raise ValueError("performance thresholds must not be negative")
    comparisons: list[Comparison] = []
    for metric in (*SCORES, *ERRORS):
        now, then = current.get(metric), _finite(holdout.get(metric))
        if now is None or then is None or not math.isfinite(now):
            continue
        if metric in SCORES:
            change = now - then
            degraded = -change > max_drop
            limit = max_drop
        else:
            change = (now - then) / then if then > 0 else (math.inf if now > 0 else 0.0)
            degraded = change > max_error_increase
            limit = max_error_increase
        comparisons.append(
            Comparison(
                metric=metric,
                current=float(now),
                holdout=then,
                change=float(change),
                limit=limit,
                degraded=bool(degraded),
            )
        )
    return Verdict(degraded=any(c.degraded for c in comparisons), comparisons=comparisons)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
