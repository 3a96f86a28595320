"""Prediction event publishing: the request path enqueues, a background thread ships.

``publish_prediction`` appends one record of the scored request (a tuple of
references: ``event_schema.PredictionRecord``) to a bounded in-process buffer and
returns (a lock, a ``deque.extend``; no I/O, no event built). A flusher thread,
started lazily on the first publish so management commands spawn nothing, builds
the per-row events and sends batches to the sink chosen by
``PHOENIX_EVENT_BACKEND``: ``kafka`` or ``database`` (embedded default).

Nothing is dropped silently:

* buffer full -> the request's events are spilled to the append-only journal
  (``PHOENIX_EVENT_JOURNAL_DIR``, one fsync per batch) and counted;
* sink failing (broker down, database locked) -> the batch goes to the journal,
  the sink is retried with backoff, and while the journal is non-empty new
  batches are journalled too, so the replay keeps the original order;
* when the sink answers again the journal is replayed oldest first and each
  segment deleted only after the sink acknowledged it; a restarted process
  replays what a dead one left;
* at shutdown (the ASGI lifespan's, or atexit) the buffer is flushed, falling back
  to the journal.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from inference.event_journal import EventJournal
from inference.event_schema import PredictionRecord, prediction_events
from inference.event_sinks import DatabaseSink, EventSink, Item, KafkaSink
from inference.exceptions import SinkUnavailable

logger = logging.getLogger(__name__)

FEEDBACK_TOPIC = "feedback-events"

EVENTS_PUBLISHED = Counter(
    "phoenix_events_published",
    "Events acknowledged by the event backend (including replays).",
    ["backend"],
)
EVENTS_SPILLED = Counter(
    "phoenix_events_spilled",
    "Events written to the local journal instead of the backend.",
    ["reason"],
)
EVENTS_REPLAYED = Counter(
    "phoenix_events_replayed", "Journalled events the backend acknowledged on replay."
)
EVENTS_BUFFER_DEPTH = Gauge(
    "phoenix_events_buffer_depth", "Events waiting in this process's in-memory buffer."
)
EVENTS_JOURNAL_BYTES = Gauge(
    "phoenix_events_journal_bytes", "Bytes in the local event journal awaiting replay."
)


# A buffer entry: (topic, a ready event or a scored request whose events are built
# when it is taken from the buffer).
Entry = tuple[str, dict[str, Any] | PredictionRecord]


def _size(payload: dict[str, Any] | PredictionRecord) -> int:
    return len(payload.predictions) if isinstance(payload, PredictionRecord) else 1


def _expand(entries: Iterable[Entry]) -> list[Item]:
    """(topic, event) items, in order, building the events of each scored request."""
    items: list[Item] = []
    for topic, payload in entries:
        if isinstance(payload, PredictionRecord):
            items += [(topic, event) for event in prediction_events(payload)]
        else:
            items.append((topic, payload))
    return items


@dataclass(frozen=True)
class PublisherConfig:
    backend: str
    topic: str
    buffer_size: int
    batch_size: int
    flush_interval_s: float
    journal_dir: Path
    bootstrap_servers: str = ""
    partitions: int = 3
    send_timeout_s: float = 10.0
    retry_max_s: float = 5.0

    @classmethod
    def from_settings(cls) -> PublisherConfig:
        from django.conf import settings

        return cls(
            backend=settings.PHOENIX_EVENT_BACKEND,
            topic=settings.PHOENIX_EVENT_TOPIC,
            buffer_size=settings.PHOENIX_EVENT_BUFFER_SIZE,
            batch_size=settings.PHOENIX_EVENT_BATCH_SIZE,
            flush_interval_s=settings.PHOENIX_EVENT_FLUSH_INTERVAL_S,
            journal_dir=Path(settings.PHOENIX_EVENT_JOURNAL_DIR),
            bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
            partitions=settings.PHOENIX_EVENT_TOPIC_PARTITIONS,
            send_timeout_s=settings.PHOENIX_EVENT_SEND_TIMEOUT_S,
        )


def sink_build(config: PublisherConfig) -> EventSink:
    """The sink named by the configuration; an unknown name is a configuration error."""
    if config.backend == "kafka":
        if not config.bootstrap_servers:
            raise ValueError("PHOENIX_EVENT_BACKEND=kafka needs KAFKA_BOOTSTRAP_SERVERS")
        return KafkaSink(
            bootstrap_servers=config.bootstrap_servers,
            topics=(config.topic, FEEDBACK_TOPIC),
            partitions=config.partitions,
            timeout_s=config.send_timeout_s,
        )
    if config.backend == "database":
        return DatabaseSink(prediction_topic=config.topic)
    raise ValueError(f"unknown PHOENIX_EVENT_BACKEND {config.backend!r} (kafka or database)")


class EventPublisher:
    """Bounded buffer + flusher thread + journal. One per process (see ``get_publisher``)."""

    def __init__(self, config: PublisherConfig, sink: EventSink | None = None) -> None:
        self.config = config
        self.sink = sink if sink is not None else sink_build(config)
        self.journal = EventJournal(config.journal_dir)
        self._buffer: collections.deque[Entry] = collections.deque()
        self._depth = 0  # events in the buffer (a record holds one per row)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._send_lock = threading.Lock()  # one shipper at a time (thread or flush())
        # Replay on start, so a restart with a non-empty journal ships it.
        self._journal_dirty = True
        self._healthy = True
        self._next_retry = 0.0
        self._retry_delay = 0.25
        self.last_error = ""
        # Why the journal's last write failed ("" while it writes): with the buffer
        # full too, this process can no longer keep what it serves, so it is unready.
        self.journal_error = ""

    # --- request path ----------------------------------------------------------

    def publish(self, items: list[Item]) -> None:
        """Enqueue ready events; never blocks on the backend and never raises."""
        if items:
            self._enqueue(items, len(items))

    def publish_prediction(self, record: PredictionRecord) -> None:
        """Enqueue a scored request; its events are built on the flusher thread."""
        if record.predictions:
            self._enqueue([(self.config.topic, record)], len(record.predictions))

    def _enqueue(self, entries: Sequence[Entry], events: int) -> None:
        try:
            if self._thread is None or self._pid != os.getpid():
                self.start()
            with self._lock:
                fits = self._depth + events <= self.config.buffer_size
                if fits:
                    self._buffer.extend(entries)
                    self._depth += events
                depth = self._depth
            if not fits:
                self._spill(_expand(entries), reason="buffer_full")
            elif depth >= self.config.batch_size:
                self._wake.set()
        except Exception:
            # The log must never fail a prediction; the error is loud in the logs.
            logger.exception("could not enqueue %d prediction events", events)

    def _spill(self, items: list[Item], *, reason: str) -> None:
        try:
            self.journal.append([{"t": topic, "e": event} for topic, event in items])
        except Exception as exc:
            self.journal_error = f"{type(exc).__name__}: {exc}"
            raise
        self.journal_error = ""
        self._journal_dirty = True
        EVENTS_SPILLED.labels(reason=reason).inc(len(items))

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # Forked after start: the parent's thread does not exist here.
                self._thread, self._pid = None, os.getpid()
                self.journal = EventJournal(self.config.journal_dir)
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="phoenix-event-flusher", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the flusher after a final flush (journal fallback); idempotent."""
        thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout_s)
        self._thread = None
        try:
            self.flush()
        finally:
            # The final flush may have reopened what the thread closed (a producer).
            try:
                self.sink.close()
            except Exception:
                logger.debug("sink close failed", exc_info=True)
            self.journal.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- shipping --------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # Woken because a batch is full: ship full batches only and leave the
                # rest for the next wake. Shipping whatever arrived during the last send
                # would turn a busy flusher into many small sends, each a GIL handoff
                # that costs the request threads far more than its own CPU time.
                woken = self._wake.wait(self.config.flush_interval_s)
                self._wake.clear()
                try:
                    self.flush(full_batches_only=woken)
                except Exception:  # keep the flusher alive whatever a sink raises
                    logger.exception("event flush failed")
        finally:
            try:
                self.sink.close()
            except Exception:
                logger.debug("sink close failed", exc_info=True)

    def flush(self, *, full_batches_only: bool = False) -> None:
        """Ship what is buffered now: everything, or only whole batches (also the journal,
        when the sink is due for a try)."""
        batch_size = self.config.batch_size
        with self._send_lock:
            self._replay_if_due()
            while self._depth >= (batch_size if full_batches_only else 1):
                entries = self._take(batch_size)
                if not entries:
                    break
                self._ship(_expand(entries))
            EVENTS_BUFFER_DEPTH.set(self._depth)

    def _take(self, events: int) -> list[Entry]:
        """Entries from the front of the buffer holding about ``events`` events (at least
        one entry: a request with more rows than a batch travels whole)."""
        taken: list[Entry] = []
        with self._lock:
            count = 0
            while self._buffer and count < events:
                entry = self._buffer.popleft()
                taken.append(entry)
                count += _size(entry[1])
            self._depth -= count
        return taken

    def _ship(self, batch: list[Item]) -> None:
        if self._journal_dirty or not self._healthy:
            # Behind a non-empty journal (or a sink in backoff): keep order, journal it.
            self._spill(batch, reason="backend_unavailable")
            return
        try:
            self.sink.send(batch)
        except Exception as exc:
            # SinkUnavailable, or a bug: either way the batch is kept, never lost.
            if not isinstance(exc, SinkUnavailable):
                logger.exception("event sink %s failed unexpectedly", self.sink.name)
            self._mark_unhealthy(f"{type(exc).__name__}: {exc}")
            self._spill(batch, reason="backend_unavailable")
            return
        EVENTS_PUBLISHED.labels(backend=self.sink.name).inc(len(batch))

    def _replay_if_due(self) -> None:
        if not self._journal_dirty and self._healthy:
            return
        if time.monotonic() < self._next_retry:
            return

        def send(records: list[dict[str, Any]]) -> None:
            items = [(str(r["t"]), r["e"]) for r in records if isinstance(r.get("e"), dict)]
            self.sink.send(items)
            EVENTS_PUBLISHED.labels(backend=self.sink.name).inc(len(items))
            EVENTS_REPLAYED.inc(len(items))

        # Cleared before, not after: a request that spills while we replay sets it
        # again, so its segment is picked up by the next round instead of forgotten.
        self._journal_dirty = False
        try:
            result = self.journal.replay(send, batch_size=self.config.batch_size)
        except Exception as exc:
            if not isinstance(exc, SinkUnavailable):
                logger.exception("journal replay failed unexpectedly")
            self._journal_dirty = True
            self._mark_unhealthy(f"{type(exc).__name__}: {exc}")
            return
        finally:
            EVENTS_JOURNAL_BYTES.set(self.journal.size_bytes())
        if result.corrupt_lines:
            logger.warning("skipped %d torn journal lines", result.corrupt_lines)
        if result.records:
            logger.info("replayed %d journalled events", result.records)
        # Segments locked by other live processes are theirs to replay.
        self._healthy, self._retry_delay, self.last_error = True, 0.25, ""

    def _mark_unhealthy(self, error: str) -> None:
        if self._healthy:
            logger.warning("event backend %s unavailable, journalling: %s", self.sink.name, error)
        self._healthy = False
        self.last_error = error
        self._next_retry = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.config.retry_max_s)

    # --- introspection ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        journal_bytes = self.journal.size_bytes()
        EVENTS_JOURNAL_BYTES.set(journal_bytes)
        return {
            "backend": self.sink.name,
            "backend_healthy": self._healthy,
            "buffer_depth": self._depth,
            "buffer_size": self.config.buffer_size,
            "journal_bytes": journal_bytes,
            "flusher_running": self.running,
            "last_error": self.last_error,
            "journal_error": self.journal_error,
        }


