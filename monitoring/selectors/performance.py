"""Performance reads: the labelled rows of a window, which versions to check, the reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from models_registry.models import ModelVersion
from monitoring.models import PerformanceReport, PerformanceStatus, PredictionLog


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
