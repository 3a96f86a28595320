"""Dashboard pages."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from monitoring import views

app_name = "monitoring"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.overview, name="overview"),
    path("models/<str:name>/", views.model_detail, name="model-detail"),
    path(
        "models/<str:name>/versions/<str:version>/stage/",
        views.stage_move,
        name="stage-move",
    ),
    path(
        "models/<str:name>/predictions/<int:row_id>/explain/",
        views.prediction_explain,
        name="prediction-explain",
    ),
    path("drift/", views.drift_history, name="drift-history"),
    path("experiments/", views.experiments, name="experiments"),
    path(
        "experiments/<int:pk>/<str:action>/",
        views.experiment_action,
        name="experiment-action",
    ),
    path("pipeline/", views.pipeline, name="pipeline"),
]
