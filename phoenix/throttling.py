"""Request throttles: fixed-window counters kept in process, shared through the cache.

Each request that ASGI edge (phoenix/edge.py) lets in is counted here per client IP and
per credential it presents (an API key or token), and every 401 it answers is counted
per client IP as an authentication failure. Counting is a dictionary increment in this
process; every ``sync_s`` a background thread adds this process's new counts to the
shared cache (Redis in production: one pipelined round trip for all of them, INCRBY with
an expiry; the local-memory cache without it) and reads back the totals every process
has reached. A limit is judged on the last shared total plus this process's counts
since, so the request path never waits on the network and the limits hold across
replicas to within one sync period's traffic. A cache that cannot be reached makes the
counts per process until it answers again (throttling degrades, serving goes on).

Windows are fixed and aligned to the epoch (``int(time / period)``), so every process
agrees on them without talking; ``Retry-After`` is the time to the window's end.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")

# (scope, identity, window index)
CounterKey = tuple[str, str, int]
# (shared cache key, count to add, seconds the key may live) -> {shared key: total}
SharedAdd = Callable[[list[tuple[str, int, int]]], dict[str, int]]


@dataclass(frozen=True)
class Rate:
    limit: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"600/m"``, ``"30/10m"``, ``"5/s"``; empty or ``"0"`` is no limit (None).

        Raises ValueError for anything else, so a typo in a setting fails at start-up.
        """
        if not text.strip() or text.strip() == "0":
            return None
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f"A rate is 'N/s', 'N/m', 'N/h', 'N/d' or 'N/10m'; got {text!r}.")
        limit, count, unit = int(match[1]), int(match[2] or 1), match[3]
        if limit == 0:
            return None
        return cls(limit=limit, period_s=count * _UNITS[unit])


class Throttle:
    """Fixed-window counters for named scopes (``"ip"``, ``"key"``, ``"auth_failures"``).

    ``hit`` is called on the event loop for each request; ``sync`` from the one
    background thread. A scope without a rate is never counted.
    """

    def __init__(
        self,
        rates: dict[str, Rate | None],
        *,
        shared_add: SharedAdd | None = None,
        sync_s: float = 1.0,
        max_tracked: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rates = {scope: rate for scope, rate in rates.items() if rate is not None}
        self.shared_add, self.sync_s, self.max_tracked = shared_add, sync_s, max_tracked
        self.clock = clock
        self._pending: dict[CounterKey, int] = {}
        self._shared: dict[CounterKey, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def active(self) -> bool:
        return bool(self.rates)

    def _key(self, scope: str, identity: str, now: float) -> tuple[CounterKey, Rate] | None:
        rate = self.rates.get(scope)
        if rate is None:
            return None
        return (scope, identity, int(now // rate.period_s)), rate

    def _retry_after(self, key: CounterKey, rate: Rate, now: float) -> int:
        return max(1, math.ceil((key[2] + 1) * rate.period_s - now))

    def check(self, scope: str, identity: str) -> int | None:
        """Seconds to wait when ``identity`` is at its limit in ``scope``, else None."""
        now = self.clock()
        found = self._key(scope, identity, now)
        if found is None:
            return None
        key, rate = found
        if self._shared.get(key, 0) + self._pending.get(key, 0) >= rate.limit:
            return self._retry_after(key, rate, now)
        return None

    def hit(self, scope: str, identity: str) -> int | None:
        """Count one request; seconds to wait when it is over the limit (then not
        counted), else None."""
        now = self.clock()
        found = self._key(scope, identity, now)
        if found is None:
            return None
        key, rate = found
        with self._lock:
            count = self._pending.get(key)
            if count is None:
                if len(self._pending) >= self.max_tracked:
                    return None  # a flood of new identities: let the other scopes judge it
                count = 0
            if self._shared.get(key, 0) + count >= rate.limit:
                return self._retry_after(key, rate, now)
            self._pending[key] = count + 1
        if self._thread is None and self.shared_add is not None and self.sync_s > 0:
            self._start()
        return None

    def add(self, scope: str, identity: str) -> None:
        """Count one event (an authentication failure) without judging it."""
        now = self.clock()
        found = self._key(scope, identity, now)
        if found is None:
            return
        key = found[0]
        with self._lock:
            if key in self._pending or len(self._pending) < self.max_tracked:
                self._pending[key] = self._pending.get(key, 0) + 1
        if self._thread is None and self.shared_add is not None and self.sync_s > 0:
            self._start()

    # --- sharing ---------------------------------------------------------------------

    def sync(self) -> None:
        """Add this process's counts since the last sync to the shared totals and read
        them back; without a shared store (or when it fails), keep them locally."""
        with self._lock:
            pending, self._pending = self._pending, {}
        now = self.clock()
        current = {scope: int(now // rate.period_s) for scope, rate in self.rates.items()}
        totals: dict[CounterKey, int] = {}
        if pending and self.shared_add is not None:
            names = {key: shared_key(key) for key in pending}
            try:
                shared = self.shared_add(
                    [
                        (names[key], count, self.rates[key[0]].period_s * 2)
                        for key, count in pending.items()
                    ]
                )
                totals = {key: shared[name] for key, name in names.items() if name in shared}
            except Exception:  # the cache is down: count per process until it is back
                logger.warning("Throttle counters could not be shared; counting locally.")
        with self._lock:
            for key, count in pending.items():
                if key in totals:
                    self._shared[key] = totals[key]
                else:
                    self._shared[key] = self._shared.get(key, 0) + count
            # Windows that ended are forgotten.
            for key in [k for k in self._shared if k[2] < current.get(k[0], 0)]:
                del self._shared[key]

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="throttle-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.sync_s):
            self.sync()

    def stop(self) -> None:
        self._stopped.set()


def shared_key(key: CounterKey) -> str:
    """The cache key of a counter; credentials are hashed (no key is stored in clear)."""
    scope, identity, window = key
    if scope == "key":
        identity = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"throttle:{scope}:{window}:{identity}"


def cache_shared_add(entries: Iterable[tuple[str, int, int]]) -> dict[str, int]:
    """``SharedAdd`` on Django's default cache: with Redis one pipeline (INCRBY and
    EXPIRE per counter), else ``add`` + ``incr`` per counter."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    cache = caches["default"]
    entries = list(entries)
    if isinstance(cache, RedisCache):
        # Django's RedisCache has no pipelined incr; its client is the redis-py one.
        client: Any = cache._cache.get_client(None, write=True)
        pipeline = client.pipeline(transaction=False)
        for name, count, ttl in entries:
            full = cache.make_and_validate_key(name)
            pipeline.incrby(full, count)
            pipeline.expire(full, ttl)
        results = pipeline.execute()
        return {name: int(results[2 * i]) for i, (name, _, _) in enumerate(entries)}
    totals: dict[str, int] = {}
    for name, count, ttl in entries:
        cache.add(name, 0, timeout=ttl)
        try:
            totals[name] = int(cache.incr(name, count))
        except ValueError:  # expired between add and incr
            cache.set(name, count, timeout=ttl)
            totals[name] = count
    return totals
