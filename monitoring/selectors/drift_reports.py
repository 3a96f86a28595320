"""Drift reads: reports, and the logged feature rows a drift check or a retraining needs."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import QuerySet

from models_registry.models import ModelVersion
from monitoring.models import DriftReport, DriftStatus, PredictionLog


def drift_reports_list(
    *, model_name: str, version: str | None = None, limit: int = 20
) -> QuerySet[DriftReport]:
    """The newest ``limit`` reports of ``model_name`` (optionally one version), newest first."""
    reports = DriftReport.objects.select_related("model_version", "model_version__model").filter(
        model_version__model__name=model_name
    )
    if version is not None:
        reports = reports.filter(model_version__version=version)
    return reports.order_by("-created_at", "-id")[:limit]


def drift_report_previous_verdict(
    *, report: DriftReport, duplicates: bool = False
) -> DriftReport | None:
    """The version's last report before ``report`` that reached a verdict (ok or drift;
    with ``duplicates``, a window reported as dominated by duplicates counts too)."""
    statuses = [DriftStatus.OK, DriftStatus.DRIFT]
    if duplicates:
        statuses.append(DriftStatus.DUPLICATES)
    return (
        DriftReport.objects.filter(
            model_version_id=report.model_version_id,
            status__in=statuses,
            id__lt=report.id,
        )
        .order_by("-id")
        .first()
    )


def production_version_ids(*, model_name: str | None = None) -> list[int]:
    """Ids of every production version (one per model at most), by model name."""
    versions = ModelVersion.objects.filter(stage="production")
    if model_name is not None:
        versions = versions.filter(model__name=model_name)
    return list(versions.order_by("model__name").values_list("id", flat=True))


def drift_event(report: DriftReport) -> dict[str, Any]:
    """The report as a JSON-ready event (Kafka, webhook payload, dashboards)."""
    version = report.model_version
    return {
        "type": "drift",
        "report_id": report.id,
        "model": version.model.name,
        "version": version.version,
        "status": report.status,
        "window_start": report.window_start.isoformat(),
        "window_end": report.window_end.isoformat(),
        "rows": report.rows,
        "reference_rows": report.reference_rows,
        "alpha": report.alpha,
        "correction": report.correction,
        "drifted_features": sorted(n for n, f in report.features.items() if f.get("drift"))
        if report.status == DriftStatus.DRIFT
        else [],
        "features": report.features,
        "duplicate_share": report.duplicate_share,
        "drifted_outputs": sorted(n for n, f in report.predictions.items() if f.get("drift")),
        "predictions": report.predictions,
    }


def production_version_get(*, version_id: int) -> ModelVersion | None:
    """The version (with its model) if it still exists and is in production, else None."""
    return (
        ModelVersion.objects.select_related("model")
        .filter(pk=version_id, stage="production")
        .first()
    )


def drift_report_get(*, report_id: int) -> DriftReport:
    """The report with its version and model. Raises DriftReport.DoesNotExist."""
    return DriftReport.objects.select_related("model_version__model").get(pk=report_id)


def label_coverage(*, model_name: str, since: datetime) -> tuple[int, int]:
    """(labelled rows, all rows) logged for ``model_name`` (any version) since ``since``."""
    rows = PredictionLog.objects.filter(model_name=model_name, created_at__gte=since)
    return rows.exclude(actual__isnull=True).count(), rows.count()


def labelled_rows_load(
    *,
    model_name: str,
    since: datetime,
    feature_names: Sequence[str],
    limit: int,
    text_features: Collection[str] = (),
) -> tuple[np.ndarray, list[Any]]:
    """The newest ``limit`` logged rows of ``model_name`` (any version) since ``since``
    that have ground truth: (features rows x features, labels). Rows whose label is not a
    single value, or that miss a feature, are left out. With ``text_features`` the
    matrix is an object array holding those features' texts (``features_table``)."""
    logged = (
        PredictionLog.objects.filter(model_name=model_name, created_at__gte=since)
        .exclude(actual__isnull=True)
        .order_by("-created_at")
        .values_list("features", "actual")[:limit]
    )
    pairs = [(f, a) for f, a in logged if a is not None and not isinstance(a, list | dict)]
    matrix, complete = features_table([f for f, _ in pairs], feature_names, text_features)
    labels = [a for (_, a), keep in zip(pairs, complete, strict=True) if keep]
    return matrix[complete], labels


