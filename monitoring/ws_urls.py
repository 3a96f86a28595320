"""Websocket URL routes (under /ws/)."""

from __future__ import annotations

from typing import Any

from django.urls import path

from monitoring import consumers

websocket_urlpatterns: list[Any] = [
    path("ws/dashboard/", consumers.DashboardConsumer.as_asgi()),
    path("ws/models/<str:name>/", consumers.ModelConsumer.as_asgi()),
]
