"""Live dashboard feed: one metrics snapshot a second per process, and pushed events.

Snapshots are read from the prometheus_client registry that /metrics serves (the
multiprocess collector when ``PROMETHEUS_MULTIPROC_DIR`` is set, as django-prometheus
does), so the dashboard and Prometheus can never disagree about what happened.
A single background task per process samples the registry once a second while at
least one websocket client is connected, and sends the snapshot to a group that
only this process's clients join: with a cross-process channel layer (Redis) every
process still feeds only its own clients, and N clients cost one sample, not N.

Events (drift reports, stage moves, rollbacks) are different: they are pushed the
moment they happen, from any process (web, Celery, consumer), to the groups
``monitoring.dashboard`` and ``monitoring.model.<name>`` through the channel layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from prometheus_client import REGISTRY, CollectorRegistry

from monitoring.live_metrics import (
    HistogramReading,
    bucket_counts,
    counter_increase,
    histogram_delta,
    histogram_merge,
    histogram_quantile,
)
from phoenix.change_bus import Change, ChangeReason

logger = logging.getLogger(__name__)

DASHBOARD_GROUP = "monitoring.dashboard"
MODEL_GROUP_PREFIX = "monitoring.model."
# Channels group names: ASCII letters, digits, '-', '_', '.', shorter than 100.
_GROUP_SAFE = re.compile(r"^[a-zA-Z0-9_.-]{1,80}$")

REQUESTS_METRIC = "phoenix_inference_requests_total"
LATENCY_METRIC = "phoenix_inference_latency_seconds"
CONFIDENCE_METRIC = "phoenix_prediction_confidence"
LOADED_METRIC = "phoenix_model_loaded"
# Event pipeline series (buffer, journal, published/spilled/replayed/consumed, lag).
PIPELINE_PREFIXES = ("phoenix_event", "phoenix_prediction_log", "phoenix_consumer")
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
# Statuses are HTTP codes (inference/metrics.py). The error rate is the server's share
# (5xx): a 4xx is the client's mistake and would page nobody.
ERROR_STATUSES = frozenset({"error", "failed", "exception"})

SNAPSHOT_INTERVAL_S = float(os.environ.get("PHOENIX_DASHBOARD_INTERVAL_S", "1.0"))
# Rates and quantiles cover this many seconds, like rate(...[10s]) in PromQL: one
# second alone holds too few requests for a stable p99.
SNAPSHOT_WINDOW_S = float(os.environ.get("PHOENIX_DASHBOARD_WINDOW_S", "10"))


def model_group(model_name: str) -> str | None:
    """The group of one model's page, or None for a name a group cannot carry."""
    if not _GROUP_SAFE.match(model_name):
        return None
    return MODEL_GROUP_PREFIX + model_name


def metrics_registry() -> CollectorRegistry:
    """The registry /metrics serves: all processes' files in multiprocess mode, else ours."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def series_key(name: str, labels: dict[str, str]) -> str:
    """A series as PromQL writes it: ``name{a="1",b="2"}``."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def pipeline_series_read(registry: CollectorRegistry | None = None) -> list[dict[str, Any]]:
    """The event pipeline's series in this process's registry, for the pipeline page."""
    rows: list[dict[str, Any]] = []
    for family in (registry or metrics_registry()).collect():
        if not family.name.startswith(PIPELINE_PREFIXES):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            rows.append(
                {
                    "key": series_key(sample.name, sample.labels),
                    "name": sample.name,
                    "labels": dict(sample.labels),
                    "value": sample.value,
                    "help": family.documentation,
                    "type": family.type,
                }
            )
    return sorted(rows, key=lambda row: row["key"])


def _is_error(status: str) -> bool:
    return status.startswith("5") or status.lower() in ERROR_STATUSES


class _RawReading:
    """Cumulative values of the dashboard's series at one moment."""

    def __init__(self, at: float) -> None:
        self.at = at
        # (model, version, route, status) -> count
        self.requests: dict[tuple[str, str, str, str], float] = {}
        # (model, version) -> histogram, for latency and confidence
        self.latency: dict[tuple[str, str], HistogramReading] = {}
        self.confidence: dict[tuple[str, str], HistogramReading] = {}
        # (model, version) -> provider
        self.loaded: dict[tuple[str, str], str] = {}
        self.pipeline: dict[str, float] = {}


