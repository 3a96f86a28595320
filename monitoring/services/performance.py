"""Performance checks: a window of labelled predictions against the version's holdout.

``performance_report_compute`` saves one ``PerformanceReport`` per version and window
(the metrics of its task, the labelled share, the label delay) and exports it as
metrics; ``performance_report_act`` does what a degradation calls for (log line, alert
once per episode, a retraining request for a production version, dashboard push).
``performance_check_version`` is both under a per-version lock: what the Celery task
and ``manage.py check_performance`` run.

The task (classifier or regressor) comes from the version itself: a ``task`` tag or
ONNX metadata entry when one is set, else its output signature
(``monitoring.performance.task_detect``). The holdout metrics are the version's
``metrics`` in the registry, as ``train_demo_models`` and retraining recipes record
them (``accuracy``, ``roc_auc``; ``mae``, ``rmse``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from prometheus_client import Gauge

from models_registry.models import ModelVersion
from monitoring import performance
from monitoring.models import AlertKind, PerformanceReport, PerformanceStatus
from monitoring.selectors.performance import (
    LabelledWindow,
    performance_event,
    performance_report_previous_verdict,
    performance_version_get,
    performance_window_load,
    version_class_labels,
    version_task,
)
from monitoring.services.alerts import alert_create
from monitoring.services.dashboard_push import dashboard_event_push
from monitoring.services.locks import work_lock
from monitoring.services.retraining import retraining_job_request

logger = logging.getLogger("phoenix.performance")

PERFORMANCE_LOCK_TTL_S = 15 * 60

# Labels bounded by construction: model and version are registry rows, metric is one of
# monitoring.performance.METRICS_BY_TASK's names (five in all).
PERFORMANCE_METRIC = Gauge(
    "phoenix_performance_metric",
    "Latest performance of this model version from ground truth (accuracy, roc_auc, ece, "
    "mae, rmse).",
    ["model", "version", "metric"],
    multiprocess_mode="mostrecent",
)
PERFORMANCE_DEGRADED = Gauge(
    "phoenix_performance_degraded",
    "1 when the latest performance check of this model version found it degraded "
    "against its holdout metrics, else 0.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
PERFORMANCE_LABELLED_SHARE = Gauge(
    "phoenix_performance_labelled_share",
    "Share of the window's predictions of this model version that have ground truth.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
PERFORMANCE_LABEL_DELAY = Gauge(
    "phoenix_performance_label_delay_seconds",
    "Seconds from prediction to label in the latest window (quantile 0.5 or 0.95).",
    ["model", "version", "quantile"],
    multiprocess_mode="mostrecent",
)


def _class_order(
    version: ModelVersion, window: LabelledWindow, columns: int
) -> Sequence[Any] | None:
    """The graph's labels; else, when the labels seen number the columns, them sorted
    (scikit-learn's ``classes_`` order, which skl2onnx keeps)."""
    labels = version_class_labels(version)
    if labels is not None and len(labels) == columns:
        return labels
    seen = {performance.label_key(v) for v in (*window.predictions, *window.actuals)}
    if len(seen) == columns:
        try:
            return sorted(seen)
        except TypeError:
            return None
    return None


Measured = tuple[dict[str, float | None], performance.Evidence]


def _classification(version: ModelVersion, window: LabelledWindow) -> Measured:
    probabilities = window.probabilities
    proba: list[Any] | None = None
    if probabilities and all(isinstance(p, list) and p for p in probabilities):
        widths = {len(p) for p in probabilities}
        proba = probabilities if len(widths) == 1 else None
    classes = _class_order(version, window, len(proba[0])) if proba else None
    metrics = performance.classification_metrics(
        window.actuals, window.predictions, proba, classes=classes
    )
    evidence = performance.classification_evidence(
        window.actuals,
        window.predictions,
        binary_classes=classes if classes is not None and len(classes) == 2 else None,
    )
    return metrics, evidence


def _regression(window: LabelledWindow) -> Measured:
    pairs = [
        (performance.number_or_none(a), performance.number_or_none(p))
        for a, p in zip(window.actuals, window.predictions, strict=True)
    ]
    usable = [(a, p) for a, p in pairs if a is not None and p is not None]
    if not usable:
        return {"mae": None, "rmse": None}, performance.Evidence()
    actual, predicted = [a for a, _ in usable], [p for _, p in usable]
    return (
        dict(performance.regression_metrics(actual, predicted)),
        performance.regression_evidence(actual, predicted),
    )


def performance_report_compute(
    *, version: ModelVersion, window: timedelta, now: datetime | None = None
) -> PerformanceReport:
    """The version's performance on its predictions made in [now - window, now).

    Saves and returns the report: ``insufficient_data`` (metrics when there are any
    labels, no verdict) below PHOENIX_PERFORMANCE_MIN_LABELS labelled rows, else ``ok``
    or ``degraded`` from ``monitoring.performance.performance_verdict`` against the
    version's registry metrics, a drop counting when it is significant at
    PHOENIX_PERFORMANCE_ALPHA.
    """
    end = now or timezone.now()
    start = end - window
    task = version_task(version)
    loaded = performance_window_load(
        model_name=version.model.name,
        version=version.version,
        start=start,
        end=end,
        limit=settings.PHOENIX_PERFORMANCE_MAX_ROWS,
    )
    delay = performance.label_delay_summary(loaded.delays_s)
    metrics: dict[str, float | None] = {}
    evidence = performance.Evidence()
    if loaded.actuals:
        metrics, evidence = (
            _classification(version, loaded)
            if task == performance.CLASSIFICATION
            else _regression(loaded)
        )
    holdout = {
        k: v
        for k, v in (version.metrics or {}).items()
        if k in performance.METRICS_BY_TASK[task] and isinstance(v, int | float)
    }
    report = PerformanceReport(
        model_version=version,
        task=task,
        window_start=start,
        window_end=end,
        rows=loaded.rows,
        labelled=loaded.labelled,
        labelled_share=loaded.labelled / loaded.rows if loaded.rows else None,
        label_delay_p50_s=delay["p50"],
        label_delay_p95_s=delay["p95"],
        status=PerformanceStatus.INSUFFICIENT_DATA,
        metrics=metrics,
        holdout=holdout,
    )
    if len(loaded.actuals) >= settings.PHOENIX_PERFORMANCE_MIN_LABELS:
        verdict = performance.performance_verdict(
            metrics,
            holdout,
            max_drop=settings.PHOENIX_PERFORMANCE_MAX_DROP,
            max_error_increase=settings.PHOENIX_PERFORMANCE_MAX_ERROR_INCREASE,
            evidence=evidence,
            alpha=settings.PHOENIX_PERFORMANCE_ALPHA,
        )
        report.status = PerformanceStatus.DEGRADED if verdict.degraded else PerformanceStatus.OK
        report.comparisons = [
            {
                "metric": c.metric,
                "current": c.current,
                "holdout": c.holdout,
                "change": c.change,
                "limit": c.limit,
                "p_value": c.p_value,
                "degraded": c.degraded,
            }
            for c in verdict.comparisons
        ]
    report.save()
    _metrics_export(report)
    logger.info(
        "event=performance_check model=%s version=%s task=%s status=%s rows=%s labelled=%s",
        version.model.name,
        version.version,
        task,
        report.status,
        report.rows,
        report.labelled,
    )
    return report


def performance_report_act(*, report: PerformanceReport) -> None:
    """On degradation: a structured log line, an alert (once per episode: when the
    previous verdict was not degraded) and, for a production version, a retraining
    request (the retraining cooldown applies, as for drift). Otherwise nothing."""
    _dashboard_push(report)
    if report.status != PerformanceStatus.DEGRADED:
        return
    version = report.model_version
    event = performance_event(report)
    worse = ", ".join(
        f"{c['metric']} {c['current']:.3f} vs {c['holdout']:.3f} holdout"
        for c in report.comparisons
        if c.get("degraded")
    )
    logger.warning(
        "event=performance_degraded model=%s version=%s report=%s labelled=%s metrics=%s",
        version.model.name,
        version.version,
        report.id,
        report.labelled,
        ",".join(event["degraded_metrics"]),
        extra={"performance": event},
    )
    previous = performance_report_previous_verdict(report=report)
    if previous is None or previous.status != PerformanceStatus.DEGRADED:
        alert_create(
            kind=AlertKind.PERFORMANCE,
            message=(
                f"Performance of {version.model.name} v{version.version} dropped: {worse} "
                f"({report.labelled} labelled predictions)."
            ),
            model_version=version,
            payload=event,
        )
    if version.stage == "production":
        retraining_job_request(
            model=version.model, now=report.window_end, reason="lost performance"
        )


def performance_check(
    *, version: ModelVersion, window: timedelta, now: datetime | None = None
) -> PerformanceReport:
    """Compute the report and act on it; returns the saved report."""
    report = performance_report_compute(version=version, window=window, now=now)
    performance_report_act(report=report)
    return report


def performance_lock(version_id: int) -> AbstractContextManager[bool]:
    return work_lock(f"monitoring.performance-check:{version_id}", ttl_s=PERFORMANCE_LOCK_TTL_S)


def performance_check_version(*, version_id: int, window_s: int | None = None) -> dict[str, Any]:
    """Check one version now, unless another check holds its lock.

    Returns ``{"status", "report_id"}``: the report's status, ``locked`` when another
    check holds the version's lock, or ``gone`` when the version was deleted meanwhile.
    """
    with performance_lock(version_id) as acquired:
        if not acquired:
            logger.info("performance check of version %s already running; skipped", version_id)
            return {"status": "locked", "report_id": None}
        version = performance_version_get(version_id=version_id)
        if version is None:
            return {"status": "gone", "report_id": None}
        window = timedelta(seconds=window_s or settings.PHOENIX_PERFORMANCE_WINDOW_S)
        report = performance_check(version=version, window=window)
        return {"status": report.status, "report_id": report.id}


def _metrics_export(report: PerformanceReport) -> None:
    model, version = report.model_version.model.name, report.model_version.version
    if report.labelled_share is not None:
        PERFORMANCE_LABELLED_SHARE.labels(model=model, version=version).set(report.labelled_share)
    for quantile, value in (("0.5", report.label_delay_p50_s), ("0.95", report.label_delay_p95_s)):
        if value is not None:
            PERFORMANCE_LABEL_DELAY.labels(model=model, version=version, quantile=quantile).set(
                value
            )
    if report.status == PerformanceStatus.INSUFFICIENT_DATA:
        return
    PERFORMANCE_DEGRADED.labels(model=model, version=version).set(
        1 if report.status == PerformanceStatus.DEGRADED else 0
    )
    for metric in (*performance.SCORES, *performance.CALIBRATION, *performance.ERRORS):
        value = report.metrics.get(metric)
        if isinstance(value, int | float):
            PERFORMANCE_METRIC.labels(model=model, version=version, metric=metric).set(value)


def _dashboard_push(report: PerformanceReport) -> None:
    event = performance_event(report)
    event.pop("holdout", None)
    dashboard_event_push("performance", event)
