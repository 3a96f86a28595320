"""The change bus: "what serving reads changed", told here at once and broadcast to the others.

A project-wide broadcast. The registry (uploads, stage and alias moves) and inference
(API keys, routing policies) call ``change_publish`` after their transaction commits,
with a ``ChangeReason``. Listeners in this process (the inference session cache, the
live dashboards) run immediately; other processes hear of it through their listener
thread (``start_listener``), which skips changes that came from its own process. The
publishers know nothing of who listens.

Transport, chosen by settings:

* ``REDIS_URL`` set: a Redis pub/sub channel (``PHOENIX_REGISTRY_CHANNEL``).
* embedded default: an append-only change log under ``DATA_DIR`` that the listener
  thread stats once a second; a cheap file works across the web, worker and command
  processes of one machine with no server.

When a listener may have missed changes (Redis reconnected, the change log rotated),
it is told ``Change(model_name="", reason=ChangeReason.RESYNC, ...)``: reload everything.

Broadcast failures are logged and never raised into the caller: the database write
has committed, and a missed broadcast costs a stale cache until the next change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
# The change log is emptied once it grows past this; readers then resync.
LOG_ROTATE_BYTES = 256 * 1024
LOG_FILENAME = "registry-changes.log"


class ChangeReason(StrEnum):
    """Why a change was published; the one list publishers and listeners share."""

    # the registry (models_registry.services)
    UPLOAD = "upload"
    STAGE = "stage"
    ALIAS = "alias"
    REFERENCE = "reference"
    DELETE = "delete"
    # serving configuration (inference.services)
    API_KEY = "api_key"
    ROUTING_POLICY = "routing_policy"
    # the bus itself: a listener may have missed changes, reload everything
    RESYNC = "resync"


@dataclass(frozen=True)
class Change:
    model_name: str
    reason: ChangeReason
    origin: str


Listener = Callable[[Change], None]

_listeners: list[Listener] = []
_state_lock = threading.Lock()
_origin_by_pid: dict[int, str] = {}
_listener_thread: threading.Thread | None = None
_listener_pid: int | None = None
_listener_stop = threading.Event()


def origin() -> str:
    """This process's id in broadcasts; new after a fork, so siblings hear each other."""
    pid = os.getpid()
    if pid not in _origin_by_pid:
        _origin_by_pid[pid] = f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
    return _origin_by_pid[pid]


def subscribe(listener: Listener) -> None:
    """Call ``listener`` for every change, local or from another process."""
    with _state_lock:
        if listener not in _listeners:
            _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    with _state_lock:
        if listener in _listeners:
            _listeners.remove(listener)


def _notify(change: Change) -> None:
    for listener in list(_listeners):
        try:
            listener(change)
        except Exception:
            logger.exception("registry change listener %r failed on %s", listener, change)


def change_publish(*, reason: ChangeReason, model_name: str = "") -> None:
    """Tell this process's listeners now and broadcast to other processes; never raises."""
    change = Change(model_name=model_name, reason=ChangeReason(reason), origin=origin())
    _notify(change)
    try:
        if settings.REDIS_URL:
            _redis_publish(change)
        else:
            _log_append(change)
    except Exception:
        logger.exception("could not broadcast registry change %s", change)


def start_listener() -> None:
    """Start (once per process) the daemon thread that hears other processes' changes."""
    global _listener_thread, _listener_pid, _listener_stop
    with _state_lock:
        pid = os.getpid()
        if _listener_thread is not None and _listener_pid == pid and _listener_thread.is_alive():
            return
        target = _redis_listen if settings.REDIS_URL else _log_watch
        ready, _listener_stop = threading.Event(), threading.Event()
        _listener_thread = threading.Thread(
            target=target, args=(ready, _listener_stop), name="registry-listener", daemon=True
        )
        _listener_pid = pid
        _listener_thread.start()
    # Changes published after this returns are heard: the thread has taken its bearings.
    ready.wait(timeout=5)