def _histograms(samples: Iterable[Any], name: str) -> dict[tuple[str, str], HistogramReading]:
    buckets: dict[tuple[str, str], dict[float, float]] = {}
    counts: dict[tuple[str, str], float] = {}
    sums: dict[tuple[str, str], float] = {}
    for sample in samples:
        key = (sample.labels.get("model", ""), sample.labels.get("version", ""))
        if sample.name == f"{name}_bucket":
            # Series split by further labels (route, ...) are summed per model version.
            per_key = buckets.setdefault(key, {})
            le = float(sample.labels["le"])
            per_key[le] = per_key.get(le, 0.0) + sample.value
        elif sample.name == f"{name}_count":
            counts[key] = counts.get(key, 0.0) + sample.value
        elif sample.name == f"{name}_sum":
            sums[key] = sums.get(key, 0.0) + sample.value
    return {
        key: HistogramReading(
            buckets=tuple(sorted(per_key.items())),
            count=counts.get(key, 0.0),
            total=sums.get(key, 0.0),
        )
        for key, per_key in buckets.items()
    }


def _read(registry: CollectorRegistry, at: float) -> _RawReading:
    reading = _RawReading(at)
    latency_samples: list[Any] = []
    confidence_samples: list[Any] = []
    for family in registry.collect():
        for sample in family.samples:
            name = sample.name
            labels = sample.labels
            if name == REQUESTS_METRIC:
                key = (
                    labels.get("model", ""),
                    labels.get("version", ""),
                    labels.get("route", ""),
                    labels.get("status", ""),
                )
                reading.requests[key] = reading.requests.get(key, 0.0) + sample.value
            elif name.startswith(LATENCY_METRIC):
                latency_samples.append(sample)
            elif name.startswith(CONFIDENCE_METRIC):
                confidence_samples.append(sample)
            elif name == LOADED_METRIC:
                if sample.value > 0:
                    key2 = (labels.get("model", ""), labels.get("version", ""))
                    reading.loaded[key2] = labels.get("provider", "")
            elif name.startswith(PIPELINE_PREFIXES) and not name.endswith("_created"):
                reading.pipeline[series_key(name, labels)] = sample.value
    reading.latency = _histograms(latency_samples, LATENCY_METRIC)
    reading.confidence = _histograms(confidence_samples, CONFIDENCE_METRIC)
    return reading


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _latency_ms(histogram: HistogramReading | None) -> dict[str, float | None]:
    if histogram is None:
        return dict.fromkeys(QUANTILES)
    result: dict[str, float | None] = {}
    for label, q in QUANTILES.items():
        seconds = histogram_quantile(q, histogram.buckets) if histogram.count > 0 else None
        result[label] = _round(None if seconds is None else seconds * 1000.0)
    return result


