"""REST routes of this app (mounted under /api/v1/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from monitoring.api import experiments
from monitoring.api.drift import ModelDriftReportsView
from monitoring.api.feedback import PredictionFeedbackView

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "predictions/<str:request_id>/feedback",
        PredictionFeedbackView.as_view(),
        name="prediction-feedback",
    ),
    path("models/<str:name>/drift", ModelDriftReportsView.as_view(), name="model-drift"),
    path("experiments", experiments.ExperimentListView.as_view(), name="experiments"),
    path(
        "experiments/<int:experiment_id>",
        experiments.ExperimentDetailView.as_view(),
        name="experiment-detail",
    ),
    *(
        path(
            f"experiments/<int:experiment_id>/{action}", view.as_view(), name=f"experiment-{action}"
        )
        for action, view in (
            ("start", experiments.ExperimentStartView),
            ("evaluate", experiments.ExperimentEvaluateView),
            ("stop", experiments.ExperimentStopView),
            ("rollback", experiments.ExperimentRollbackView),
            ("promote", experiments.ExperimentPromoteView),
        )
    ),
]
