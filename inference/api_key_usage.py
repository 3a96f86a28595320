"""When each API key was last used, without a database write per request.

A request notes its key's id and the time in a dict (``api_key_used``: one dict
store, no lock, no I/O). A daemon thread per process writes what was noted every
``PHOENIX_API_KEY_USAGE_FLUSH_S`` seconds, one conditional UPDATE per key used
since the last flush, and the server's shutdown writes the rest. So
``ApiKey.last_used_at`` lags real use by at most that period (plus a crashed
process's unflushed notes), and a key used a million times a minute costs one
write a minute per process.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Q

logger = logging.getLogger(__name__)

_pending: dict[int, float] = {}
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_stop = threading.Event()
_start_lock = threading.Lock()


def api_key_used(key_id: int, at: float) -> None:
    """Note that key ``key_id`` was used at ``at`` (epoch seconds). Never blocks, never
    queries; starts this process's writer thread on first use."""
    _pending[key_id] = at
    if _thread_pid != os.getpid():
        _writer_start()


def api_key_usage_flush() -> int:
    """Write the noted last-use times (never moving one back). Returns keys written.

    Database errors are logged and the notes kept for the next flush.
    """
    global _pending
    # Swapped, not locked: a note that lands in the old dict during the swap is lost,
    # and the key's next request notes it again.
    taken, _pending = _pending, {}
    if not taken:
        return 0
    from .models import ApiKey

    written = 0
    try:
        for key_id, at in taken.items():
            when = datetime.fromtimestamp(at, tz=UTC)
            written += ApiKey.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=when), pk=key_id
            ).update(last_used_at=when)
    except DatabaseError as exc:
        logger.warning("could not record API key use (kept for the next flush): %s", exc)
        for key_id, at in taken.items():
            _pending[key_id] = max(at, _pending.get(key_id, at))
    return written


def _writer_start() -> None:
    global _thread, _thread_pid
    interval = float(settings.PHOENIX_API_KEY_USAGE_FLUSH_S)
    with _start_lock:
        if _thread_pid == os.getpid():
            return
        _thread_pid = os.getpid()  # also after a fork: the parent's thread is not ours
        if interval <= 0:
            return  # flushed only when asked (tests, shutdown)
        _stop.clear()
        _thread = threading.Thread(
            target=_write_loop, args=(interval,), name="phoenix-api-key-usage", daemon=True
        )
        _thread.start()


def _write_loop(interval: float) -> None:
    while not _stop.wait(interval):
        try:
            api_key_usage_flush()
        finally:
            # This thread's own connection: not held open between flushes.
            connections.close_all()


def api_key_usage_stop() -> None:
    """Stop the writer thread and write what is noted (a server's shutdown hook)."""
    global _thread, _thread_pid
    _stop.set()
    if _thread is not None and _thread.is_alive():
        _thread.join(timeout=5)
    _thread, _thread_pid = None, None
    try:
        api_key_usage_flush()
    except Exception:
        logger.exception("could not record API key use at shutdown")
