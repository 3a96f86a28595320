"""Performance reads: the labelled rows of a window, which versions to check, the reports."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.db.models import Q

from models_registry.models import ModelVersion
from monitoring import performance
from monitoring.models import PerformanceReport, PerformanceStatus, PredictionLog

logger = logging.getLogger("phoenix.performance")


@dataclass(frozen=True)
class LabelledWindow:
    """A window's predictions: how many there were, and the labelled ones among the
    newest ``limit`` (prediction, probabilities, actual, delay in seconds)."""

    rows: int
    labelled: int
    predictions: list[Any]
    probabilities: list[Any]
    actuals: list[Any]
    delays_s: list[float]


def performance_window_load(
    *, model_name: str, version: str, start: datetime, end: datetime, limit: int
) -> LabelledWindow:
    """Predictions of one version made in [start, end): their count, how many have a
    label, and the newest ``limit`` labelled ones."""
    window = PredictionLog.objects.filter(
        model_name=model_name, version=version, created_at__gte=start, created_at__lt=end
    )
    labelled_rows = window.filter(actual__isnull=False, actual_at__isnull=False)
    total = window.count()
    labelled = labelled_rows.count()
    newest = labelled_rows.order_by("-created_at").values_list(
        "prediction", "probabilities", "actual", "created_at", "actual_at"
    )[:limit]
    predictions, probabilities, actuals, delays = [], [], [], []
    for prediction, proba, actual, created_at, actual_at in newest:
        predictions.append(prediction)
        probabilities.append(proba)
        actuals.append(actual)
        delays.append((actual_at - created_at).total_seconds() if actual_at else 0.0)
    return LabelledWindow(
        rows=total,
        labelled=labelled,
        predictions=predictions,
        probabilities=probabilities,
        actuals=actuals,
        delays_s=delays,
    )


def performance_version_ids(*, model_name: str | None = None) -> list[int]:
    """Ids of the versions that are served: in production, or holding the champion or
    challenger alias (a challenger in shadow or canary gets labels too), by model."""
    versions = ModelVersion.objects.filter(
        Q(stage="production") | Q(aliases__isnull=False)
    ).exclude(stage="archived")
    if model_name is not None:
        versions = versions.filter(model__name=model_name)
    return list(versions.order_by("model__name", "version").values_list("id", flat=True).distinct())


def performance_version_get(*, version_id: int) -> ModelVersion | None:
    """The version with its model, or None when it was deleted meanwhile."""
    return ModelVersion.objects.select_related("model").filter(pk=version_id).first()


def performance_report_previous_verdict(*, report: PerformanceReport) -> PerformanceReport | None:
    """The version's last report before ``report`` that reached a verdict."""
    return (
        PerformanceReport.objects.filter(
            model_version_id=report.model_version_id,
            status__in=[PerformanceStatus.OK, PerformanceStatus.DEGRADED],
            id__lt=report.id,
        )
        .order_by("-id")
        .first()
    )


def performance_report_get(*, report_id: int) -> PerformanceReport:
    """The report with its version and model. Raises PerformanceReport.DoesNotExist."""
    return PerformanceReport.objects.select_related("model_version__model").get(pk=report_id)


def performance_reports_series(
    *, version: ModelVersion, limit: int = 200
) -> list[PerformanceReport]:
    """The version's newest ``limit`` reports, oldest first (a chart's points)."""
    newest = PerformanceReport.objects.filter(model_version=version).order_by("-window_end", "-id")[
        :limit
    ]
    return list(reversed(newest))


def performance_event(report: PerformanceReport) -> dict[str, Any]:
    """The report as a JSON-ready event (dashboards, alert payload)."""
    version = report.model_version
    return {
        "type": "performance",
        "report_id": report.id,
        "model": version.model.name,
        "version": version.version,
        "task": report.task,
        "status": report.status,
        "window_start": report.window_start.isoformat(),
        "window_end": report.window_end.isoformat(),
        "rows": report.rows,
        "labelled": report.labelled,
        "labelled_share": report.labelled_share,
        "label_delay_p50_s": report.label_delay_p50_s,
        "label_delay_p95_s": report.label_delay_p95_s,
        "metrics": report.metrics,
        "holdout": report.holdout,
        "degraded_metrics": [c["metric"] for c in report.comparisons if c.get("degraded")],
    }


