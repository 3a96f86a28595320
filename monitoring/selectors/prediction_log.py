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


def prediction_log_recent(*, model_name: str, limit: int = 20) -> list[PredictionLog]:
    """The newest ``limit`` logged rows of ``model_name`` (any version), newest first:
    what the model page offers to explain."""
    return list(
        PredictionLog.objects.filter(model_name=model_name)
        .only(
            "id",
            "request_id",
            "row_index",
            "model_name",
            "version",
            "routed_by",
            "prediction",
            "confidence",
            "actual",
            "created_at",
        )
        .order_by("-created_at", "-id")[:limit]
    )
