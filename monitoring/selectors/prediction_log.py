"""Prediction log reads."""

from __future__ import annotations

from monitoring.models import PendingFeedback, PredictionLog


def prediction_log_count(*, model_name: str | None = None) -> int:
    rows = PredictionLog.objects.all()
    if model_name is not None:
        rows = rows.filter(model_name=model_name)
    return rows.count()


def pending_feedback_count() -> int:
    return PendingFeedback.objects.count()
