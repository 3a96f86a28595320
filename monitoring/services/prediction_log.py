"""Prediction log writes: events -> rows (idempotent), feedback, the Kafka consumer.

At-least-once in, exactly-once rows out: ``event_id`` is unique and every insert
ignores conflicts, so a replayed journal or a re-read Kafka batch cannot make a
duplicate. The consumer commits offsets only after the database transaction
committed; a crash in between re-reads the batch and the insert skips it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    close_old_connections,
    connection,
    transaction,
)
from django.utils import timezone
from prometheus_client import Counter, Gauge

from inference.event_schema import InvalidEvent, PredictionEvent, parse_event, unpack_message
from inference.request_ids import request_id_is_ours
from monitoring.models import PendingFeedback, PredictionLog
from phoenix.exceptions import InvalidInput, NotFound

logger = logging.getLogger(__name__)

EventT = TypeVar("EventT")

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

PENDING_FEEDBACK_TTL = timedelta(days=1)


# --- writing events -------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int
    invalid: int
    feedback_applied: int = 0
    # Valid events the database refused for their content (e.g. a NUL character in a
    # JSON string on PostgreSQL), with the reason; the rest of the batch is written.
    rejected: tuple[tuple[PredictionEvent, str], ...] = ()


def _row(event: PredictionEvent) -> PredictionLog:
    return PredictionLog(
        event_id=event.event_id,
        request_id=event.request_id,
        row_index=event.row_index,
        model_name=event.model,
        version=event.version,
        routed_by=event.routed_by,
        features=event.features,
        prediction=event.prediction,
        probabilities=event.probabilities,
        confidence=event.confidence,
        latency_ms=event.latency_ms,
        created_at=event.created_at,
    )


def prediction_log_write_events(
    *, events: Sequence[dict[str, Any] | PredictionEvent]
) -> WriteResult:
    """Insert one row per event in one bulk insert, skipping event ids already stored.

    Invalid events are logged and counted, not raised (the publisher produced
    them; the consumer validates before calling and dead-letters instead).
    Pending feedback for the written request ids is applied in the same transaction.
    """
    parsed: dict[Any, PredictionEvent] = {}
    reasons: list[str] = []
    for raw in events:
        try:
            event = raw if isinstance(raw, PredictionEvent) else parse_event(raw)
        except InvalidEvent as exc:
            reasons.append(exc.reason)
            continue
        parsed.setdefault(event.event_id, event)
    invalid = len(reasons)
    if reasons:
        # One line per batch, not per event: a broken publisher would flood the log.
        logger.warning("%d prediction event(s) skipped, e.g. %s", invalid, reasons[0])
    if not parsed:
        return WriteResult(inserted=0, duplicates=0, invalid=invalid)
    inserted, applied, rejected = _write_isolating(list(parsed.values()), _write_batch)
    if rejected:
        logger.error(
            "%d prediction event(s) rejected by the database, e.g. %s: %s",
            len(rejected),
            rejected[0][0].event_id,
            rejected[0][1],
        )
    duplicates = len(events) - invalid - inserted - len(rejected)
    return WriteResult(
        inserted=inserted,
        duplicates=duplicates,
        invalid=invalid,
        feedback_applied=applied,
        rejected=tuple(rejected),
    )


# Errors that belong to the data, not to the database being unavailable: retrying the
# same batch would fail forever, so the offending event is found and set aside.
_REJECTED_BY_DATABASE = (DataError, IntegrityError)


def _write_isolating(
    events: list[EventT], writer: Callable[[list[EventT]], tuple[int, int]]
) -> tuple[int, int, list[tuple[EventT, str]]]:
    """Write the batch; if the database refuses it for its data, bisect to the culprits.

    ``writer`` inserts a batch in one transaction and returns (inserted, feedback
    applied). Returns (inserted, feedback applied, [(rejected event, reason)]). One
    bad event costs about log2(batch) extra statements, and only when there is one.
    """
    try:
        inserted, applied = writer(events)
        return inserted, applied, []
    except _REJECTED_BY_DATABASE as exc:
        if len(events) == 1:
            reason = f"database rejected the event: {str(exc).strip().splitlines()[0]}"
            return 0, 0, [(events[0], reason)]
    middle = len(events) // 2
    first = _write_isolating(events[:middle], writer)
    second = _write_isolating(events[middle:], writer)
    return first[0] + second[0], first[1] + second[1], first[2] + second[2]


def _write_batch(events: list[PredictionEvent]) -> tuple[int, int]:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            inserted = _insert_postgresql(events)
        elif connection.vendor == "sqlite":
            inserted = _insert_sqlite(events)
        else:
            inserted = _insert_orm({e.event_id: e for e in events})
        applied = _pending_feedback_apply_for({e.request_id for e in events})
    return inserted, applied


def _pending_feedback_apply_for(request_ids: set[str]) -> int:
    # Pending feedback exists only with Kafka (early feedback); skip the IN query
    # over the batch's request ids when there is none at all.
    if not PendingFeedback.objects.exists():
        return 0
    return _pending_feedback_apply(request_ids=request_ids)


def _insert_orm(parsed: dict[Any, PredictionEvent]) -> int:
    existing = set(
        PredictionLog.objects.filter(event_id__in=list(parsed)).values_list("event_id", flat=True)
    )
    new_rows = [_row(e) for event_id, e in parsed.items() if event_id not in existing]
    # ignore_conflicts still matters: another writer may insert the same id between
    # the SELECT above and this INSERT.
    PredictionLog.objects.bulk_create(new_rows, ignore_conflicts=True)
    return len(new_rows)


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


def _insert_sqlite(events: list[PredictionEvent]) -> int:
    """Parsed events as rows for ``_insert_sqlite_rows``."""
    adapt_datetime = connection.ops.adapt_datetimefield_value
    return _insert_sqlite_rows(
        [
            (
                e.event_id.hex,
                e.request_id,
                e.row_index,
                e.model,
                e.version,
                e.routed_by,
                _json_text(e.features),
                _json_text(e.prediction),
                _json_text(e.probabilities),
                e.confidence,
                e.latency_ms,
                adapt_datetime(e.created_at),
            )
            for e in events
        ]
    )


def _insert_sqlite_rows(rows: list[tuple[Any, ...]]) -> int:
    """One ``executemany`` (the embedded default), skipping event ids already stored.

    Values are stored as Django stores them on SQLite (uuid as 32 hex digits, JSON as
    text, datetimes through the backend's own adapter), without the ORM's per-row
    SQL compilation. ``ON CONFLICT (event_id) DO NOTHING``, not ``INSERT OR IGNORE``:
    that would also skip a row breaking a NOT NULL constraint, silently. Returns how
    many rows were new.
    """
    table = connection.ops.quote_name(PredictionLog._meta.db_table)
    names = ", ".join(name for name, _ in _PG_COLUMNS)
    placeholders = ", ".join("%s" for _ in _PG_COLUMNS)
    sql = (
        f"INSERT INTO {table} ({names}) VALUES ({placeholders}) "  # noqa: S608
        "ON CONFLICT (event_id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return max(int(cursor.rowcount), 0)


def _sqlite_rows_published(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as ``_insert_sqlite`` makes them, from events this deployment built. A
    missing or malformed field becomes NULL, which the NOT NULL constraints refuse."""
    adapt_datetime = connection.ops.adapt_datetimefield_value
    stamps: dict[Any, Any] = {}  # the rows of one request share their timestamp

    def stored_at(value: Any) -> Any:
        if value not in stamps:
            try:
                stamps[value] = adapt_datetime(datetime.fromisoformat(value))
            except (TypeError, ValueError):
                stamps[value] = None
        return stamps[value]

    def hex_of(value: Any) -> str | None:
        if not isinstance(value, str) or len(value) != 36:
            return None
        return value.replace("-", "")

    get = dict.get
    return [
        (
            hex_of(get(e, "event_id")),
            get(e, "request_id"),
            get(e, "row_index"),
            get(e, "model"),
            get(e, "version"),
            get(e, "routed_by"),
            _json_text(get(e, "features")),
            _json_text(get(e, "prediction")),
            _json_text(get(e, "probabilities")),
            get(e, "confidence"),
            get(e, "latency_ms"),
            stored_at(get(e, "created_at")),
        )
        for e in events
    ]


_PG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "uuid"),
    ("request_id", "varchar"),
    ("row_index", "integer"),
    ("model_name", "varchar"),
    ("version", "varchar"),
    ("routed_by", "varchar"),
    ("features", "jsonb"),
    ("prediction", "jsonb"),
    ("probabilities", "jsonb"),
    ("confidence", "double precision"),
    ("latency_ms", "double precision"),
    ("created_at", "timestamptz"),
)


