"""Liveness and readiness.

``/healthz`` touches nothing: the process answers, so it is alive. ``/readyz``
runs every registered component check (database and cache here; apps register
their own, such as warm models and the event bus) and answers 200 only when all
pass, with each component's status and latency so an operator sees what is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse


@dataclass(frozen=True)
class ComponentStatus:
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


ComponentCheck = Callable[[], ComponentStatus | list[tuple[str, ComponentStatus]]]

_checks: dict[str, ComponentCheck] = {}


def register_check(name: str, check: ComponentCheck) -> None:
    """Add a readiness check; a check may return one status or several named ones."""
    _checks[name] = check


def _database() -> ComponentStatus:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return ComponentStatus(ok=True, detail={"vendor": connection.vendor})


def _cache() -> ComponentStatus:
    cache.set("phoenix:readyz", "1", timeout=5)
    return ComponentStatus(ok=cache.get("phoenix:readyz") == "1")


register_check("database", _database)
register_check("cache", _cache)


def readiness_report() -> tuple[bool, dict[str, Any]]:
    """Run every check; returns (all ok, {component: {status, latency_ms, ...}})."""
    components: dict[str, Any] = {}
    for name, check in _checks.items():
        started = time.perf_counter()
        try:
            result = check()
        except Exception as exc:  # a failing dependency is a report, not a 500
            result = ComponentStatus(ok=False, detail={"error": f"{type(exc).__name__}: {exc}"})
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        named = result if isinstance(result, list) else [(name, result)]
        for component, status in named:
            components[component] = {
                "status": "ok" if status.ok else "fail",
                "latency_ms": latency_ms,
                **status.detail,
            }
    return all(c["status"] == "ok" for c in components.values()), components


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    ready, components = readiness_report()
    return JsonResponse(
        {"status": "ready" if ready else "not_ready", "components": components},
        status=200 if ready else 503,
    )
