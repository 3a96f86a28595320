"""Retraining: request a job (with a cooldown) and run a model's recipe to make a challenger.

A recipe is a callable named on ``RegisteredModel.retraining_recipe``: a name an app
registered at ``AppConfig.ready`` (``retraining_recipe_register``; the demo registers
its own this way), or else a dotted import path::

    def retrain(*, X: np.ndarray, y: np.ndarray, model_name: str,
                feature_names: list[str]) -> RetrainingResult: ...

It receives the recent logged rows that have ground truth (features in the model's
order, labels as logged) and returns the new ONNX model, its holdout metrics and a
new reference set. The result is registered as a ``staging`` version with alias
``challenger``; nothing here promotes to production: an experiment or a person does.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from models_registry.models import ModelVersion, RegisteredModel
from monitoring.models import Alert, AlertKind, DriftReport, RetrainingJob, RetrainingStatus
from monitoring.selectors.drift_reports import label_coverage, labelled_rows_load
from monitoring.services.alerts import alert_create
from monitoring.services.dashboard_push import dashboard_event_push
from phoenix.task_queue import task_enqueue_on_commit

logger = logging.getLogger(__name__)

# More labelled rows than this add training time, not much signal.
MAX_LABELLED_ROWS = 50_000


@dataclass(frozen=True)
class RetrainingResult:
    """What a recipe returns. ``reference`` is rows x features in the model's feature order."""

    model_bytes: bytes
    metrics: dict[str, float]
    reference: np.ndarray
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""


Recipe = Callable[..., RetrainingResult]

_recipes: dict[str, Recipe | str] = {}


def retraining_recipe_register(name: str, recipe: Recipe | str) -> None:
    """Make ``recipe`` the one ``RegisteredModel.retraining_recipe == name`` runs: a
    callable, or its dotted path, imported the first time the recipe runs (so that
    registering at ``AppConfig.ready`` costs no training library in every process)."""
    _recipes[name] = recipe


def retraining_recipe_get(name: str) -> Recipe:
    """The registered recipe called ``name``, else the callable at that dotted path.

    Raises LookupError when it is neither (the job fails with the reason)."""
    registered = _recipes.get(name)
    if registered is not None and not isinstance(registered, str):
        return registered
    path = registered or name
    try:
        recipe: Recipe = import_string(path)
    except ImportError as exc:
        raise LookupError(
            f"No retraining recipe {name!r}: none is registered by that name, "
            f"and {path!r} is not an importable path ({exc})."
        ) from exc
    if registered is not None:
        _recipes[name] = recipe
    return recipe


def retraining_job_request(
    *,
    model: RegisteredModel,
    drift_report: DriftReport | None = None,
    now: datetime | None = None,
    reason: str = "drifted",
) -> RetrainingJob | None:
    """Start retraining ``model`` unless a job was started within the cooldown.

    Drift and lost performance (``monitoring.services.performance``) both ask; ``reason``
    says which in the manual-retraining alert. Returns the new job (queued; run by a
    Celery task after commit), a ``manual`` job with an alert when the model has no
    recipe, or None during the cooldown, or when there is too little ground truth to
    learn from (``retraining_labels_shortfall``: then an alert says why, once per
    cooldown).
    """
    now = now or timezone.now()
    cooldown = timedelta(seconds=settings.PHOENIX_RETRAINING_COOLDOWN_S)
    with transaction.atomic():
        # Row lock (PostgreSQL): two checks deciding at once cannot both start a job.
        RegisteredModel.objects.select_for_update().filter(pk=model.pk).first()
        if RetrainingJob.objects.filter(model=model, created_at__gte=now - cooldown).exists():
            return None
        shortfall = (
            retraining_labels_shortfall(model_name=model.name, now=now)
            if model.retraining_recipe
            else None  # retraining is a person's job then: the manual alert below
        )
        if shortfall is not None:
            _shortfall_alert(model=model, drift_report=drift_report, shortfall=shortfall, now=now)
            return None
        if not model.retraining_recipe:
            job = RetrainingJob.objects.create(
                model=model,
                drift_report=drift_report,
                status=RetrainingStatus.MANUAL,
                finished_at=now,
            )
            alert_create(
                kind=AlertKind.RETRAINING,
                message=(
                    f"{model.name} {reason} and has no retraining recipe: retraining is manual. "
                    "Set RegisteredModel.retraining_recipe to automate it."
                ),
                model_version=drift_report.model_version if drift_report else None,
                payload={"model": model.name, "job": job.id, "status": job.status},
            )
            return job
        job = RetrainingJob.objects.create(model=model, drift_report=drift_report)
        task_enqueue_on_commit("monitoring.tasks.retrain_model", job.id)
    logger.info("retraining of %s queued as job %s", model.name, job.id)
    return job


