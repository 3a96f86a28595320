"""The Kafka consumer: prediction events from the topic -> prediction log rows.

Per batch: parse; valid events -> one bulk insert in one transaction
(``prediction_log_write_events``); poison messages -> the dead-letter topic; then the
offsets are committed, only after the database transaction committed. A crash in
between re-reads the batch and the idempotent insert skips it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import DatabaseError, close_old_connections
from prometheus_client import Counter, Gauge

from inference.event_schema import InvalidEvent, PredictionEvent, parse_event, unpack_message
from monitoring.services.feedback import pending_feedback_purge
from monitoring.services.prediction_log import WriteResult, prediction_log_write_events

logger = logging.getLogger(__name__)

EVENTS_CONSUMED = Counter(
    "phoenix_events_consumed",
    "Prediction events read by the consumer, by outcome.",
    ["outcome"],  # inserted | duplicate
)
EVENTS_DEAD_LETTERED = Counter(
    "phoenix_events_dead_lettered", "Messages sent to the dead-letter topic.", ["kind"]
)
CONSUMER_LAG = Gauge(
    "phoenix_events_consumer_lag",
    "Messages between the consumer's position and the partition's high watermark.",
    ["topic", "partition"],
)


@dataclass(frozen=True)
class ConsumerConfig:
    bootstrap_servers: str
    topic: str = "inference-events"
    group_id: str = "phoenix-prediction-log"
    dlq_topic: str = "inference-events-dlq"
    batch_size: int = 500
    poll_timeout_ms: int = 500
    # None: join the consumer group and share partitions with its other members.
    # A list: read exactly these partitions (still committing to group_id).
    partitions: list[int] | None = None
    partitions_on_create: int = 3


@dataclass
class ConsumerStats:
    batches: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: list[str] = field(default_factory=list)
    partitions: set[int] = field(default_factory=set)  # partitions it read messages from
    assigned: set[int] = field(default_factory=set)  # partitions it was ever given


class PredictionLogConsumer:
    """Reads prediction events in batches and writes them to ``PredictionLog``.

    Per batch: parse; valid events -> one bulk insert in one transaction; poison
    messages -> the DLQ (acknowledged); then commit the offsets. A crash before the
    commit re-reads the batch, which the idempotent insert absorbs.
    """

    def __init__(self, config: ConsumerConfig) -> None:
        self.config = config
        self._stop = threading.Event()
        self._consumer: Any = None
        self._dlq: Any = None
        self.stats = ConsumerStats()

    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and close (signal-safe)."""
        self._stop.set()

    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        from inference.event_sinks import topics_ensure

        topics_ensure(
            bootstrap_servers=self.config.bootstrap_servers,
            topics=(self.config.topic, self.config.dlq_topic),
            partitions=self.config.partitions_on_create,
        )
        self._consumer = KafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers,
            group_id=self.config.group_id,
            client_id="phoenix-consume-events",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.config.batch_size,
        )
        if self.config.partitions is None:
            self._consumer.subscribe([self.config.topic])
        else:
            self._consumer.assign(
                [TopicPartition(self.config.topic, p) for p in self.config.partitions]
            )
        self._dlq = KafkaProducer(
            bootstrap_servers=self.config.bootstrap_servers,
            client_id="phoenix-dlq",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )

    def run(
        self, *, max_batches: int | None = None, idle_timeout_s: float | None = None
    ) -> ConsumerStats:
        """Consume until ``stop()``, ``max_batches`` batches or ``idle_timeout_s`` idle seconds."""
        self._connect()
        last_data = time.monotonic()
        last_purge = 0.0
        backoff = 0.5
        try:
            while not self._stop.is_set():
                records = self._consumer.poll(
                    timeout_ms=self.config.poll_timeout_ms, max_records=self.config.batch_size
                )
                messages = [m for batch in records.values() for m in batch]
                self.stats.assigned.update(tp.partition for tp in self._consumer.assignment())
                if messages:
                    try:
                        self.process(messages)
                    except DatabaseError:
                        # The database is down or busy: nothing was committed, so rewind
                        # to the batch's first offsets and try again after a pause.
                        logger.exception("batch not written; retrying")
                        close_old_connections()
                        self._rewind(records)
                        self._stop.wait(min(backoff, 10.0))
                        backoff *= 2
                        continue
                    backoff = 0.5
                    self._consumer.commit()
                    last_data = time.monotonic()
                    self.stats.batches += 1
                    if max_batches is not None and self.stats.batches >= max_batches:
                        break
                elif idle_timeout_s is not None and time.monotonic() - last_data > idle_timeout_s:
                    break
                self._record_lag()
                if time.monotonic() - last_purge > 600:
                    last_purge = time.monotonic()
                    try:
                        pending_feedback_purge()
                    except DatabaseError:  # housekeeping; the next round tries again
                        logger.exception("pending feedback purge failed")
                        close_old_connections()
        finally:
            self.close()
        return self.stats

    def process(self, messages: list[Any]) -> WriteResult:
        """Write one polled batch and dead-letter its poison (no offset commit).

        A message carries a JSON array of events (what the publisher sends) or one
        event object. A message that is not JSON is dead-lettered whole; an invalid
        event inside an array is dead-lettered alone, with its index.
        """
        valid: list[PredictionEvent] = []
        origin: dict[Any, tuple[Any, int | None, Any]] = {}
        poison: list[tuple[Any, int | None, bytes, InvalidEvent]] = []
        for message in messages:
            self.stats.partitions.add(message.partition)
            try:
                elements, is_array = unpack_message(message.value)
            except InvalidEvent as exc:
                poison.append((message, None, message.value or b"", exc))
                continue
            for index, element in enumerate(elements):
                where = index if is_array else None
                try:
                    event = parse_event(element)
                except InvalidEvent as exc:
                    poison.append((message, where, orjson.dumps(element), exc))
                    continue
                valid.append(event)
                origin[event.event_id] = (message, where, element)
        result = prediction_log_write_events(events=valid)
        for event, reason in result.rejected:
            message, where, element = origin[event.event_id]
            poison.append(
                (message, where, orjson.dumps(element), InvalidEvent(reason, kind="rejected"))
            )
        for message, position, payload, error in poison:
            self._dead_letter(message, position, payload, error)
        if poison:
            # The DLQ must hold them before the offsets move past them.
            self._dlq.flush(timeout=30)
        EVENTS_CONSUMED.labels(outcome="inserted").inc(result.inserted)
        EVENTS_CONSUMED.labels(outcome="duplicate").inc(result.duplicates)
        self.stats.inserted += result.inserted
        self.stats.duplicates += result.duplicates
        self.stats.dead_lettered += len(poison)
        return result

    def _rewind(self, records: dict[Any, list[Any]]) -> None:
        for tp, batch in records.items():
            if batch:
                self._consumer.seek(tp, min(m.offset for m in batch))

    def _dead_letter(
        self, message: Any, index: int | None, payload: bytes, exc: InvalidEvent
    ) -> None:
        body = {
            "reason": exc.reason,
            "kind": exc.kind,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "index": index,  # position in the message's event array, None for the message
            "payload": payload.decode("utf-8", errors="replace"),
        }
        self._dlq.send(
            self.config.dlq_topic,
            key=message.key,
            value=orjson.dumps(body),
            headers=[("reason", exc.reason.encode()), ("kind", exc.kind.encode())],
        )
        EVENTS_DEAD_LETTERED.labels(kind=exc.kind).inc()
        self.stats.reasons.append(exc.reason)
        logger.warning(
            "dead-lettered %s[%s]@%s#%s: %s",
            message.topic,
            message.partition,
            message.offset,
            index,
            exc.reason,
        )

    def _record_lag(self) -> None:
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:  # no fetch response for it yet
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=100)
            except Exception:  # a metric must never stop the consumer
                logger.debug("no position for %s", tp, exc_info=True)
                continue
            if position is not None:
                CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, highwater - position)
                )

    def close(self) -> None:
        for client in (self._consumer, self._dlq):
            if client is None:
                continue
            try:
                client.close()
            except Exception:  # closing on the way out must not hide the real error
                logger.debug("kafka client close failed", exc_info=True)
        self._consumer = self._dlq = None