def _insert_postgresql(events: list[PredictionEvent]) -> int:
    """Parsed events as one JSON batch for ``_insert_postgresql_json``."""
    payload = orjson.dumps(
        [
            {
                "event_id": str(e.event_id),
                "request_id": e.request_id,
                "row_index": e.row_index,
                "model": e.model,
                "version": e.version,
                "routed_by": e.routed_by,
                "features": e.features,
                "prediction": e.prediction,
                "probabilities": e.probabilities,
                "confidence": e.confidence,
                "latency_ms": e.latency_ms,
                "created_at": e.created_at.isoformat(),
            }
            for e in events
        ],
        option=orjson.OPT_SERIALIZE_NUMPY,
        default=str,
    ).decode()
    return _insert_postgresql_json(payload)


def _insert_postgresql_json(payload: str) -> int:
    """One INSERT ... SELECT FROM jsonb_to_recordset(batch) ON CONFLICT DO NOTHING.

    ``payload``: a JSON array of events (the event's keys; "model" fills model_name).
    The ORM's bulk_create spends ~100 us of Python per row building SQL and adapting
    JSON fields; in the API process that runs under the GIL next to the requests.
    Here the batch is one parameter and PostgreSQL unpacks it. Returns how many rows
    were new.
    """
    table = connection.ops.quote_name(PredictionLog._meta.db_table)
    names = ", ".join(name for name, _ in _PG_COLUMNS)

    def key(column: str) -> str:
        return "model" if column == "model_name" else column

    # A JSON null becomes the jsonb value 'null'; the ORM stores None as SQL NULL.
    selected = ", ".join(
        f"NULLIF({key(name)}, 'null'::jsonb)" if kind == "jsonb" else key(name)
        for name, kind in _PG_COLUMNS
    )
    record = ", ".join(f"{key(name)} {kind}" for name, kind in _PG_COLUMNS)
    sql = (
        f"INSERT INTO {table} ({names}) "  # noqa: S608 - identifiers are ours
        f"SELECT {selected} FROM jsonb_to_recordset(%s::jsonb) AS t({record}) "
        "ON CONFLICT (event_id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [payload])
        return max(int(cursor.rowcount), 0)


def prediction_log_write_published(*, events: Sequence[dict[str, Any]]) -> WriteResult:
    """Insert events this deployment's publisher built (``event_schema.prediction_events``),
    for the embedded backend's flusher; ids already stored are skipped.

    No Python parse per event (what ``prediction_log_write_events`` does for messages
    from outside costs ~7 us an event, on the API process's GIL): on PostgreSQL the
    batch goes to the database as the JSON it already is, on SQLite as rows made
    straight from the dicts. The database's casts and constraints are the check; an
    event it refuses is set aside by the same bisection, logged and returned as
    rejected. Other databases take the parsing path.
    """
    if connection.vendor not in ("postgresql", "sqlite") or not events:
        return prediction_log_write_events(events=events)
    inserted, applied, refused = _write_isolating(list(events), _write_published_batch)
    rejected: list[tuple[PredictionEvent, str]] = []
    invalid = 0
    for raw, reason in refused:
        try:
            rejected.append((parse_event(raw), reason))
        except InvalidEvent as exc:
            invalid += 1
            reason = exc.reason
        logger.error("prediction event %s rejected: %s", raw.get("event_id"), reason)
    return WriteResult(
        inserted=inserted,
        duplicates=len(events) - inserted - len(refused),
        invalid=invalid,
        feedback_applied=applied,
        rejected=tuple(rejected),
    )


def _write_published_batch(events: list[dict[str, Any]]) -> tuple[int, int]:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            payload = orjson.dumps(events, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
            inserted = _insert_postgresql_json(payload.decode())
        else:
            inserted = _insert_sqlite_rows(_sqlite_rows_published(events))
        applied = _pending_feedback_apply_for({str(e.get("request_id")) for e in events})
    return inserted, applied


# --- feedback -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackResult:
    request_id: str
    status: str  # "recorded" (rows updated) or "pending" (rows not written yet)
    rows: int
    changed: int


def _actuals_for(rows: int, actual: Any) -> list[Any]:
    """One actual per row: a scalar for a one-row request, a list of ``rows`` for a batch."""
    if rows == 1:
        if isinstance(actual, list) and len(actual) == 1:
            return [actual[0]]
        return [actual]
    if not isinstance(actual, list) or len(actual) != rows:
        raise InvalidInput(
            f"this request scored {rows} rows; 'actual' must be a list of {rows} values",
            details={"rows": rows},
        )
    return list(actual)


def _feedback_apply(*, rows: list[PredictionLog], actual: Any) -> int:
    actuals = _actuals_for(len(rows), actual)
    now = timezone.now()
    changed = []
    for row, value in zip(rows, actuals, strict=True):
        if row.actual_at is not None and row.actual == value:
            continue  # a repeat: keep the first time it was recorded
        row.actual, row.actual_at = value, now
        changed.append(row)
    if changed:
        PredictionLog.objects.bulk_update(changed, ["actual", "actual_at"])
    return len(changed)


def _pending_feedback_apply(*, request_ids: Iterable[str]) -> int:
    pending = list(PendingFeedback.objects.filter(request_id__in=list(request_ids)))
    applied = 0
    for item in pending:
        rows = list(
            PredictionLog.objects.select_for_update()
            .filter(request_id=item.request_id)
            .order_by("row_index")
        )
        try:
            applied += _feedback_apply(rows=rows, actual=item.actual)
        except InvalidInput as exc:
            # Accepted before the rows were known; it cannot match them, so say so loudly.
            logger.warning("pending feedback for %s dropped: %s", item.request_id, exc.message)
        item.delete()
    return applied


def prediction_feedback_record(
    *, request_id: str, actual: Any, accept_pending: bool = False
) -> FeedbackResult:
    """Store ground truth on the rows of ``request_id``; repeating it changes nothing.

    A later, different value replaces the earlier one (a correction). When no row
    exists yet, ``accept_pending`` (the Kafka path, where the consumer may lag) and
    the id is one this deployment issued (its signature checks out), the feedback is
    kept and applied when the rows arrive: status "pending". An id that was never
    issued here (forged, mistyped, or a client-chosen v2 id) has no rows coming.
    Raises ``NotFound`` (no rows, and not accepted as pending) and ``InvalidInput``
    (a list whose length does not match the request's rows).
    """
    with transaction.atomic():
        rows = list(
            PredictionLog.objects.select_for_update()
            .filter(request_id=request_id)
            .order_by("row_index")
        )
        if rows:
            changed = _feedback_apply(rows=rows, actual=actual)
            return FeedbackResult(
                request_id=request_id, status="recorded", rows=len(rows), changed=changed
            )
        if not (accept_pending and request_id_is_ours(request_id)):
            raise NotFound(f"No prediction with request id {request_id!r}.")
        PendingFeedback.objects.update_or_create(
            request_id=request_id, defaults={"actual": actual, "received_at": timezone.now()}
        )
    return FeedbackResult(request_id=request_id, status="pending", rows=0, changed=0)


def pending_feedback_purge(*, older_than: timedelta = PENDING_FEEDBACK_TTL) -> int:
    """Delete pending feedback whose prediction never arrived; returns how many."""
    deleted, _ = PendingFeedback.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


# --- the Kafka consumer ---------------------------------------------------------------


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