class MetricsSampler:
    """Turns successive registry readings into dashboard snapshots (rates over a window)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        window_s: float = SNAPSHOT_WINDOW_S,
        clock: Any = time.time,
    ) -> None:
        self._registry = registry
        self._window_s = window_s
        self._clock = clock
        self._readings: deque[_RawReading] = deque()

    def sample(self) -> dict[str, Any]:
        """Read the registry now and return the snapshot (JSON-ready)."""
        now = _read(self._registry or metrics_registry(), self._clock())
        # Keep the oldest reading that is still at least a window old as the baseline.
        while len(self._readings) > 1 and now.at - self._readings[1].at >= self._window_s:
            self._readings.popleft()
        baseline = self._readings[0] if self._readings else None
        self._readings.append(now)
        return _snapshot(now, baseline)


def _snapshot(now: _RawReading, before: _RawReading | None) -> dict[str, Any]:
    seconds = (now.at - before.at) if before is not None else 0.0
    names = sorted(
        {k[0] for k in now.requests}
        | {k[0] for k in now.latency}
        | {k[0] for k in now.loaded}
        | {k[0] for k in now.confidence}
    )
    models: dict[str, Any] = {}
    all_requests = all_errors = all_increase = all_error_increase = 0.0
    for name in names:
        versions = sorted(
            {k[1] for k in now.requests if k[0] == name}
            | {k[1] for k in now.latency if k[0] == name}
            | {k[1] for k in now.loaded if k[0] == name}
        )
        per_version: dict[str, Any] = {}
        routes: dict[str, float] = {}
        model_latency: list[HistogramReading] = []
        m_total = m_errors = m_inc = m_err_inc = 0.0
        for version in versions:
            v_total = v_errors = v_inc = v_err_inc = 0.0
            for key, count in now.requests.items():
                if key[0] != name or key[1] != version:
                    continue
                before_count = before.requests.get(key) if before is not None else None
                increase = counter_increase(count, before_count) if before is not None else 0.0
                v_total += count
                v_inc += increase
                routes[key[2] or "default"] = routes.get(key[2] or "default", 0.0) + increase
                if _is_error(key[3]):
                    v_errors += count
                    v_err_inc += increase
            latency_now = now.latency.get((name, version))
            latency_window = None
            if latency_now is not None and before is not None:
                latency_window = histogram_delta(latency_now, before.latency.get((name, version)))
                model_latency.append(latency_window)
            per_version[version or "-"] = {
                "requests_total": v_total,
                "errors_total": v_errors,
                "rps": _round(v_inc / seconds if seconds > 0 else 0.0),
                "error_rate": _round(v_err_inc / v_inc if v_inc > 0 else None, 4),
                "latency_ms": _latency_ms(latency_window),
                "provider": now.loaded.get((name, version)),
            }
            m_total += v_total
            m_errors += v_errors
            m_inc += v_inc
            m_err_inc += v_err_inc
        confidence = histogram_merge([h for k, h in now.confidence.items() if k[0] == name])
        confidence_window = histogram_merge(
            [
                histogram_delta(h, before.confidence.get(k))
                for k, h in now.confidence.items()
                if k[0] == name and before is not None
            ]
        )
        models[name] = {
            "requests_total": m_total,
            "errors_total": m_errors,
            "rps": _round(m_inc / seconds if seconds > 0 else 0.0),
            "error_rate": _round(m_err_inc / m_inc if m_inc > 0 else None, 4),
            "latency_ms": _latency_ms(histogram_merge(model_latency)),
            "routes": {
                route: _round(inc / m_inc if m_inc > 0 else None, 4)
                for route, inc in sorted(routes.items())
            },
            "versions": per_version,
            "providers": sorted({p for (m, _), p in now.loaded.items() if m == name and p}),
            "confidence": None
            if confidence is None
            else {
                # JSON has no Infinity: the +Inf bucket's bound is null.
                "bounds": [le if math.isfinite(le) else None for le, _ in confidence.buckets],
                "counts": bucket_counts(confidence.buckets),
                "window_counts": bucket_counts(confidence_window.buckets)
                if confidence_window is not None
                else None,
            },
        }
        all_requests += m_total
        all_errors += m_errors
        all_increase += m_inc
        all_error_increase += m_err_inc
    return {
        "at": datetime.fromtimestamp(now.at, tz=UTC).isoformat(),
        "ts": now.at,
        "window_s": _round(seconds),
        "totals": {
            "requests_total": all_requests,
            "errors_total": all_errors,
            "rps": _round(all_increase / seconds if seconds > 0 else 0.0),
            "error_rate": _round(all_error_increase / all_increase if all_increase else None, 4),
        },
        "models": models,
        "pipeline": now.pipeline,
    }


def _event_message(kind: str, payload: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The groups an event goes to and the channel-layer message that carries it."""
    event = {"kind": kind, "at": datetime.now(tz=UTC).isoformat(), **payload}
    groups = [DASHBOARD_GROUP]
    model = payload.get("model")
    if isinstance(model, str) and (group := model_group(model)) is not None:
        groups.append(group)
    return groups, {"type": "dashboard.event", "event": event}


# Events of stored rows (drift reports, alerts) already delivered in this process, so
# the database poll below does not show them twice. Bounded: only recent rows matter.
_delivered: deque[tuple[str, int]] = deque(maxlen=1000)


def _row_key(kind: str, payload: dict[str, Any]) -> tuple[str, int] | None:
    row_id = payload.get("report_id", payload.get("alert_id"))
    return (kind, row_id) if isinstance(row_id, int) else None