def features_table(
    rows: Sequence[Any], feature_names: Sequence[str], text_features: Collection[str] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Logged feature payloads as a table, and which rows have every feature.

    Numbers only: float64 (``features_matrix``). With ``text_features``: an object array,
    the texts as logged (str) in their columns and floats elsewhere; a row whose text
    is missing or not a string is incomplete.
    """
    names = list(feature_names)
    numeric = features_matrix(rows, names)
    if not text_features:
        complete = ~np.isnan(numeric).any(axis=1) if numeric.size else np.ones(len(rows), bool)
        return numeric, complete
    table = numeric.astype(object)
    complete = np.ones(len(rows), dtype=bool)
    for j, name in enumerate(names):
        if name in text_features:
            texts = [_row_values(row, names)[j] for row in rows]
            table[:, j] = texts
            complete &= np.array([isinstance(t, str) for t in texts], dtype=bool)
        else:
            complete &= ~np.isnan(numeric[:, j])
    return table, complete


def window_rows_load(
    *, model_name: str, version: str, start: datetime, end: datetime, limit: int
) -> tuple[list[Any], list[int | None], int]:
    """The logged feature payloads of one version in [start, end), newest ``limit``
    rows; the API key id that made each of those rows; and the window's total row count."""
    rows = PredictionLog.objects.filter(
        model_name=model_name, version=version, created_at__gte=start, created_at__lt=end
    )
    total = rows.count()
    newest = list(rows.order_by("-created_at").values_list("features", "api_key_id")[:limit])
    return [f for f, _ in newest], [key for _, key in newest], total


def feature_texts(rows: Sequence[Any], feature_names: Sequence[str], name: str) -> list[str | None]:
    """One text feature's value in each logged payload; None where it is missing or
    not a string."""
    names = list(feature_names)
    values = [_row_values(row, names)[names.index(name)] for row in rows]
    return [v if isinstance(v, str) else None for v in values]


def window_predictions_load(
    *, model_name: str, version: str, start: datetime, end: datetime, limit: int
) -> tuple[list[Any], list[float]]:
    """The predictions logged in [start, end) (newest ``limit`` rows) and the
    confidences among them (rows without one are left out of that list)."""
    rows = (
        PredictionLog.objects.filter(
            model_name=model_name, version=version, created_at__gte=start, created_at__lt=end
        )
        .order_by("-created_at")
        .values_list("prediction", "confidence")[:limit]
    )
    predictions: list[Any] = []
    confidences: list[float] = []
    for prediction, confidence in rows:
        if isinstance(prediction, list) and len(prediction) == 1:
            prediction = prediction[0]
        if prediction is not None and not isinstance(prediction, list | dict):
            predictions.append(prediction)
        if confidence is not None:
            confidences.append(float(confidence))
    return predictions, confidences


def features_matrix(rows: Iterable[Any], feature_names: Sequence[str]) -> np.ndarray:
    """Logged feature payloads (a name -> value dict, or a list in feature order) as floats."""
    names = list(feature_names)
    table = [_row_values(row, names) for row in rows]
    if not table:
        return np.empty((0, len(names)), dtype=np.float64)
    try:
        # None becomes NaN here; anything that is not a number makes it raise.
        matrix = np.array(table, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.array([[_number(v) for v in row] for row in table], dtype=np.float64)
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix


def _row_values(row: Any, names: list[str]) -> list[Any]:
    if isinstance(row, dict):
        return [row.get(name) for name in names]
    if isinstance(row, list) and len(row) == len(names):
        return row
    return [None] * len(names)


def _number(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan if value is None else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan
