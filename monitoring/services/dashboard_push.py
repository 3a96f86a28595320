"""Events pushed to the dashboards the moment they happen, from any process.

Drift reports, stage moves and rollbacks go to the groups ``monitoring.dashboard`` and
``monitoring.model.<name>`` through the channel layer, from the web process, a Celery
worker or the consumer alike. With the in-memory layer (the embedded default) a push
can reach only this process's consumers, on the event loop they run on; a stored row
(drift report, alert) reaches the other processes' pages through the broadcaster's
database poll (``monitoring.services.live``), which ``_delivered`` keeps from showing
an event twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "monitoring.dashboard"
MODEL_GROUP_PREFIX = "monitoring.model."
# Channels group names: ASCII letters, digits, '-', '_', '.', shorter than 100.
_GROUP_SAFE = re.compile(r"^[a-zA-Z0-9_.-]{1,80}$")


def model_group(model_name: str) -> str | None:
    """The group of one model's page, or None for a name a group cannot carry."""
    if not _GROUP_SAFE.match(model_name):
        return None
    return MODEL_GROUP_PREFIX + model_name


def event_message(kind: str, payload: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The groups an event goes to and the channel-layer message that carries it."""
    event = {"kind": kind, "at": datetime.now(tz=UTC).isoformat(), **payload}
    groups = [DASHBOARD_GROUP]
    model = payload.get("model")
    if isinstance(model, str) and (group := model_group(model)) is not None:
        groups.append(group)
    return groups, {"type": "dashboard.event", "event": event}


# Events of stored rows (drift reports, alerts, experiment moves) already delivered in
# this process, so the database poll does not show them twice. Bounded: recent rows only.
_delivered: deque[tuple[str, int]] = deque(maxlen=1000)


def row_key(kind: str, payload: dict[str, Any]) -> tuple[str, int] | None:
    """What identifies the stored change an event shows: a drift report or alert row,
    or an experiment in one status and canary step."""
    if kind == "experiment":
        row_id = payload.get("experiment")
        kind = f"experiment:{payload.get('status')}:{payload.get('canary_step')}"
    else:
        row_id = payload.get("report_id", payload.get("alert_id"))
    return (kind, row_id) if isinstance(row_id, int) else None


def delivered_remember(key: tuple[str, int]) -> None:
    """Note that this process showed the stored row ``key`` (see ``_delivered``)."""
    _delivered.append(key)


def delivered_already(key: tuple[str, int]) -> bool:
    return key in _delivered


# The event loop this process's dashboard consumers run on (set by the broadcaster when
# the first client joins): pushes from other threads are handed to it.
_consumer_loop: asyncio.AbstractEventLoop | None = None


def consumer_loop_set(loop: asyncio.AbstractEventLoop | None) -> None:
    global _consumer_loop
    _consumer_loop = loop


# Keeps fire-and-forget sends alive until they finish (the loop holds only weak refs).
_pending: set[asyncio.Task[None]] = set()


async def group_send_all(
    layer: BaseChannelLayer, groups: list[str], message: dict[str, Any]
) -> None:
    for group in groups:
        await layer.group_send(group, message)


def dashboard_event_push(kind: str, payload: dict[str, Any]) -> None:
    """Push an event (``drift``, ``stage``, ``rollback``, ...) to every dashboard now.

    Goes to ``monitoring.dashboard`` and, when ``payload["model"]`` names a model, to
    that model's page. Sync, so Celery tasks and services can call it; never raises:
    a dashboard that missed an event is less harm than a failed task.
    """
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        groups, message = event_message(kind, payload)
        key = row_key(kind, payload)
        in_memory = isinstance(layer, InMemoryChannelLayer)
        if in_memory and key is not None and key in _delivered:
            return  # this process's poll already showed the stored row
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            # Called from async code (a consumer, an async view): async_to_sync would refuse.
            task = running.create_task(group_send_all(layer, groups, message))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
            if in_memory and key is not None:
                _delivered.append(key)
        elif in_memory:
            # The in-memory layer's queues belong to the loop its consumers run on;
            # waking them from another loop is not thread-safe, so hand it over.
            loop = _consumer_loop
            if loop is None or loop.is_closed() or not loop.is_running():
                # No consumer in this process. A stored row (drift report, alert) still
                # reaches the web process's pages through its StoredEventPoller.
                return
            future: Future[None] = asyncio.run_coroutine_threadsafe(
                group_send_all(layer, groups, message), loop
            )
            future.result(timeout=5)
            if key is not None:
                _delivered.append(key)
        else:
            async_to_sync(group_send_all)(layer, groups, message)
    except Exception:
        logger.exception("could not push dashboard event %s", kind)