_publisher: EventPublisher | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> EventPublisher:
    """The process-wide publisher, built from settings on first use."""
    global _publisher
    if _publisher is None:
        with _publisher_lock:
            if _publisher is None:
                _publisher = EventPublisher(PublisherConfig.from_settings())
    return _publisher


def set_publisher(publisher: EventPublisher | None) -> EventPublisher | None:
    """Replace the process-wide publisher (tests, benchmarks); returns the previous one."""
    global _publisher
    with _publisher_lock:
        previous, _publisher = _publisher, publisher
    return previous


def publish_prediction(record: PredictionRecord) -> None:
    """Log a scored request, one event per row (``prediction_events``); returns at once
    and never raises."""
    try:
        publisher = _publisher if _publisher is not None else get_publisher()
        publisher.publish_prediction(record)
    except Exception:
        logger.exception("prediction events not published")


def publish_feedback_event(event: dict[str, Any]) -> None:
    """Queue a ground-truth event for ``feedback-events`` (Kafka backend only)."""
    try:
        publisher = get_publisher()
        if publisher.sink.name == "kafka":
            publisher.publish([(FEEDBACK_TOPIC, event)])
    except Exception:  # the ground truth is already stored; the stream copy is best effort
        logger.exception("feedback event not published")


def event_publishing_flush() -> None:
    """Ship what this process's publisher buffers now; returns once the backend (or, when
    it is down, the journal) holds it. For a reader that must see rows this process has
    just published, e.g. feedback arriving right after its prediction."""
    get_publisher().flush()