def retraining_labels_shortfall(*, model_name: str, now: datetime) -> dict[str, Any] | None:
    """Why the model's recent ground truth is too thin to retrain on, or None when it is
    enough: at least PHOENIX_RETRAINING_MIN_LABELLED_ROWS labelled rows within
    PHOENIX_RETRAINING_LOOKBACK_S, making at least PHOENIX_RETRAINING_MIN_LABEL_COVERAGE
    of the rows logged then. The answer names the reason and the numbers."""
    since = now - timedelta(seconds=settings.PHOENIX_RETRAINING_LOOKBACK_S)
    labelled, logged = label_coverage(model_name=model_name, since=since)
    min_rows = settings.PHOENIX_RETRAINING_MIN_LABELLED_ROWS
    min_coverage = settings.PHOENIX_RETRAINING_MIN_LABEL_COVERAGE
    coverage = labelled / logged if logged else 0.0
    numbers = {
        "labelled_rows": labelled,
        "logged_rows": logged,
        "coverage": round(coverage, 6),
        "min_labelled_rows": min_rows,
        "min_label_coverage": min_coverage,
    }
    if labelled < min_rows:
        return {
            "reason": "too_few_labelled_rows",
            "message": f"{labelled} labelled rows, fewer than the {min_rows} needed",
            **numbers,
        }
    if coverage < min_coverage:
        return {
            "reason": "label_coverage_too_low",
            "message": (
                f"{labelled} of {logged} rows labelled ({coverage:.1%}), under the "
                f"{min_coverage:.1%} needed"
            ),
            **numbers,
        }
    return None


def _shortfall_alert(
    *,
    model: RegisteredModel,
    drift_report: DriftReport | None,
    shortfall: dict[str, Any],
    now: datetime,
) -> None:
    """Say why retraining did not run; once per cooldown and reason, not on every check."""
    cooldown = timedelta(seconds=settings.PHOENIX_RETRAINING_COOLDOWN_S)
    recent = Alert.objects.filter(
        kind=AlertKind.RETRAINING,
        created_at__gte=now - cooldown,
        payload__model=model.name,
        payload__reason=shortfall["reason"],
    )
    logger.warning("retraining of %s not started: %s", model.name, shortfall["message"])
    if recent.exists():
        return
    alert_create(
        kind=AlertKind.RETRAINING,
        message=(
            f"{model.name} drifted but was not retrained: {shortfall['message']} in the "
            f"last {settings.PHOENIX_RETRAINING_LOOKBACK_S // 3600} h. Send more feedback "
            "(ground truth) or retrain by hand."
        ),
        model_version=drift_report.model_version if drift_report else None,
        payload={"model": model.name, "status": "skipped", **shortfall},
    )


def retraining_job_run(*, job_id: int, now: datetime | None = None) -> RetrainingJob | None:
    """Run a queued job: recipe -> ONNX -> registered staging challenger.

    Idempotent: only a ``queued`` job is claimed (conditional UPDATE), so a redelivered
    task does nothing. Returns the job, or None when it no longer exists. A failing
    recipe marks the job failed and raises an alert; it is not retried.
    """
    claimed = RetrainingJob.objects.filter(pk=job_id, status=RetrainingStatus.QUEUED).update(
        status=RetrainingStatus.RUNNING
    )
    job = (
        RetrainingJob.objects.select_related("model", "drift_report__model_version")
        .filter(pk=job_id)
        .first()
    )
    if job is None or not claimed:
        return job
    now = now or timezone.now()
    model = job.model
    try:
        version = _registered(job, now)
    except Exception as exc:
        logger.exception("retraining job %s of %s failed", job.id, model.name)
        job.status = RetrainingStatus.FAILED
        job.error = "".join(traceback.format_exception_only(exc)).strip()[:4000]
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        alert_create(
            kind=AlertKind.RETRAINING,
            message=f"Retraining {model.name} failed: {job.error}",
            model_version=job.drift_report.model_version if job.drift_report else None,
            payload={"model": model.name, "job": job.id, "status": job.status},
        )
        return job
    job.status = RetrainingStatus.SUCCEEDED
    job.new_version = version
    job.metrics = version.metrics
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "new_version", "metrics", "finished_at"])
    alert_create(
        kind=AlertKind.RETRAINING,
        message=(
            f"{model.name} retrained: v{version.version} registered in staging as challenger "
            f"({_metrics_line(version.metrics)}). Promote it after an experiment."
        ),
        model_version=version,
        payload={
            "model": model.name,
            "job": job.id,
            "status": job.status,
            "version": version.version,
            "metrics": version.metrics,
        },
    )
    _dashboard_push(job, version)
    _experiment_autostart(version)
    return job