class StoredEventPoller:
    """Finds drift reports and rollback alerts that other processes stored.

    Only for the in-memory channel layer (the embedded default): there, a push from the
    Celery worker process cannot reach this process's websockets, so the broadcaster
    asks the database once a tick (two indexed queries per process, not per client).
    With Redis the push itself crosses processes and this is not used.
    """

    def __init__(self) -> None:
        self.last_drift_id: int | None = None
        self.last_alert_id: int | None = None

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        from django.db.models import Max

        from monitoring.models import Alert, AlertKind, DriftReport
        from monitoring.services.drift_reports import drift_event

        if self.last_drift_id is None or self.last_alert_id is None:
            # What happened before anyone watched is on the pages already.
            self.last_drift_id = DriftReport.objects.aggregate(m=Max("id"))["m"] or 0
            self.last_alert_id = Alert.objects.aggregate(m=Max("id"))["m"] or 0
            return []
        events: list[tuple[str, dict[str, Any]]] = []
        reports = (
            DriftReport.objects.filter(id__gt=self.last_drift_id)
            .select_related("model_version", "model_version__model")
            .order_by("id")[:50]
        )
        for report in reports:
            self.last_drift_id = report.id
            if ("drift", report.id) not in _delivered:
                payload = drift_event(report)
                for bulky in ("features", "type"):
                    payload.pop(bulky, None)
                events.append(("drift", payload))
        alerts = (
            Alert.objects.filter(id__gt=self.last_alert_id)
            .select_related("model_version", "model_version__model")
            .order_by("id")[:50]
        )
        for alert in alerts:
            self.last_alert_id = alert.id
            if alert.kind != AlertKind.ROLLBACK or ("rollback", alert.id) in _delivered:
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
        for kind, payload in events:
            if (key := _row_key(kind, payload)) is not None:
                _delivered.append(key)
        return events


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
                        await _group_send_all(layer, *_event_message(kind, payload))
                except Exception:
                    logger.exception("dashboard event poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    idle.wait(), max(0.0, self.interval_s - (loop.time() - started))
                )


broadcaster = SnapshotBroadcaster(sampler=MetricsSampler())

# Keeps fire-and-forget sends alive until they finish (the loop holds only weak refs).
_pending: set[asyncio.Task[None]] = set()


async def _group_send_all(
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
        groups, message = _event_message(kind, payload)
        key = _row_key(kind, payload)
        in_memory = isinstance(layer, InMemoryChannelLayer)
        if in_memory and key is not None and key in _delivered:
            return  # this process's poll already showed the stored row
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            # Called from async code (a consumer, an async view): async_to_sync would refuse.
            task = running.create_task(_group_send_all(layer, groups, message))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
            if in_memory and key is not None:
                _delivered.append(key)
        elif in_memory:
            # The in-memory layer's queues belong to the loop its consumers run on;
            # waking them from another loop is not thread-safe, so hand it over.
            loop = broadcaster.loop
            if loop is None or loop.is_closed() or not loop.is_running():
                # No consumer in this process. A stored row (drift report, alert) still
                # reaches the web process's pages through its StoredEventPoller.
                return
            future: Future[None] = asyncio.run_coroutine_threadsafe(
                _group_send_all(layer, groups, message), loop
            )
            future.result(timeout=5)
            if key is not None:
                _delivered.append(key)
        else:
            async_to_sync(_group_send_all)(layer, groups, message)
    except Exception:
        logger.exception("could not push dashboard event %s", kind)


def registry_change_relay(change: Change) -> None:
    """Listener for ``phoenix.change_bus``: stage and alias moves -> dashboards.

    Every process hears every registry change. With a cross-process channel layer
    (Redis) only the process where the change happened pushes, or each event would
    arrive once per process; with the in-memory layer each process can reach only its
    own clients, so each pushes what it hears.
    """
    from models_registry.models import AuditEvent
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
    audit = (
        AuditEvent.objects.filter(model_name=change.model_name)
        .order_by("-created_at", "-id")
        .first()
    )
    if audit is not None:
        payload.update(
            version=audit.version,
            action=audit.action,
            from_value=audit.from_value,
            to_value=audit.to_value,
            actor=audit.actor_name,
        )
    dashboard_event_push(reason, payload)


def metrics_exporter_start(*, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve /metrics on ``port`` from a process with no web server (Celery worker, consumer).

    Serves the same registry as the API's /metrics: every process's files in
    multiprocess mode, else this process's own metrics. Prometheus scrapes it (see
    deploy/prometheus/prometheus.yml: the worker on 9102, the consumer on 9101).
    """
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=metrics_registry())
