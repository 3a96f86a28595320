"""Root URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from phoenix import health

handler404 = "phoenix.exceptions.handler404"
handler500 = "phoenix.exceptions.handler500"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("models_registry.api.urls")),
    path("api/v1/", include("inference.api.urls")),
    path("api/v1/", include("monitoring.api.urls")),
    path("", include("inference.v2_urls")),
    path("", include("django_prometheus.urls")),
    path("", include("monitoring.urls")),
]
