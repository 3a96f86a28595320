"""Liveness and readiness.

``/healthz`` touches nothing: the process answers, so it is alive. ``/readyz``
says whether *this process* can answer predictions: it runs every registered
component check (database and cache here; apps register their own, such as warm
models and the event bus) and answers 503 only when a check that this process
needs fails: its models are not warm, start-up has not finished, or its event
buffer is full with the journal unwritable.

Dependencies every replica shares (the database, Redis, the Kafka broker) never
make it unready: the service degrades around them (warm plans in memory, the
event journal, features from the request), and behind a load balancer one outage
of a shared dependency would otherwise take every replica out at once. Their
state stays visible: each component is ``ok``, ``degraded`` (serving without it,
or with less: a model fallen back to the CPU) or ``fail``, the answer carries
``"degraded": true`` when any is, and ``phoenix_component_up`` exports the same
per component for alerts.

A shared dependency's check runs on its own thread with a deadline
(``PHOENIX_READINESS_TIMEOUT_S``): a dependency that hangs instead of refusing (a
frozen PostgreSQL, a partitioned Redis) is reported ``degraded`` within the
deadline, so the probe never times out on it. While such a check is still waiting
no second one is started: the probe answers at once with what is known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import Gauge

from phoenix.exceptions import error_body
from phoenix.operator_access import operator_request_allowed

COMPONENT_UP = Gauge(
    "phoenix_component_up",
    "1 while a readiness component is ok, 0.5 degraded, 0 failed (as the last /readyz saw it).",
    ["component"],
    multiprocess_mode="livemin",
)
_LEVEL = {"ok": 1.0, "degraded": 0.5, "fail": 0.0}


@dataclass(frozen=True)
class ComponentStatus:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)
    # Serving, but with less than usual (a dependency down, a model on the CPU fallback).
    degraded: bool = False


CheckResult = ComponentStatus | list[tuple[str, ComponentStatus]]
ComponentCheck = Callable[[], CheckResult]


@dataclass
class _Check:
    run: ComponentCheck
    # False for dependencies every replica shares: their failure degrades, never unreadies.
    required: bool
    # Shared dependencies only: the call still in flight on its thread.
    pending: Future[Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_checks: dict[str, _Check] = {}


def register_check(name: str, check: ComponentCheck, *, required: bool = True) -> None:
    """Add a readiness check; a check may return one status or several named ones.

    ``required=False`` for a shared dependency the service degrades around: when it
    fails, the component is reported ``degraded`` and the process stays ready.
    """
    _checks[name] = _Check(check, required)


def _database() -> ComponentStatus:
    # On the check's own thread: its connection is opened for the check and closed
    # after it, so no idle connection is left behind between probes.
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return ComponentStatus(ok=True, detail={"vendor": connection.vendor})
    finally:
        connection.close()


def _cache() -> ComponentStatus:
    cache.set("phoenix:readyz", "1", timeout=5)
    return ComponentStatus(ok=cache.get("phoenix:readyz") == "1")


register_check("database", _database, required=False)
register_check("cache", _cache, required=False)


def _state(status: ComponentStatus, *, required: bool) -> str:
    if status.ok:
        return "degraded" if status.degraded else "ok"
    return "fail" if required else "degraded"


def readiness_report() -> tuple[bool, dict[str, Any]]:
    """Run every check; returns (this process can serve, {component: {status, latency_ms, ...}}).

    A component's status is ``ok``, ``degraded`` or ``fail``; only ``fail`` (a
    required check failing) makes the process unready.
    """
    components: dict[str, Any] = {}
    for name, check in _checks.items():
        started = time.perf_counter()
        try:
            result = check.run() if check.required else _within_deadline(name, check)
        except Exception as exc:  # a failing dependency is a report, not a 500
            result = ComponentStatus(ok=False, detail={"error": f"{type(exc).__name__}: {exc}"})
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        named = result if isinstance(result, list) else [(name, result)]
        for component, status in named:
            state = _state(status, required=check.required)
            components[component] = {
                **status.detail,
                "status": state,
                "degraded": state == "degraded",
                "latency_ms": latency_ms,
            }
            COMPONENT_UP.labels(component).set(_LEVEL[state])
    return all(c["status"] != "fail" for c in components.values()), components


def _within_deadline(name: str, check: _Check) -> CheckResult:
    """The check's answer from a thread of its own, or a failure once the deadline passes.

    A daemon thread, not a pool: a check hung on a frozen service must not hold up the
    process's exit.
    """
    timeout_s = float(settings.PHOENIX_READINESS_TIMEOUT_S)
    with check.lock:
        if check.pending is not None and not check.pending.done():
            return ComponentStatus(
                ok=False, detail={"error": "no answer yet to the previous check (hung?)"}
            )
        future: Future[CheckResult] = Future()
        check.pending = future

    def run() -> None:
        try:
            future.set_result(check.run())
        except BaseException as exc:  # handed to the caller, which reports it
            future.set_exception(exc)

    threading.Thread(target=run, name=f"readyz-{name}", daemon=True).start()
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        return ComponentStatus(ok=False, detail={"error": f"no answer within {timeout_s:g} s"})


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Status and ``degraded`` for anyone (a load balancer needs no more); the
    per-component detail only for operators (phoenix.operator_access)."""
    ready, components = readiness_report()
    degraded = any(c["degraded"] for c in components.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "degraded": degraded}
    if operator_request_allowed(request):
        body["components"] = components
    return JsonResponse(body, status=200 if ready else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, for operators only (403 in the error shape otherwise)."""
    if not operator_request_allowed(request):
        return JsonResponse(
            error_body(
                "permission_denied",
                "Metrics are for allowed networks (PHOENIX_METRICS_ALLOWED_NETWORKS) "
                "or the metrics token.",
            ),
            status=403,
        )
    response: HttpResponse = ExportToDjangoView(request)
    return response
