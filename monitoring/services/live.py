"""Live dashboard feed: one metrics snapshot a second per process, and stored events.

A single background task per process (``SnapshotBroadcaster``) samples the registry
once a second while at least one websocket client is connected
(``monitoring.live_snapshot``), and sends the snapshot to a group that only this
process's clients join: with a cross-process channel layer (Redis) every process still
feeds only its own clients, and N clients cost one sample, not N. With the in-memory
layer it also polls the database for drift and performance reports, rollbacks and
experiment looks other processes stored. Events pushed as they happen are
``monitoring.services.dashboard_push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer

from monitoring.live_snapshot import SNAPSHOT_INTERVAL_S, MetricsSampler
from monitoring.services.dashboard_push import (
    consumer_loop_set,
    dashboard_event_push,
    delivered_already,
    delivered_remember,
    event_message,
    group_send_all,
    row_key,
)
from phoenix.change_bus import Change, ChangeReason

logger = logging.getLogger(__name__)


class StoredEventPoller:
    """Finds drift and performance reports, rollback alerts and experiment changes that
    other processes stored.

    Only for the in-memory channel layer (the embedded default): there, a push from the
    Celery worker process cannot reach this process's websockets, so the broadcaster
    asks the database once a tick (four small queries per process, not per client).
    With Redis the push itself crosses processes and this is not used.
    """

    def __init__(self) -> None:
        self.last_drift_id: int | None = None
        self.last_alert_id: int | None = None
        self.last_performance_id: int | None = None
        # (status, canary step, last look) of the newest experiments, as last seen.
        self.experiments: dict[int, tuple[Any, ...]] | None = None

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        from django.db.models import Max

        from monitoring.models import Alert, AlertKind, DriftReport, PerformanceReport
        from monitoring.selectors.drift_reports import drift_event
        from monitoring.selectors.performance import performance_event

        if (
            self.last_drift_id is None
            or self.last_alert_id is None
            or self.last_performance_id is None
        ):
            # What happened before anyone watched is on the pages already.
            self.last_drift_id = DriftReport.objects.aggregate(m=Max("id"))["m"] or 0
            self.last_alert_id = Alert.objects.aggregate(m=Max("id"))["m"] or 0
            self.last_performance_id = PerformanceReport.objects.aggregate(m=Max("id"))["m"] or 0
            self.experiments = self._experiment_states()
            return []
        events: list[tuple[str, dict[str, Any]]] = []
        reports = (
            DriftReport.objects.filter(id__gt=self.last_drift_id)
            .select_related("model_version", "model_version__model")
            .order_by("id")[:50]
        )
        for report in reports:
            self.last_drift_id = report.id
            if not delivered_already(("drift", report.id)):
                payload = drift_event(report)
                for bulky in ("features", "type"):
                    payload.pop(bulky, None)
                events.append(("drift", payload))
        performance_reports = (
            PerformanceReport.objects.filter(id__gt=self.last_performance_id)
            .select_related("model_version", "model_version__model")
            .order_by("id")[:50]
        )
        for performance_report in performance_reports:
            self.last_performance_id = performance_report.id
            if not delivered_already(("performance", performance_report.id)):
                payload = performance_event(performance_report)
                for bulky in ("holdout", "type"):
                    payload.pop(bulky, None)
                events.append(("performance", payload))
        alerts = (
            Alert.objects.filter(id__gt=self.last_alert_id)
            .select_related("model_version", "model_version__model")
            .order_by("id")[:50]
        )
        for alert in alerts:
            self.last_alert_id = alert.id
            if alert.kind != AlertKind.ROLLBACK or delivered_already(("rollback", alert.id)):
                continue
            version = alert.model_version
            events.append(
                (
                    "rollback",
                    {
                        "alert_id": alert.id,
                        "model": version.model.name if version else "",
                        "version": version.version if version else "",
                        "message": alert.message,
                    },
                )
            )
        events += self._experiment_changes()
        for kind, payload in events:
            if (key := row_key(kind, payload)) is not None:
                delivered_remember(key)
        return events

    @staticmethod
    def _experiment_states() -> dict[int, tuple[Any, ...]]:
        from monitoring.models import Experiment

        newest = Experiment.objects.order_by("-id").values_list(
            "id", "model__name", "status", "canary_step", "evaluated_at"
        )[:50]
        return {row[0]: row[1:] for row in newest}

    def _experiment_changes(self) -> list[tuple[str, dict[str, Any]]]:
        """Experiments the worker started, looked at, advanced or ended since the last
        tick: an ``experiment`` event for a new status, else ``experiment_look`` (the
        experiments page re-reads its numbers on either)."""
        states, before = self._experiment_states(), self.experiments or {}
        self.experiments = states
        changes: list[tuple[str, dict[str, Any]]] = []
        for experiment_id, state in sorted(states.items()):
            if before.get(experiment_id) == state:
                continue
            model, status, step, _ = state
            payload = {"model": model, "experiment": experiment_id, "status": status}
            previous = before.get(experiment_id)
            if previous is None or previous[1] != status or previous[2] != step:
                changes.append(("experiment", {**payload, "action": status, "canary_step": step}))
            else:
                changes.append(("experiment_look", payload))
        return changes


class SnapshotBroadcaster:
    """The one task per process that samples and broadcasts while clients are connected."""

    def __init__(self, *, sampler: MetricsSampler, interval_s: float = SNAPSHOT_INTERVAL_S):
        self.sampler = sampler
        self.interval_s = interval_s
        # Only this process's clients join it: snapshots describe this process's registry.
        self.group = f"monitoring.snapshot.{uuid.uuid4().hex}"
        self.clients = 0
        self.latest: dict[str, Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self.poller = StoredEventPoller()

    async def client_joined(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            # A new event loop (a restarted server, a test): the old one's clients are gone.
            self.clients = 0
        self.clients += 1
        # A task from a loop that has since closed is dead.
        if self._task is None or self._task.done() or self.loop is not loop:
            self.loop = loop
            consumer_loop_set(loop)
            self._idle = asyncio.Event()
            # Rows stored while nobody watched are on the pages a client just loaded.
            self.poller = StoredEventPoller()
            self._task = loop.create_task(self._run(self._idle), name="dashboard-snapshots")
        elif self._idle is not None:
            self._idle.clear()  # back from zero clients before the task noticed

    async def client_left(self) -> None:
        self.clients = max(0, self.clients - 1)
        if self.clients == 0 and self._idle is not None:
            self._idle.set()  # stop now rather than after the next tick

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self, idle: asyncio.Event) -> None:
        layer = get_channel_layer()
        assert layer is not None
        loop = asyncio.get_running_loop()
        while self.clients > 0:
            started = loop.time()
            try:
                snapshot = await asyncio.to_thread(self.sampler.sample)
                self.latest = snapshot
                await layer.group_send(
                    self.group, {"type": "dashboard.snapshot", "snapshot": snapshot}
                )
            except Exception:
                # A bad tick must not end the feed for every client.
                logger.exception("dashboard snapshot failed")
            if isinstance(layer, InMemoryChannelLayer):
                try:
                    for kind, payload in await database_sync_to_async(self.poller.poll)():
                        await group_send_all(layer, *event_message(kind, payload))
                except Exception:
                    logger.exception("dashboard event poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    idle.wait(), max(0.0, self.interval_s - (loop.time() - started))
                )


broadcaster = SnapshotBroadcaster(sampler=MetricsSampler())


def registry_change_relay(change: Change) -> None:
    """Listener for ``phoenix.change_bus``: stage and alias moves -> dashboards.

    Every process hears every registry change. With a cross-process channel layer
    (Redis) only the process where the change happened pushes, or each event would
    arrive once per process; with the in-memory layer each process can reach only its
    own clients, so each pushes what it hears.
    """
    from models_registry.selectors import audit_events_list
    from phoenix import change_bus

    if not change.model_name:
        return  # a listener resync, not a change
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        if broadcaster.clients == 0:
            return  # nobody in this process is watching
    elif change.origin != change_bus.origin():
        return
    reason = ChangeReason(change.reason).value  # a plain string on the channel layer
    payload: dict[str, Any] = {"model": change.model_name, "reason": reason}
    # The broadcast carries only the model's name; the audit row says what moved and who.
    audit = audit_events_list(model_name=change.model_name).first()
    if audit is not None:
        payload.update(
            version=audit.version,
            action=audit.action,
            from_value=audit.from_value,
            to_value=audit.to_value,
            actor=audit.actor_name,
        )
    dashboard_event_push(reason, payload)
