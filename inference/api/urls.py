"""REST routes of this app (mounted under /api/v1/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from .explain import ExplainView
from .views import PredictView

urlpatterns: list[URLPattern | URLResolver] = [
    path("models/<str:name>/predict", PredictView.as_view(), name="inference-predict"),
    path("models/<str:name>/explain", ExplainView.as_view(), name="inference-explain"),
]
