"""Open Inference Protocol routes, mounted at the site root (``/v2/...``)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from .api import v2

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2", v2.server_metadata, name="v2-server-metadata"),
    path("v2/health/live", v2.server_live, name="v2-live"),
    path("v2/health/ready", v2.server_ready, name="v2-ready"),
    path("v2/models/<str:name>", v2.model_metadata, name="v2-model-metadata"),
    path("v2/models/<str:name>/ready", v2.model_ready, name="v2-model-ready"),
    path("v2/models/<str:name>/infer", v2.model_infer, name="v2-model-infer"),
    path(
        "v2/models/<str:name>/versions/<str:version>", v2.model_metadata, name="v2-version-metadata"
    ),
    path(
        "v2/models/<str:name>/versions/<str:version>/ready", v2.model_ready, name="v2-version-ready"
    ),
    path(
        "v2/models/<str:name>/versions/<str:version>/infer", v2.model_infer, name="v2-version-infer"
    ),
]
