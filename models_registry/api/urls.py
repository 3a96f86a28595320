"""REST routes of this app (mounted under /api/v1/)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("models", views.ModelListApi.as_view(), name="registry-models"),
    path("models/<str:name>", views.ModelDetailApi.as_view(), name="registry-model"),
    path(
        "models/<str:name>/versions",
        views.ModelVersionCreateApi.as_view(),
        name="registry-version-create",
    ),
    path(
        "models/<str:name>/versions/<str:version>",
        views.ModelVersionDetailApi.as_view(),
        name="registry-version",
    ),
    path(
        "models/<str:name>/versions/<str:version>/stage",
        views.ModelVersionStageApi.as_view(),
        name="registry-version-stage",
    ),
    path(
        "models/<str:name>/aliases/<str:alias>",
        views.ModelAliasSetApi.as_view(),
        name="registry-alias",
    ),
]
