"""Where the event flusher sends batches: one small interface, two backends.

``send`` returns only once the batch is durable at the destination (Kafka
acknowledged with acks=all, or the database committed) and raises
``SinkUnavailable`` otherwise, so the publisher knows when to spill to the journal.

The database backend writes through a ``DatabaseWriter`` that the app owning the
prediction log registers at ``AppConfig.ready`` (``database_writer_register``);
inference never imports it (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import orjson
from prometheus_client import Counter

from inference.event_schema import MAX_MESSAGE_BYTES, encode_event, pack_events
from inference.exceptions import SinkUnavailable

logger = logging.getLogger(__name__)

# A buffered item: (topic, event). Prediction events and feedback events share the
# buffer and the journal; the database sink only writes prediction events.
Item = tuple[str, dict[str, Any]]


EVENTS_DROPPED = Counter(
    "phoenix_events_dropped",
    "Events that can never be delivered (e.g. larger than a Kafka message), by reason.",
    ["reason"],
)


class EventSink(Protocol):
    name: str

    def send(self, items: list[Item]) -> None: ...

    def close(self) -> None: ...


class KafkaSink:
    """kafka-python producer: idempotent, acks=all, retries; key = model name."""

    name = "kafka"

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: Iterable[str],
        partitions: int = 3,
        timeout_s: float = 10.0,
        client_id: str = "phoenix-events",
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = tuple(topics)
        self.partitions = partitions
        self.timeout_s = timeout_s
        self.client_id = client_id
        self._producer: Any = None
        self._topics_ready = False
        self._lock = threading.Lock()

    def _ensure_producer(self) -> Any:
        from kafka import KafkaProducer

        if self._producer is None:
            if not self._topics_ready:
                topics_ensure(
                    bootstrap_servers=self.bootstrap_servers,
                    topics=self.topics,
                    partitions=self.partitions,
                    timeout_s=self.timeout_s,
                )
                self._topics_ready = True
            timeout_ms = int(self.timeout_s * 1000)
            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                client_id=self.client_id,
                acks="all",
                # Idempotence (kafka-python >= 3.0) lets retries never duplicate or
                # reorder within a partition.
                enable_idempotence=True,
                retries=5,
                max_in_flight_requests_per_connection=5,
                # flush() ends every batch, so a long linger costs no latency: it lets
                # the sender ship a whole batch per partition instead of a request per record.
                linger_ms=200,
                batch_size=1024 * 1024,
                compression_type=None,
                request_timeout_ms=max(1000, timeout_ms // 2),
                # kafka-python refuses a delivery timeout not above linger + request
                # timeout; a short PHOENIX_EVENT_SEND_TIMEOUT_S (1 s) must still work.
                delivery_timeout_ms=max(timeout_ms, 200 + max(1000, timeout_ms // 2) + 1),
                max_block_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                reconnect_backoff_max_ms=1000,
            )
        return self._producer

    def send(self, items: list[Item]) -> None:
        # One message per (topic, model) and size chunk: a JSON array of events.
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for topic, event in items:
            groups.setdefault((topic, str(event.get("model", ""))), []).append(event)
        with self._lock:
            try:
                producer = self._ensure_producer()
                futures: list[Any] = []
                for (topic, model), events in groups.items():
                    messages, too_large = _messages(events)
                    if too_large:
                        # Kafka would refuse them forever; journalling them would only
                        # block the journal. Loud, counted, not silent.
                        EVENTS_DROPPED.labels(reason="too_large").inc(too_large)
                        logger.error(
                            "%d %s event(s) over %d bytes dropped",
                            too_large,
                            model,
                            MAX_MESSAGE_BYTES,
                        )
                    key = model.encode()
                    futures.extend(producer.send(topic, key=key, value=m) for m in messages)
                producer.flush(timeout=self.timeout_s)
                for future in futures:
                    future.get(timeout=0)
            except Exception as exc:
                # A producer that timed out may hold expired batches and an old producer
                # epoch; a fresh one is the simplest correct state to retry from.
                self._reset()
                raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=0)
        except Exception:
            # kafka-python's close() flushes first and raises while batches are stuck,
            # leaving its sender thread retrying forever: stop that thread ourselves
            # (the stuck batches are in the journal already).
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            producer._closed = True

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.close(timeout=self.timeout_s)
                finally:
                    self._producer = None


def _messages(events: list[dict[str, Any]]) -> tuple[list[bytes], int]:
    """JSON-array messages under the size limit, and how many events fit in none.

    The usual batch fits one message and is encoded by one ``orjson.dumps`` call (with
    ``encode_event``'s options) instead of one per event and a join: shipping to Kafka
    then costs the API process ~1.7 us of CPU per event instead of ~4.4 (flusher and
    kafka-python sender together, under its GIL). Only a batch over the limit is encoded
    per event and split.
    """
    whole = orjson.dumps(events, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    if len(whole) <= MAX_MESSAGE_BYTES:
        return [whole], 0
    return pack_events([encode_event(event) for event in events])


def topics_ensure(
    *, bootstrap_servers: str, topics: Iterable[str], partitions: int, timeout_s: float = 10.0
) -> None:
    """Create the topics that are missing (an existing topic is left as it is)."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="phoenix-admin",
        request_timeout_ms=int(timeout_s * 1000),
        bootstrap_timeout_ms=int(timeout_s * 1000),
    )
    try:
        existing = set(admin.list_topics())
        for topic in topics:
            if topic in existing:
                continue
            # Another process may win the race to create it.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
                )
    finally:
        admin.close()


class WriteOutcome(Protocol):
    """What a database writer reports about a batch it committed."""

    @property
    def invalid(self) -> int: ...

    @property
    def rejected(self) -> Sequence[Any]: ...


class DatabaseWriter(Protocol):
    """Commits prediction events this deployment's publisher built, skipping stored ids."""

    def __call__(self, *, events: Sequence[dict[str, Any]]) -> WriteOutcome: ...


_database_writer: DatabaseWriter | None = None


def database_writer_register(writer: DatabaseWriter | None) -> DatabaseWriter | None:
    """Set the writer the database sink uses (``None`` unsets it); returns the previous one."""
    global _database_writer
    previous, _database_writer = _database_writer, writer
    return previous


class DatabaseSink:
    """The embedded default: one bulk insert per batch into the prediction log."""

    name = "database"

    def __init__(self, *, prediction_topic: str) -> None:
        self.prediction_topic = prediction_topic

    def send(self, items: list[Item]) -> None:
        from django.db import DatabaseError, close_old_connections

        events = [event for topic, event in items if topic == self.prediction_topic]
        if not events:
            return
        writer = _database_writer
        if writer is None:
            # Nothing registered (the monitoring app is not installed or not ready):
            # the batch is journalled and replayed once a writer is there.
            raise SinkUnavailable("no prediction log writer is registered")
        try:
            result = writer(events=events)
        except DatabaseError as exc:
            # Drop a broken connection so the next attempt opens a fresh one.
            close_old_connections()
            raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if result.invalid or result.rejected:
            # Retrying cannot help these; they are logged with the reason by the service.
            EVENTS_DROPPED.labels(reason="invalid").inc(result.invalid)
            EVENTS_DROPPED.labels(reason="rejected_by_database").inc(len(result.rejected))

    def close(self) -> None:
        """Close this thread's database connection (the flusher's, when it exits)."""
        from django.db import connection

        # Never inside a transaction: that would be the caller's, not ours.
        if not connection.in_atomic_block:
            connection.close()