@dataclass(frozen=True)
class PerformanceSeries:
    """One version's performance over time, as the model page charts it."""

    version: str
    arm: str
    task: str
    metric: str  # the primary metric charted (accuracy or mae)
    holdout: float | None
    latest: PerformanceReport | None
    points: list[dict[str, Any]]

    @property
    def metric_rows(self) -> list[dict[str, Any]]:
        """The latest report's metrics in the task's order, each with its holdout value
        and whether it counted as a drop (None: not compared)."""
        if self.latest is None:
            return []
        compared = {c.get("metric"): c for c in self.latest.comparisons}
        names = performance.METRICS_BY_TASK.get(cast(performance.Task, self.latest.task), ())
        return [
            {
                "metric": name,
                "value": self.latest.metrics.get(name),
                "holdout": compared.get(name, {}).get("holdout"),
                "degraded": compared.get(name, {}).get("degraded"),
            }
            for name in names
            if name in self.latest.metrics
        ]

    def chart_data(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "arm": self.arm,
            "task": self.task,
            "metric": self.metric,
            "holdout": self.holdout,
            "points": self.points,
        }


def performance_point(report: PerformanceReport) -> dict[str, Any]:
    """One chart point: window end (epoch seconds), the metrics, labelled share, status."""
    return {
        "t": report.window_end.timestamp(),
        "status": report.status,
        "labelled": report.labelled,
        "labelled_share": report.labelled_share,
        **{k: v for k, v in report.metrics.items() if isinstance(v, int | float) or v is None},
    }


def performance_series(
    *, versions: list[tuple[str, ModelVersion]], limit: int = 200
) -> list[PerformanceSeries]:
    """Each (arm, version)'s reports over time, oldest first, with the holdout value of
    the charted metric (a version checked under no task yet charts its signature's)."""
    series = []
    for arm, version in versions:
        reports = performance_reports_series(version=version, limit=limit)
        task = reports[-1].task if reports else version_task(version)
        metric = performance.PRIMARY_METRIC[cast(performance.Task, task)]
        holdout = (version.metrics or {}).get(metric)
        series.append(
            PerformanceSeries(
                version=version.version,
                arm=arm,
                task=task,
                metric=metric,
                holdout=float(holdout) if isinstance(holdout, int | float) else None,
                latest=reports[-1] if reports else None,
                points=[performance_point(r) for r in reports],
            )
        )
    return series


_class_labels_cache: dict[str, tuple[Any, ...] | None] = {}
_cache_lock = threading.Lock()


def version_task(version: ModelVersion) -> performance.Task:
    """Classifier or regressor, from the version's tag, ONNX metadata or outputs."""
    metadata = (version.framework or {}).get("metadata_props", {}) or {}
    return performance.task_detect(
        outputs=(version.signature or {}).get("outputs", []),
        declared=[(version.tags or {}).get("task"), metadata.get("task")],
    )


def version_class_labels(version: ModelVersion) -> tuple[Any, ...] | None:
    """The class labels in the order of the model's probability columns, read from the
    classifier node of its ONNX graph (cached per file), or None when none is found."""
    with _cache_lock:
        if version.sha256 in _class_labels_cache:
            return _class_labels_cache[version.sha256]
    labels = _graph_class_labels(version)
    with _cache_lock:
        _class_labels_cache[version.sha256] = labels
    return labels


def _graph_class_labels(version: ModelVersion) -> tuple[Any, ...] | None:
    try:
        import onnx
        from onnx import helper

        model = onnx.load(version.file.path, load_external_data=False)
    except Exception as exc:  # a missing or unreadable file: fall back on the rows
        logger.info("class labels of %s not read: %s", version, exc)
        return None
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("classlabels_ints", "classlabels_int64s", "classlabels_strings"):
                values = helper.get_attribute_value(attribute)
                if values:
                    return tuple(v.decode() if isinstance(v, bytes) else v for v in values)
    return None


def performance_cache_clear() -> None:
    """Forget the class labels read from model files (tests)."""
    with _cache_lock:
        _class_labels_cache.clear()
