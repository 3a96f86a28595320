"""REST routes of this app (mounted under /api/v1/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from monitoring.api.drift import ModelDriftReportsView
from monitoring.api.feedback import PredictionFeedbackView

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "predictions/<str:request_id>/feedback",
        PredictionFeedbackView.as_view(),
        name="prediction-feedback",
    ),
    path("models/<str:name>/drift", ModelDriftReportsView.as_view(), name="model-drift"),
]