def event_publishing_status() -> dict[str, Any]:
    """Buffer depth, journal size, backend health: for /readyz and the pipeline page."""
    if _publisher is None:
        from django.conf import settings

        return {"backend": settings.PHOENIX_EVENT_BACKEND, "flusher_running": False}
    return _publisher.status()


def event_publishing_stop() -> None:
    """Ship what this process buffered (the journal takes what the backend will not)
    and stop the flusher; for a server's shutdown. Never raises; idempotent."""
    publisher = _publisher
    if publisher is not None and publisher.running:
        try:
            publisher.stop(timeout_s=5.0)
        except Exception:  # best effort: the journal holds what could not be sent
            logger.exception("final event flush failed")


# Processes that end normally (management commands, Celery, granian, Ctrl-C) flush here.
# uvicorn ends a SIGTERM-ed worker by re-raising the signal, so no atexit hook runs
# there: phoenix.asgi flushes on the ASGI lifespan shutdown instead.
atexit.register(event_publishing_stop)


def _readiness() -> Any:
    from phoenix.health import ComponentStatus

    status = event_publishing_status()
    publisher = _publisher
    if publisher is None:
        return ComponentStatus(ok=True, detail=status)
    # A broker outage is degraded, not unready: the API keeps answering and the
    # journal keeps the events. Unready only if the flusher died after starting, or
    # if events can be kept nowhere: the buffer full and the journal failing.
    flusher_dead = publisher._thread is not None and not publisher.running
    nowhere = bool(publisher.journal_error) and status["buffer_depth"] >= status["buffer_size"]
    return ComponentStatus(
        ok=not flusher_dead and not nowhere,
        detail=status,
        degraded=not status["backend_healthy"] or bool(publisher.journal_error),
    )


def _register_readiness() -> None:
    try:
        from phoenix.health import register_check
    except Exception:  # imported outside Django (pure tests)
        return
    register_check("event_bus", _readiness)


_register_readiness()
