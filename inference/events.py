"""Prediction event publishing (first cut: buffers only; the flusher lands next)."""

from __future__ import annotations

import collections
import threading
from typing import Any

_lock = threading.Lock()
_buffer: collections.deque[dict[str, Any]] = collections.deque()


def publish_prediction_events(events: list[dict[str, Any]]) -> None:
    """Queue one event per scored row; never blocks or raises on the request path."""
    with _lock:
        _buffer.extend(events)
