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
(relative) above it (MAE, RMSE), and the window's labels show it beyond chance: a
one-sided test at ``alpha`` that the metric is past that limit (exact binomial for
accuracy, Hanley-McNeil's standard error for a binary ROC AUC, one-sample t-tests on
the absolute and squared errors for MAE and RMSE). Without the test, with a hundred
labels, a model exactly at its limit would read below it in 45 % of checks, and one
still at its holdout accuracy of 0.75 would read five points below it in 10 %.
Metrics the holdout does not record are reported but not judged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats
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
# Exactly at a limit is within it: 0.75 - 0.70 is 0.05000000000000004 in floats.
_EPSILON = 1e-9

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
class Evidence:
    """What the window's significance tests need beyond the metrics: per labelled row,
    whether the prediction was right (classifiers), the count of each class of a binary
    ROC AUC, and the errors (regressors). Missing parts leave their tests out."""

    correct: NDArray[Any] | None = None
    auc_positives: int | None = None
    auc_negatives: int | None = None
    errors: NDArray[Any] | None = None  # prediction - actual


def classification_evidence(
    actual: Sequence[Any], predicted: Sequence[Any], *, binary_classes: Sequence[Any] | None
) -> Evidence:
    """Right/wrong per row, and, for a binary model (``binary_classes`` its two labels,
    positive second), how many rows of each class: what ``performance_verdict`` tests."""
    y = [label_key(a) for a in actual]
    p = [label_key(v) for v in predicted]
    correct = np.asarray([a == b for a, b in zip(y, p, strict=True)], dtype=bool)
    if binary_classes is None or len(binary_classes) != 2:
        return Evidence(correct=correct)
    positive = label_key(binary_classes[1])
    positives = sum(1 for v in y if v == positive)
    return Evidence(correct=correct, auc_positives=positives, auc_negatives=len(y) - positives)


def regression_evidence(actual: Sequence[float], predicted: Sequence[float]) -> Evidence:
    return Evidence(
        errors=np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    )


def _p_score_below(metric: str, current: float, limit: float, evidence: Evidence) -> float | None:
    """One-sided p-value of "the true score is at least ``limit``" given the window."""
    if metric == "accuracy" and evidence.correct is not None and evidence.correct.size:
        hits, n = int(evidence.correct.sum()), int(evidence.correct.size)
        if limit <= 0.0:
            return 1.0
        if limit >= 1.0:
            return 0.0 if hits < n else 1.0
        return float(stats.binomtest(hits, n, p=limit, alternative="less").pvalue)
    if metric == "roc_auc" and evidence.auc_positives and evidence.auc_negatives:
        # Hanley & McNeil (1982): the AUC's standard error from the two class sizes,
        # evaluated at the limit (the null hypothesis), then a one-sided z-test.
        a = min(max(limit, 1e-9), 1 - 1e-9)
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        n1, n0 = evidence.auc_positives, evidence.auc_negatives
        variance = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0)
        if variance <= 0:
            return None
        return float(stats.norm.cdf((current - limit) / math.sqrt(variance)))
    return None


def _p_error_above(metric: str, limit: float, evidence: Evidence) -> float | None:
    """One-sided p-value of "the true error is at most ``limit``" given the window."""
    if evidence.errors is None or evidence.errors.size < 2:
        return None
    if metric == "mae":
        samples, bound = np.abs(evidence.errors), limit
    elif metric == "rmse":
        samples, bound = evidence.errors**2, limit**2
    else:
        return None
    if float(np.std(samples)) == 0.0:
        return 0.0 if float(samples[0]) > bound else 1.0
    return float(stats.ttest_1samp(samples, bound, alternative="greater").pvalue)


@dataclass(frozen=True)
class Comparison:
    """One metric of the window against its holdout value."""

    metric: str
    current: float
    holdout: float
    change: float  # current - holdout (scores); (current - holdout) / holdout (errors)
    limit: float
    degraded: bool
    # One-sided p-value that the metric is past its limit only by chance (None: untested).
    p_value: float | None = None


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
    evidence: Evidence | None = None,
    alpha: float = 0.05,
) -> Verdict:
    """Compare the window's metrics with the version's holdout metrics.

    A score (accuracy, ROC AUC) is degraded when it is more than ``max_drop`` below the
    holdout value (absolute: 0.05 is five points of accuracy); an error (MAE, RMSE)
    when it is more than ``max_error_increase`` above it, relative to it (0.2: 20 %
    larger). With ``evidence``, the shortfall must also be significant: the one-sided
    test that the metric is past its limit has a p-value below ``alpha`` (a metric with
    no test, such as a multiclass ROC AUC, is judged by its value). A metric missing on
    either side is not compared. Raises ValueError for a negative threshold or an alpha
    outside (0, 1).
    """
    if max_drop < 0 or max_error_increase < 0:
        raise ValueError("performance thresholds must not be negative")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    comparisons: list[Comparison] = []
    for metric in (*SCORES, *ERRORS):
        now, then = current.get(metric), _finite(holdout.get(metric))
        if now is None or then is None or not math.isfinite(now):
            continue
        p_value: float | None = None
        if metric in SCORES:
            change = now - then
            degraded = -change > max_drop + _EPSILON
            limit = max_drop
            if evidence is not None:
                p_value = _p_score_below(metric, now, then - max_drop, evidence)
        else:
            change = (now - then) / then if then > 0 else (math.inf if now > 0 else 0.0)
            degraded = change > max_error_increase + _EPSILON
            limit = max_error_increase
            if evidence is not None:
                p_value = _p_error_above(metric, then * (1 + max_error_increase), evidence)
        if p_value is not None:
            degraded = degraded and p_value < alpha
        comparisons.append(
            Comparison(
                metric=metric,
                current=float(now),
                holdout=then,
                change=float(change),
                limit=limit,
                degraded=bool(degraded),
                p_value=p_value,
            )
        )
    return Verdict(degraded=any(c.degraded for c in comparisons), comparisons=comparisons)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