def _experiment_autostart(version: ModelVersion) -> None:
    """Close the loop where the model's policy allows it (PHOENIX_EXPERIMENT_AUTOSTART):
    the new challenger goes into a shadow experiment. A refusal leaves the challenger
    registered and is logged: retraining itself succeeded."""
    from monitoring.services.experiments import experiment_autostart_for
    from phoenix.exceptions import ApplicationError

    try:
        experiment = experiment_autostart_for(version=version)
    except ApplicationError as exc:
        logger.warning("no experiment started for %s: %s", version, exc)
        return
    if experiment is not None:
        logger.info("experiment %s started for %s", experiment.pk, version)


def _registered(job: RetrainingJob, now: datetime) -> ModelVersion:
    from models_registry.reference_data import text_feature_names
    from models_registry.services import model_version_register

    model = job.model
    recipe = retraining_recipe_get(model.retraining_recipe)
    source = _source_version(job)
    feature_names = list(source.feature_names)
    texts = text_feature_names(source.signature, feature_names)
    since = now - timedelta(seconds=settings.PHOENIX_RETRAINING_LOOKBACK_S)
    X, labels = labelled_rows_load(
        model_name=model.name,
        since=since,
        feature_names=feature_names,
        limit=MAX_LABELLED_ROWS,
        text_features=texts,
    )
    if len(labels) < settings.PHOENIX_RETRAINING_MIN_LABELLED_ROWS:
        # Counted again here: rows that miss a feature or carry a list are not usable.
        raise ValueError(
            f"{len(labels)} usable labelled rows, fewer than the "
            f"{settings.PHOENIX_RETRAINING_MIN_LABELLED_ROWS} needed to retrain"
        )
    logger.info("retraining %s on %d labelled logged rows", model.name, len(labels))
    result = recipe(X=X, y=np.asarray(labels), model_name=model.name, feature_names=feature_names)
    reference = io.BytesIO()
    # Texts are kept as a unicode array: .npy files are read without pickle.
    table = np.asarray(result.reference, dtype=str if texts else np.float64)
    np.save(reference, table, allow_pickle=False)
    reference.seek(0)
    return model_version_register(
        model_name=model.name,
        file=io.BytesIO(result.model_bytes),
        filename="retrained.onnx",
        stage="staging",
        alias="challenger",
        reference=reference,
        reference_filename="reference.npy",
        metrics=result.metrics,
        tags={
            **result.tags,
            "retrained_from": source.version,
            "retraining_job": str(job.id),
            "labelled_rows": str(len(labels)),
        },
        description=result.description
        or f"Retrained by job {job.id}{' after drift' if job.drift_report_id else ''}.",
        actor=None,
    )


def _source_version(job: RetrainingJob) -> ModelVersion:
    """The version that drifted, else the model's production version, else its newest."""
    if job.drift_report is not None:
        return job.drift_report.model_version
    versions = job.model.versions.order_by("-created_at", "-id")
    found = versions.filter(stage="production").first() or versions.first()
    if found is None:
        raise LookupError(f"{job.model.name} has no version to retrain from.")
    return found


def _metrics_line(metrics: dict[str, Any]) -> str:
    # Scores only: row counts are in the metrics too, but are not quality.
    shown = [
        f"{k} {v:.3f}"
        for k, v in metrics.items()
        if isinstance(v, float) and not k.endswith("_rows")
    ]
    return ", ".join(shown) or "no metrics"


def _dashboard_push(job: RetrainingJob, version: ModelVersion) -> None:
    dashboard_event_push(
        "retraining",
        {
            "model": job.model.name,
            "job": job.id,
            "status": job.status,
            "version": version.version,
            "metrics": version.metrics,
        },
    )
