"""Online feature store: ``entity_id`` -> feature values, with freshness.

Two backends behind one interface, chosen by ``PHOENIX_FEATURE_STORE``:

* ``redis``: one hash per entity (``phoenix:features:<entity>``) holding each value
  and, beside it, the time it was written (``<name>@ts``). One HMGET reads both, so
  freshness is decided per feature at read time: a value older than the TTL is
  STALE even if Redis still holds it (Redis's own key expiry only reclaims memory).
* ``database``: the ``OnlineFeature`` table, for the embedded default.

A Redis that does not answer raises FeatureStoreUnavailable quickly (short socket
timeouts) and is then not asked again for a few seconds, so an outage costs
requests no latency; the caller falls back to the request's own features.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError

from .exceptions import FeatureStoreUnavailable

KEY_PREFIX = "phoenix:features:"
TS_SUFFIX = "@ts"
# After a failure, Redis is not tried again for this long.
REDIS_RETRY_AFTER_S = 5.0


class FeatureStatus(StrEnum):
    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    STALE = "STALE"


@dataclass(frozen=True)
class FeatureLookup:
    """Values of the PRESENT features and every requested feature's status."""

    values: dict[str, float]
    status: dict[str, FeatureStatus]


class FeatureStore(Protocol):
    backend: str

    def get(self, entity_id: str, names: Iterable[str]) -> FeatureLookup: ...

    def put_many(
        self, rows: Mapping[str, Mapping[str, float]], *, at: float | None = None
    ) -> int: ...


def _lookup(
    names: Iterable[str], found: Mapping[str, tuple[float, float]], ttl_s: float, now: float
) -> FeatureLookup:
    values: dict[str, float] = {}
    status: dict[str, FeatureStatus] = {}
    for name in names:
        hit = found.get(name)
        if hit is None:
            status[name] = FeatureStatus.NOT_FOUND
        elif now - hit[1] > ttl_s:
            status[name] = FeatureStatus.STALE
        else:
            status[name] = FeatureStatus.PRESENT
            values[name] = hit[0]
    return FeatureLookup(values=values, status=status)


class RedisFeatureStore:
    backend = "redis"

    def __init__(self, url: str, *, ttl_s: float) -> None:
        import redis

        self.ttl_s = ttl_s
        self._redis_error = redis.RedisError
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=0.25, socket_timeout=0.5, retry_on_timeout=False
        )
        self._down_until = 0.0

    def _guard(self) -> None:
        if time.monotonic() < self._down_until:
            raise FeatureStoreUnavailable("Redis feature store marked down")

    def _failed(self, exc: Exception) -> FeatureStoreUnavailable:
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S
        return FeatureStoreUnavailable(f"Redis feature store unreachable: {exc}")

    def get(self, entity_id: str, names: Iterable[str]) -> FeatureLookup:
        self._guard()
        wanted = list(names)
        fields = wanted + [n + TS_SUFFIX for n in wanted]
        try:
            raw = self._client.hmget(KEY_PREFIX + entity_id, fields)
        except self._redis_error as exc:
            raise self._failed(exc) from exc
        found: dict[str, tuple[float, float]] = {}
        count = len(wanted)
        for i, name in enumerate(wanted):
            value, stamp = raw[i], raw[count + i]
            if value is not None:
                found[name] = (float(value), float(stamp) if stamp is not None else 0.0)
        return _lookup(wanted, found, self.ttl_s, time.time())

    def put_many(self, rows: Mapping[str, Mapping[str, float]], *, at: float | None = None) -> int:
        stamp = time.time() if at is None else at
        try:
            pipe = self._client.pipeline(transaction=False)
            for entity_id, values in rows.items():
                mapping: dict[str, float] = {}
                for name, value in values.items():
                    mapping[name] = float(value)
                    mapping[name + TS_SUFFIX] = stamp
                key = KEY_PREFIX + entity_id
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                # Memory is reclaimed a while after the values went stale.
                pipe.expire(key, int(self.ttl_s * 2) + 60)
            pipe.execute()
        except self._redis_error as exc:
            raise self._failed(exc) from exc
        return len(rows)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except self._redis_error:
            return False


class DatabaseFeatureStore:
    backend = "database"

    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s

    def get(self, entity_id: str, names: Iterable[str]) -> FeatureLookup:
        from .models import OnlineFeature

        wanted = list(names)
        rows = OnlineFeature.objects.filter(entity_id=entity_id, name__in=wanted).values_list(
            "name", "value", "updated_at"
        )
        try:
            found = {name: (value, updated.timestamp()) for name, value, updated in rows}
        except DatabaseError as exc:
            raise FeatureStoreUnavailable(f"feature table unreadable: {exc}") from exc
        return _lookup(wanted, found, self.ttl_s, time.time())

    def put_many(self, rows: Mapping[str, Mapping[str, float]], *, at: float | None = None) -> int:
        from .models import OnlineFeature

        stamp = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
        objects = [
            OnlineFeature(entity_id=entity_id, name=name, value=float(value), updated_at=stamp)
            for entity_id, values in rows.items()
            for name, value in values.items()
        ]
        try:
            OnlineFeature.objects.bulk_create(
                objects,
                batch_size=1000,
                update_conflicts=True,
                unique_fields=["entity_id", "name"],
                update_fields=["value", "updated_at"],
            )
        except DatabaseError as exc:
            raise FeatureStoreUnavailable(f"feature table not writable: {exc}") from exc
        return len(rows)


_store: FeatureStore | None = None
_store_lock = threading.Lock()


def feature_store() -> FeatureStore:
    """The configured store (built once per process)."""
    global _store
    store = _store
    if store is None:
        with _store_lock:
            if _store is None:
                _store = _build()
            store = _store
    return store


def _build() -> FeatureStore:
    ttl_s = float(settings.PHOENIX_FEATURE_TTL_S)
    if settings.PHOENIX_FEATURE_STORE == "redis":
        url = getattr(settings, "PHOENIX_FEATURE_STORE_URL", "") or settings.REDIS_URL
        if not url:
            raise ValueError(
                "PHOENIX_FEATURE_STORE=redis needs PHOENIX_FEATURE_STORE_URL or REDIS_URL"
            )
        return RedisFeatureStore(url, ttl_s=ttl_s)
    if settings.PHOENIX_FEATURE_STORE == "database":
        return DatabaseFeatureStore(ttl_s=ttl_s)
    raise ValueError(f"Unknown PHOENIX_FEATURE_STORE {settings.PHOENIX_FEATURE_STORE!r}")


def feature_store_reset(**_: Any) -> None:
    """Forget the built store (settings changed; tests)."""
    global _store
    with _store_lock:
        _store = None
