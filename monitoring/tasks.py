"""Celery tasks of the monitoring app: drift and performance checks, retraining, alert
webhooks.

Tasks take ids, re-fetch, and call one service. ``check_drift`` is the beat entry
(schedule in django-celery-beat, editable in admin); it fans out one
``check_drift_version`` per production version; the service holds a lock per version
(in the database: ``monitoring.services.locks``) so two workers, or a beat tick and
``manage.py check_drift`` in another process, never test the same version at once.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import OperationalError

from monitoring.exceptions import WebhookDeliveryFailed
from monitoring.selectors.drift_reports import production_version_ids
from monitoring.services.alerts import alert_webhook_deliver
from monitoring.services.drift_reports import drift_check_version
from monitoring.services.retraining import retraining_job_run
from phoenix.exceptions import DependencyUnavailable

# Worth another try later: the database or a dependency was briefly unreachable.
TRANSIENT_ERRORS = (OperationalError, DependencyUnavailable, ConnectionError, TimeoutError)
# A fanned-out check still queued after this long is dropped: the next tick replaces it.
DRIFT_CHECK_EXPIRES_S = 4 * 60


@shared_task(name="monitoring.tasks.check_drift", acks_late=True, ignore_result=True)
def check_drift(window_s: int | None = None, model_name: str | None = None) -> int:
    """Beat entry: queue one check per production version; returns how many."""
    ids = production_version_ids(model_name=model_name)
    for version_id in ids:
        check_drift_version.apply_async(
            args=(version_id,), kwargs={"window_s": window_s}, expires=DRIFT_CHECK_EXPIRES_S
        )
    return len(ids)


@shared_task(
    name="monitoring.tasks.check_drift_version",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=3,
)
def check_drift_version(version_id: int, window_s: int | None = None) -> dict[str, Any]:
    """Check one version now (``drift_check_version``); returns ``{"status", "report_id"}``."""
    return drift_check_version(version_id=version_id, window_s=window_s)


@shared_task(
    name="monitoring.tasks.retrain_model",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def retrain_model(job_id: int) -> str | None:
    """Run one retraining job; returns its final status (None when the job is gone)."""
    job = retraining_job_run(job_id=job_id)
    return job.status if job is not None else None


@shared_task(
    name="monitoring.tasks.deliver_alert_webhook",
    acks_late=True,
    autoretry_for=(WebhookDeliveryFailed,),
    retry_backoff=2,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
)
def deliver_alert_webhook(alert_id: int) -> bool:
    """POST one alert to the configured webhook, retried with backoff while it is down."""
    return alert_webhook_deliver(alert_id=alert_id)


# A look still queued after this long is dropped: the next tick (every 30 s) replaces it.
EXPERIMENT_EVALUATE_EXPIRES_S = 25


@shared_task(name="monitoring.tasks.evaluate_experiments", acks_late=True, ignore_result=True)
def evaluate_experiments() -> int:
    """Beat entry: queue one evaluation per running experiment; returns how many."""
    from monitoring.services.experiments import running_experiment_ids

    ids = running_experiment_ids()
    for experiment_id in ids:
        evaluate_experiment.apply_async(
            args=(experiment_id,), expires=EXPERIMENT_EVALUATE_EXPIRES_S
        )
    return len(ids)


@shared_task(
    name="monitoring.tasks.evaluate_experiment",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=2,
    soft_time_limit=60,
)
def evaluate_experiment(experiment_id: int) -> str:
    """One look at one experiment (row-locked, so concurrent looks serialize); returns
    the action taken (``continue`` for one no longer running)."""
    from monitoring.services.experiments import ExperimentNotFound, experiment_evaluate

    try:
        return str(experiment_evaluate(experiment_id=experiment_id).decision.action)
    except ExperimentNotFound:
        return "gone"


@shared_task(name="monitoring.tasks.purge_predictions", acks_late=True, ignore_result=True)
def purge_predictions() -> int:
    """Beat entry (daily): delete prediction rows older than
    PHOENIX_PREDICTION_RETENTION (unset: keep everything); returns how many."""
    from monitoring.services.retention import predictions_purge_by_policy

    return predictions_purge_by_policy()


# A fanned-out performance check still queued after this long is dropped.
PERFORMANCE_CHECK_EXPIRES_S = 4 * 60


@shared_task(name="monitoring.tasks.check_performance", acks_late=True, ignore_result=True)
def check_performance(window_s: int | None = None, model_name: str | None = None) -> int:
    """Beat entry: queue one performance check per served version; returns how many."""
    from monitoring.selectors.performance import performance_version_ids

    ids = performance_version_ids(model_name=model_name)
    for version_id in ids:
        check_performance_version.apply_async(
            args=(version_id,), kwargs={"window_s": window_s}, expires=PERFORMANCE_CHECK_EXPIRES_S
        )
    return len(ids)


@shared_task(
    name="monitoring.tasks.check_performance_version",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=120,
)
def check_performance_version(version_id: int, window_s: int | None = None) -> dict[str, Any]:
    """Check one version's performance from its labels now; returns ``{"status",
    "report_id"}``."""
    from monitoring.services.performance import performance_check_version

    return performance_check_version(version_id=version_id, window_s=window_s)
