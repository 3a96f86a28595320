"""Prediction log writes: events -> rows, idempotent.

At-least-once in, exactly-once rows out: ``event_id`` is unique and every insert
ignores conflicts, so a replayed journal or a re-read Kafka batch cannot make a
duplicate. Two paths in: ``prediction_log_write_events`` for messages from outside
(the Kafka consumer, ``monitoring.services.event_consumer``), parsed and checked one
by one, and ``prediction_log_write_published`` for the embedded backend's flusher
(registered with ``inference.event_sinks`` at app ready). Pending feedback for the
written request ids is applied in the same transaction (``monitoring.services.feedback``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson
from django.db import DataError, IntegrityError, connection, transaction

from inference.event_schema import InvalidEvent, PredictionEvent, parse_event
from monitoring.models import PendingFeedback, PredictionLog
from monitoring.services.feedback import pending_feedback_apply

logger = logging.getLogger(__name__)

EventT = TypeVar("EventT")


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
        api_key_id=event.api_key_id,
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
    return pending_feedback_apply(request_ids=request_ids)


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
                e.api_key_id,
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
            get(e, "api_key_id"),
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
    ("api_key_id", "bigint"),
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
                "api_key_id": e.api_key_id,
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
