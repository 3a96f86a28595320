"""Drift checks: compare a window of logged features, and of the version's predictions,
to its reference data and to the predictions it makes on that data.

Inputs: numeric features as they are; a text feature through numbers derived from it
(``drift.text_profiles``: ``<name>.length``, ``.words``, ``.unknown_word_share``).
Outputs (``drift.prediction_drift``): class shares or predicted values, and confidence,
against the version's own predictions on its reference data (scored here, off the
request path, and remembered per model file and reference file). Inputs and outputs are
two families, each corrected across its tests; the report is drift when either is.

``drift_report_compute`` saves one ``DriftReport`` per check and exports it as metrics;
``drift_report_act`` does what a verdict of drift calls for (log line, Kafka event,
alert with webhook, retraining request, dashboard push). ``drift_check`` is both, the
unit a Celery task or ``manage.py check_drift`` runs.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from prometheus_client import Gauge

from inference.prediction.table_scoring import TablePredictions, table_predict
from models_registry.exceptions import InvalidReferenceData
from models_registry.models import ModelVersion
from models_registry.reference_data import text_feature_names
from monitoring import drift
from monitoring.models import AlertKind, DriftReport, DriftStatus
from monitoring.selectors.drift_reports import (
    drift_event,
    drift_report_previous_verdict,
    feature_texts,
    features_matrix,
    production_version_get,
    window_predictions_load,
    window_rows_load,
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
    ``duplicates`` (no verdict either, the statistics kept for a look) when at least
    PHOENIX_DRIFT_DUPLICATE_SHARE of the window's rows repeat another row; else ``drift``
    or ``ok``: drift when ``monitoring.drift.dataset_drift`` finds it in the inputs
    (``features``) or ``prediction_drift`` in the outputs (``predictions``; left empty
    when the reference data cannot be scored). Raises ValueError for an alpha or
    correction ``dataset_drift`` refuses.
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

    rows, keys, total = window_rows_load(
        model_name=version.model.name,
        version=version.version,
        start=start,
        end=end,
        limit=settings.PHOENIX_DRIFT_MAX_ROWS,
    )
    report.rows = total
    report.reference_rows = int(reference.shape[0])
    if len(rows) >= min_rows:
        inputs = _input_drift(version, reference, feature_names, rows, alpha=alpha, method=method)
        report.features = inputs.features_as_dict()
        outputs = _prediction_drift(
            version, reference, feature_names, start=start, end=end, alpha=alpha, method=method
        )
        report.predictions = outputs
        drifted = inputs.drift or any(o.get("drift") for o in outputs.values())
        report.status = DriftStatus.DRIFT if drifted else DriftStatus.OK
        repeats = drift.duplicate_rows(_payload_identities(rows), keys)
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


def _payload_identities(rows: list[Any]) -> list[list[int]]:
    """Each logged payload as a number, the same for equal payloads (texts included):
    what ``drift.duplicate_rows`` compares to count repeats."""
    seen: dict[bytes, int] = {}
    return [
        [seen.setdefault(orjson.dumps(row, option=orjson.OPT_SORT_KEYS), len(seen))] for row in rows
    ]


def _input_drift(
    version: ModelVersion,
    reference: Any,
    feature_names: list[str],
    rows: list[Any],
    *,
    alpha: float,
    method: drift.Correction,
) -> drift.DatasetDrift:
    """The input tests: numeric features as logged, each text feature through its
    derived numbers (a reference sample of its own size), corrected as one family."""
    import numpy as np

    min_rows = settings.PHOENIX_DRIFT_MIN_ROWS
    texts = text_feature_names(version.signature, feature_names)
    numeric = [n for n in feature_names if n not in texts]
    if not texts:
        return drift.dataset_drift(
            reference,
            features_matrix(rows, numeric),
            feature_names=numeric,
            alpha=alpha,
            correction=method,
            min_rows=min_rows,
        )
    parts: list[drift.DatasetDrift] = []
    if numeric:
        columns = [feature_names.index(n) for n in numeric]
        parts.append(
            drift.dataset_drift(
                np.asarray(reference[:, columns], dtype=np.float64),
                features_matrix(rows, numeric),
                feature_names=numeric,
                alpha=alpha,
                correction="none",
                min_rows=min_rows,
            )
        )
    for name in texts:
        column = [str(t) for t in reference[:, feature_names.index(name)]]
        ref_profile, cur_profile = drift.text_profiles(
            column, feature_texts(rows, feature_names, name)
        )
        parts.append(
            drift.dataset_drift(
                ref_profile,
                cur_profile,
                feature_names=drift.text_profile_names(name),
                alpha=alpha,
                correction="none",
                categorical=(),
                min_rows=min_rows,
            )
        )
    return drift.families_combined(parts, alpha=alpha, correction=method)


_reference_predictions: dict[tuple[str, str], TablePredictions] = {}
_reference_predictions_lock = threading.Lock()


def _table_digest(table: Any) -> str:
    import hashlib

    import numpy as np

    array = np.asarray(table)
    digest = hashlib.sha256(str(array.shape).encode())
    if array.dtype == object:
        digest.update("\x00".join(map(str, array.reshape(-1).tolist())).encode())
    else:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def reference_predictions(
    *, version: ModelVersion, reference: Any, feature_names: list[str]
) -> TablePredictions:
    """The version's predictions on its reference data, remembered per (model file,
    reference table); the table is hashed, as a replaced reference may reuse a name."""
    key = (version.sha256, _table_digest(reference))
    with _reference_predictions_lock:
        found = _reference_predictions.get(key)
    if found is not None:
        return found
    with version.file.open("rb") as handle:
        model_bytes = handle.read()
    found = table_predict(model_bytes=model_bytes, feature_names=feature_names, table=reference)
    with _reference_predictions_lock:
        _reference_predictions[key] = found
    return found


def _prediction_drift(
    version: ModelVersion,
    reference: Any,
    feature_names: list[str],
    *,
    start: datetime,
    end: datetime,
    alpha: float,
    method: drift.Correction,
) -> dict[str, dict[str, Any]]:
    """The output tests, as stored on the report; {} (logged) when the reference data
    cannot be scored."""
    try:
        expected = reference_predictions(
            version=version, reference=reference, feature_names=feature_names
        )
    except Exception as exc:  # onnxruntime's errors are untyped; inputs are still tested
        logger.warning("no prediction drift for %s: reference not scored: %s", version, exc)
        return {}
    predictions, confidence = window_predictions_load(
        model_name=version.model.name,
        version=version.version,
        start=start,
        end=end,
        limit=settings.PHOENIX_DRIFT_MAX_ROWS,
    )
    categorical = drift.predictions_categorical(
        expected.predictions, has_probabilities=expected.probabilities is not None
    )
    result = drift.prediction_drift(
        reference_predictions=expected.predictions,
        current_predictions=predictions,
        categorical=categorical,
        reference_confidence=expected.confidence,
        current_confidence=confidence if expected.confidence is not None else None,
        alpha=alpha,
        correction=method,
        min_rows=settings.PHOENIX_DRIFT_MIN_ROWS,
    )
    tested = result.features_as_dict()
    tested[drift.PREDICTION]["kind"] = "class_shares" if categorical else "value"
    if drift.CONFIDENCE in tested:
        tested[drift.CONFIDENCE]["kind"] = "confidence"
    return tested


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
    drifted += [f"output {name}" for name, f in report.predictions.items() if f.get("drift")]
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
    outputs = {f"output:{name}": values for name, values in report.predictions.items()}
    for name, feature in {**report.features, **outputs}.items():
        p = feature.get("p_adjusted")
        if p is not None:
            DRIFT_PVALUE.labels(model=model, version=version, feature=name).set(p)


def _dashboard_push(report: DriftReport) -> None:
    event = drift_event(report)
    event.pop("features")
    event.pop("predictions")
    dashboard_event_push("drift", event)
