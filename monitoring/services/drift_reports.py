"""Drift checks: compare a window of logged features to the version's reference data.

``drift_report_compute`` saves one ``DriftReport`` per check and exports it as metrics;
``drift_report_act`` does what a verdict of drift calls for (log line, Kafka event,
alert with webhook, retraining request, dashboard push). ``drift_check`` is both, the
unit a Celery task or ``manage.py check_drift`` runs.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Gauge

from models_registry.exceptions import InvalidReferenceData
from models_registry.models import ModelVersion
from monitoring import drift
from monitoring.models import AlertKind, DriftReport, DriftStatus
from monitoring.selectors.drift_reports import (
    drift_event,
    drift_report_previous_verdict,
    production_version_get,
    window_features_load,
)
from monitoring.services.alerts import alert_create, drift_event_publish
from monitoring.services.dashboard_push import dashboard_event_push
from monitoring.services.locks import work_lock
from monitoring.services.retraining import retraining_job_request

logger = logging.getLogger("phoenix.drift")

# A check that dies without releasing its lock frees it after this long (the row lock;
# PostgreSQL's advisory lock goes with the dead holder's connection).
DRIFT_LOCK_TTL_S = 15 * 60

# "mostrecent": in multiprocess mode (PROMETHEUS_MULTIPROC_DIR) the Celery worker's last
# value is what /metrics shows, whichever process serves the scrape.
DRIFT_DETECTED = Gauge(
    "phoenix_drift_detected",
    "1 when the latest drift check of this model version found drift, else 0.",
    ["model", "version"],
    multiprocess_mode="mostrecent",
)
DRIFT_PVALUE = Gauge(
    "phoenix_drift_pvalue",
    "Corrected p-value of the latest drift test of this feature (drift below alpha).",
    ["model", "version", "feature"],
    multiprocess_mode="mostrecent",
)


def drift_report_compute(
    *,
    version: ModelVersion,
    window: timedelta,
    now: datetime | None = None,
    alpha: float | None = None,
    correction: str | None = None,
) -> DriftReport:
    """Test the version's logged rows in [now - window, now) against its reference data.

    Saves and returns the report: ``insufficient_data`` (no verdict) when the window has
    fewer than PHOENIX_DRIFT_MIN_ROWS rows or the version has no reference data;
    ``duplicates`` (no verdict either, the features' statistics kept for a look) when at
    least PHOENIX_DRIFT_DUPLICATE_SHARE of the window's rows repeat another row; else
    ``drift`` or ``ok`` from ``monitoring.drift.dataset_drift``. Raises ValueError for
    an alpha or correction ``dataset_drift`` refuses.
    """
    end = now or timezone.now()
    start = end - window
    alpha = settings.PHOENIX_DRIFT_ALPHA if alpha is None else alpha
    method = cast(drift.Correction, correction or settings.PHOENIX_DRIFT_CORRECTION)
    min_rows = settings.PHOENIX_DRIFT_MIN_ROWS
    report = DriftReport(
        model_version=version,
        window_start=start,
        window_end=end,
        rows=0,
        reference_rows=0,
        status=DriftStatus.INSUFFICIENT_DATA,
        alpha=alpha,
        correction=method,
        features={},
    )
    try:
        from models_registry.selectors import reference_data_load

        reference, feature_names = reference_data_load(version=version)
    except InvalidReferenceData as exc:
        logger.info("no drift verdict for %s: %s", version, exc.message)
        report.save()
        return report

    current, keys, total = window_features_load(
        model_name=version.model.name,
        version=version.version,
        start=start,
        end=end,
        feature_names=feature_names,
        limit=settings.PHOENIX_DRIFT_MAX_ROWS,
    )
    report.rows = total
    report.reference_rows = int(reference.shape[0])
    if current.shape[0] >= min_rows:
        result = drift.dataset_drift(
            reference,
            current,
            feature_names=feature_names,
            alpha=alpha,
            correction=method,
            min_rows=min_rows,
        )
        report.status = DriftStatus.DRIFT if result.drift else DriftStatus.OK
        report.features = result.features_as_dict()
        repeats = drift.duplicate_rows(current, keys)
        report.duplicate_share = round(repeats.share, 6)
        report.duplicate_api_key_id = repeats.source
        if repeats.share >= settings.PHOENIX_DRIFT_DUPLICATE_SHARE:
            report.status = DriftStatus.DUPLICATES
    report.save()
    _metrics_export(report)
    logger.info(
        "event=drift_check model=%s version=%s status=%s rows=%s",
        version.model.name,
        version.version,
        report.status,
        report.rows,
    )
    return report


def drift_report_act(*, report: DriftReport) -> None:
    """On drift: a structured log line, a Kafka event, an alert (once per drift episode,
    when the previous verdict was not drift) and a retraining request (the cooldown
    keeps a drifting model from retraining on every check). A window dominated by
    duplicates: a log line and an alert (once per episode) naming the share and the key
    that sent most of them, never retraining. No drift: nothing."""
    _dashboard_push(report)
    if report.status == DriftStatus.DUPLICATES:
        _duplicates_report(report)
        return
    if report.status != DriftStatus.DRIFT:
        return
    version = report.model_version
    drifted = sorted(name for name, f in report.features.items() if f.get("drift"))
    event = drift_event(report)
    # key=value pairs, so the line is machine-readable with any formatter; the same
    # fields ride along as ``extra`` for JSON log handlers.
    logger.warning(
        "event=drift_detected model=%s version=%s report=%s rows=%s correction=%s alpha=%s "
        "features=%s",
        version.model.name,
        version.version,
        report.id,
        report.rows,
        report.correction,
        report.alpha,
        ",".join(drifted),
        extra={"drift": event},
    )
    transaction.on_commit(lambda: drift_event_publish(event))
    previous = drift_report_previous_verdict(report=report)
    if previous is None or previous.status != DriftStatus.DRIFT:
        alert_create(
            kind=AlertKind.DRIFT,
            message=(
                f"Drift in {version.model.name} v{version.version}: {', '.join(drifted)} "
                f"({report.rows} rows, {report.correction} corrected, alpha {report.alpha})."
            ),
            model_version=version,
            payload=event,
        )
    retraining_job_request(model=version.model, drift_report=report, now=report.window_end)


def _duplicates_report(report: DriftReport) -> None:
    version = report.model_version
    share = report.duplicate_share or 0.0
    key = report.duplicate_api_key_id
    source = f", most of them from API key id {key}" if key is not None else ""
    logger.warning(
        "event=drift_duplicates model=%s version=%s report=%s rows=%s duplicate_share=%.3f "
        "api_key_id=%s",
        version.model.name,
        version.version,
        report.id,
        report.rows,
        share,
        key,
    )
    previous = drift_report_previous_verdict(report=report, duplicates=True)
    if previous is not None and previous.status == DriftStatus.DUPLICATES:
        return  # the same episode: alerted already
    alert_create(
        kind=AlertKind.DRIFT,
        message=(
            f"No drift verdict for {version.model.name} v{version.version}: {share:.0%} of "
            f"the window's {report.rows} rows repeat other rows{source}. A flood of identical "
            "requests is not a change in the world; nothing is retrained."
        ),
        model_version=version,
        payload={
            "model": version.model.name,
            "version": version.version,
            "report": report.id,
            "status": report.status,
            "duplicate_share": share,
            "api_key_id": key,
        },
    )


def drift_check(
    *, version: ModelVersion, window: timedelta, now: datetime | None = None
) -> DriftReport:
    """Compute the report and act on it; returns the saved report."""
    report = drift_report_compute(version=version, window=window, now=now)
    drift_report_act(report=report)
    return report


def drift_lock(version_id: int) -> AbstractContextManager[bool]:
    """The per-version lock, in the database so it holds across processes on every
    backend (``work_lock``); yields False when another check holds it."""
    return work_lock(f"monitoring.drift-check:{version_id}", ttl_s=DRIFT_LOCK_TTL_S)


def drift_check_version(*, version_id: int, window_s: int | None = None) -> dict[str, Any]:
    """Check one production version now, unless another check holds its lock.

    Returns ``{"status": ..., "report_id": ...}``: the report's status, ``locked`` when
    another check (any process) holds the version's lock, or ``gone`` when the version
    was deleted or left production meanwhile.
    """
    with drift_lock(version_id) as acquired:
        if not acquired:
            logger.info("drift check of version %s already running; skipped", version_id)
            return {"status": "locked", "report_id": None}
        version = production_version_get(version_id=version_id)
        if version is None:
            return {"status": "gone", "report_id": None}
        window = timedelta(seconds=window_s or settings.PHOENIX_DRIFT_WINDOW_S)
        report = drift_check(version=version, window=window)
        return {"status": report.status, "report_id": report.id}


def _metrics_export(report: DriftReport) -> None:
    if report.status in (DriftStatus.INSUFFICIENT_DATA, DriftStatus.DUPLICATES):
        return  # no verdict: leave the last one shown
    model, version = report.model_version.model.name, report.model_version.version
    DRIFT_DETECTED.labels(model=model, version=version).set(
        1 if report.status == DriftStatus.DRIFT else 0
    )
    for name, feature in report.features.items():
        p = feature.get("p_adjusted")
        if p is not None:
            DRIFT_PVALUE.labels(model=model, version=version, feature=name).set(p)


def _dashboard_push(report: DriftReport) -> None:
    event = drift_event(report)
    event.pop("features")
    dashboard_event_push("drift", event)
