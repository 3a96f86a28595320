"""Websocket consumers of the live dashboards: authenticate, join groups, forward.

Nothing is computed here. Snapshots come from the per-process broadcaster
(``monitoring.services.live``), events from whoever pushed them
(``monitoring.services.dashboard_push``); a consumer only decides who may listen and
relays what its groups receive.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from monitoring.access import dashboard_access_allowed
from monitoring.services.dashboard_push import DASHBOARD_GROUP, model_group
from monitoring.services.live import broadcaster

# Application close codes (4000-4999): the page stops retrying and asks to sign in.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN_MODEL = 4404


class DashboardConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """``/ws/dashboard/``: every model's snapshot and every event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.joined: list[str] = []

    def event_groups(self) -> list[str] | None:
        """The groups whose events this page shows; None refuses the connection."""
        return [DASHBOARD_GROUP]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept, then close with a code the page understands ("sign in"), instead
            # of a bare handshake refusal that looks like a network error and is retried.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(dashboard_access_allowed)(user):
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN)
            return
        event_groups = self.event_groups()
        if event_groups is None:
            await self.accept()
            await self.close(code=CLOSE_UNKNOWN_MODEL)
            return
        groups = [broadcaster.group, *event_groups]
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined = groups
        await self.accept()
        if broadcaster.latest is not None:
            # The page has numbers at once instead of after the next tick.
            await self.dashboard_snapshot({"snapshot": broadcaster.latest})
        await broadcaster.client_joined()

    async def disconnect(self, code: int) -> None:
        if not self.joined:
            return
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []
        await broadcaster.client_left()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The feed is one-way: whatever a client sends (JSON or not) is ignored, unparsed.
        return

    def select(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        return snapshot

    async def dashboard_snapshot(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "snapshot", "data": self.select(message["snapshot"])})

    async def dashboard_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "data": message["event"]})


class ModelConsumer(DashboardConsumer):
    """``/ws/models/<name>/``: one model's numbers and its events."""

    def event_groups(self) -> list[str] | None:
        # Only this model's group: its events are also sent to the dashboard group,
        # and joining both would deliver each one twice.
        group = model_group(self.model_name)
        return None if group is None else [group]

    @property
    def model_name(self) -> str:
        return str(self.scope["url_route"]["kwargs"]["name"])

    def select(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        models = snapshot.get("models", {})
        mine = {self.model_name: models[self.model_name]} if self.model_name in models else {}
        return {**snapshot, "models": mine}
