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


class _Window:
    """One scope's current window: counts here since the last sync, and the shared
    totals that sync last read. Both are emptied when the window ends."""

    __slots__ = ("end", "index", "limit", "pending", "period_s", "shared")

    def __init__(self, rate: Rate) -> None:
        self.limit, self.period_s = rate.limit, rate.period_s
        self.index, self.end = -1, 0.0
        self.pending: dict[str, int] = {}
        self.shared: dict[str, int] = {}

    def roll(self, now: float) -> None:
        self.index = int(now // self.period_s)
        self.end = (self.index + 1) * self.period_s
        self.pending, self.shared = {}, {}

    def wait(self, now: float) -> int:
        return max(1, math.ceil(self.end - now))

    def over(self, identity: str) -> bool:
        return self.shared.get(identity, 0) + self.pending.get(identity, 0) >= self.limit


class Throttle:
    """Fixed-window counters for named scopes (``"ip"``, ``"key"``, ``"auth_failures"``).

    ``admit`` (and ``hit``, ``check``, ``add``) run on the event loop for each request;
    ``sync`` on the one background thread. A scope without a rate is never counted.
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
        self._windows = {scope: _Window(rate) for scope, rate in self.rates.items()}
        self._ip = self._windows.get("ip")
        self._key = self._windows.get("key")
        self._auth = self._windows.get("auth_failures")
        self._roll_at = 0.0  # the earliest end of a current window
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    @property
    def active(self) -> bool:
        return bool(self.rates)

    def _now(self) -> float:
        """The clock, with every window that has ended rolled on (under the lock)."""
        now = self.clock()
        if now >= self._roll_at:
            with self._lock:
                for window in self._windows.values():
                    if now >= window.end:
                        window.roll(now)
                self._roll_at = min((w.end for w in self._windows.values()), default=0.0)
        return now

    def _count(self, window: _Window, identity: str) -> None:
        count = window.pending.get(identity)
        if count is not None:
            window.pending[identity] = count + 1
        elif len(window.pending) < self.max_tracked:
            window.pending[identity] = 1  # else a flood of new identities: others judge it

    def _started(self) -> None:
        if self._thread is None and self.shared_add is not None and self.sync_s > 0:
            self._start()

    def admit(self, ip: str, credential: str | None) -> tuple[str, int] | None:
        """One request, in one step (the edge's hot path: one clock read, one lock):
        refused when ``ip`` is over its authentication failures and presents a
        credential, else counted per ``ip`` and per ``credential``. Returns (scope,
        seconds to wait) when refused (nothing counted), else None."""
        now = self._now()
        by_ip, by_key, auth = self._ip, self._key, self._auth
        if credential is None:
            by_key = auth = None
        with self._lock:
            if auth is not None and auth.over(ip):
                return "auth_failures", auth.wait(now)
            if by_ip is not None and by_ip.over(ip):
                return "ip", by_ip.wait(now)
            if by_key is not None and by_key.over(credential):  # type: ignore[arg-type]
                return "key", by_key.wait(now)
            if by_ip is not None:
                self._count(by_ip, ip)
            if by_key is not None:
                self._count(by_key, credential)  # type: ignore[arg-type]
        self._started()
        return None

    def check(self, scope: str, identity: str) -> int | None:
        """Seconds to wait when ``identity`` is at its limit in ``scope``, else None."""
        window = self._windows.get(scope)
        if window is None:
            return None
        now = self._now()
        return window.wait(now) if window.over(identity) else None

    def hit(self, scope: str, identity: str) -> int | None:
        """Count one request; seconds to wait when it is over the limit (then not
        counted), else None."""
        window = self._windows.get(scope)
        if window is None:
            return None
        now = self._now()
        with self._lock:
            if window.over(identity):
                return window.wait(now)
            self._count(window, identity)
        self._started()
        return None

    def add(self, scope: str, identity: str) -> None:
        """Count one event (an authentication failure) without judging it."""
        window = self._windows.get(scope)
        if window is None:
            return
        self._now()
        with self._lock:
            self._count(window, identity)
        self._started()

    # --- sharing ---------------------------------------------------------------------

    def sync(self) -> None:
        """Add this process's counts since the last sync to the shared totals and read
        them back; without a shared store (or when it fails), keep them locally."""
        self._now()
        taken: list[tuple[str, _Window, int, dict[str, int]]] = []
        with self._lock:
            for scope, window in self._windows.items():
                if window.pending:
                    taken.append((scope, window, window.index, window.pending))
                    window.pending = {}
        if not taken:
            return
        totals: dict[str, int] = {}
        if self.shared_add is not None:
            entries = [
                (shared_key(scope, identity, index), count, window.period_s * 2)
                for scope, window, index, pending in taken
                for identity, count in pending.items()
            ]
            try:
                totals = self.shared_add(entries)
            except Exception:  # the cache is down: count per process until it is back
                logger.warning("Throttle counters could not be shared; counting locally.")
        with self._lock:
            for scope, window, index, pending in taken:
                if window.index != index:
                    continue  # that window ended meanwhile
                for identity, count in pending.items():
                    total = totals.get(shared_key(scope, identity, index))
                    if total is None:
                        total = window.shared.get(identity, 0) + count
                    window.shared[identity] = total

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


def shared_key(scope: str, identity: str, window: int) -> str:
    """The cache key of a counter; credentials are hashed (no key is stored in clear)."""
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