def stop_listener(timeout_s: float = 5.0) -> None:
    """Stop this process's listener thread (tests, orderly shutdown); a no-op if none."""
    global _listener_thread
    with _state_lock:
        thread, _listener_thread = _listener_thread, None
        _listener_stop.set()
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join(timeout=timeout_s)


def _from_json(raw: bytes | str) -> Change | None:
    try:
        data: dict[str, Any] = json.loads(raw)
        # An unknown reason (a newer process's) is malformed here, not guessed at.
        return Change(
            model_name=str(data["model_name"]),
            reason=ChangeReason(data["reason"]),
            origin=str(data["origin"]),
        )
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring malformed registry change %r", raw)
        return None


def _deliver(change: Change | None) -> None:
    if change is not None and change.origin != origin():
        _notify(change)


def _resync() -> None:
    _notify(Change(model_name="", reason=ChangeReason.RESYNC, origin="listener"))


# --- Redis pub/sub ---------------------------------------------------------------


def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def _redis_publish(change: Change) -> None:
    client = _redis_client()
    try:
        client.publish(settings.PHOENIX_REGISTRY_CHANNEL, json.dumps(asdict(change)))
    finally:
        client.close()


def _redis_listen(ready: threading.Event, stop: threading.Event) -> None:
    import redis

    first = True
    while not stop.is_set():
        client = _redis_client()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(settings.PHOENIX_REGISTRY_CHANNEL)
            # The subscription is confirmed by the server before we report ready.
            pubsub.get_message(timeout=2)
            if not first:
                _resync()  # changes published while we were away were lost
            first = False
            ready.set()
            while not stop.is_set():
                message = pubsub.get_message(timeout=POLL_INTERVAL_S)
                if message and message.get("type") == "message":
                    _deliver(_from_json(message["data"]))
        except redis.RedisError as exc:
            logger.warning("registry listener lost Redis (%s); reconnecting", exc)
            ready.set()
            stop.wait(POLL_INTERVAL_S)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()
                client.close()


# --- embedded: change log file -------------------------------------------------------
#
# One JSON line per change, appended under an exclusive lock. The first line names the
# log with a random id. Past LOG_ROTATE_BYTES the writer atomically replaces the log by
# a new one with a new id; a reader that finds another id than the one it was reading
# may have missed the old log's last lines, so its listeners are told to resync.


def _log_path() -> Path:
    return Path(settings.DATA_DIR) / LOG_FILENAME


def _log_append(change: Change) -> None:
    path = _log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(change)) + "\n").encode()
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
        try:
            fresh = path.stat().st_size > LOG_ROTATE_BYTES
        except FileNotFoundError:
            fresh = True
        if fresh:
            staging = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
            staging.write_bytes((json.dumps({"log": uuid.uuid4().hex}) + "\n").encode())
            os.replace(staging, path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _log_stat(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _log_watch(ready: threading.Event, stop: threading.Event) -> None:
    path = _log_path()
    header: bytes | None = None  # the first line of the log being read
    offset = 0
    seen = _log_stat(path)
    if seen is not None:
        # Start at the end: what happened before this process started is in the database.
        with path.open("rb") as handle:
            header = handle.readline()
        offset = seen[1]
    ready.set()
    while not stop.wait(POLL_INTERVAL_S):
        try:
            current = _log_stat(path)
            if current is None or current == seen:
                continue
            seen = current
            with path.open("rb") as handle:
                first = handle.readline()
                if first != header:
                    if header is not None:
                        _resync()  # a new log: the old one's last lines may be unread
                    header, offset = first, len(first)
                handle.seek(offset)
                data = handle.read()
            # A line still being written has no newline yet: it is read next time.
            complete = data[: data.rfind(b"\n") + 1]
            offset += len(complete)
            for raw in complete.splitlines():
                _deliver(_from_json(raw))
        except Exception:
            logger.exception("registry listener failed reading %s", path)
