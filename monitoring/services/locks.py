"""Locks on a piece of work that hold across threads, processes and machines.

``work_lock(name)`` yields True to exactly one holder at a time. The database is the
one thing every Phoenix process shares on every backend (web, Celery worker, a
``manage.py`` command), so that is where the lock lives:

* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``). Taking it
  writes nothing, and a holder that dies loses its connection and so its lock.
* other databases (SQLite, the embedded default): a ``CheckLock`` row with a unique
  name, expiring after ``ttl_s`` so a holder that died cannot block forever.

Not re-entrant: the same process (one connection) asking again while it holds the
lock gets False, as any other holder would.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from monitoring.models import CheckLock

logger = logging.getLogger(__name__)

# Names this process holds: advisory locks are re-entrant per session, the lock is not.
_held: set[str] = set()
_held_lock = threading.Lock()


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (never the salted built-in ``hash()``)."""
    digest = hashlib.sha256(f"phoenix.work_lock:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def work_lock(name: str, *, ttl_s: float) -> Iterator[bool]:
    """Hold the lock called ``name`` for the ``with`` block; yields False when it is held."""
    with _held_lock:
        if name in _held:
            yield False
            return
        _held.add(name)
    try:
        locker = _advisory_lock if connection.vendor == "postgresql" else _row_lock
        with locker(name, ttl_s=ttl_s) as acquired:
            yield acquired
    finally:
        with _held_lock:
            _held.discard(name)


@contextmanager
def _advisory_lock(name: str, *, ttl_s: float) -> Iterator[bool]:
    key = _advisory_key(name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        row = cursor.fetchone()
    acquired = bool(row and row[0])
    try:
        yield acquired
    finally:
        if acquired:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except DatabaseError:
                # A broken connection took the session, and the lock, with it; an open
                # one in a failed transaction keeps it until the connection closes.
                logger.warning("could not release work lock %s", name, exc_info=True)


@contextmanager
def _row_lock(name: str, *, ttl_s: float) -> Iterator[bool]:
    token = uuid.uuid4().hex
    now = timezone.now()
    with transaction.atomic():
        # A holder that died: its lock ran out, the next one takes it over.
        CheckLock.objects.filter(name=name, expires_at__lte=now).delete()
        try:
            with transaction.atomic():
                CheckLock.objects.create(
                    name=name, token=token, expires_at=now + timedelta(seconds=ttl_s)
                )
            acquired = True
        except IntegrityError:
            acquired = False
    try:
        yield acquired
    finally:
        # Only our own row is deleted, never one that expired and was taken over.
        if acquired:
            CheckLock.objects.filter(name=name, token=token).delete()
