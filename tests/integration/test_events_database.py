"""The embedded backend: prediction events -> PredictionLog rows with no broker at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from inference.events import EventPublisher, PublisherConfig
from monitoring.models import PredictionLog
from monitoring.services.prediction_log import (
    prediction_log_write_events,
    prediction_log_write_published,
)

TOPIC = "inference-events"

# The service for events from outside (Kafka: parsed and checked one by one) and the
# embedded backend's fast path for events its own publisher built: same rows.
WRITERS = pytest.mark.parametrize(
    "write",
    [prediction_log_write_events, prediction_log_write_published],
    ids=["parsed", "published"],
)


def make_events(
    n: int, *, request_id: str | None = None, model: str = "credit"
) -> list[dict[str, Any]]:
    request_id = request_id or uuid.uuid4().hex
    return [
        {
            "event_id": str(uuid.uuid4()),
            "request_id": request_id,
            "row_index": i,
            "model": model,
            "version": "1",
            "routed_by": "single",
            "features": {"x1": float(i), "x2": 0.5},
            "prediction": i % 2,
            "probabilities": [0.3, 0.7],
            "confidence": 0.7,
            "latency_ms": 0.25,
            "created_at": datetime.now(UTC).isoformat(),
        }
        for i in range(n)
    ]


def _config(tmp_path: Path) -> PublisherConfig:
    return PublisherConfig(
        backend="database",
        topic=TOPIC,
        buffer_size=1000,
        batch_size=50,
        flush_interval_s=0.05,
        journal_dir=tmp_path / "journal",
    )


@pytest.mark.django_db(transaction=True)
def test_database_backend_writes_exactly_one_row_per_event(tmp_path: Path) -> None:
    publisher = EventPublisher(_config(tmp_path))
    events = make_events(120)

    for start in range(0, 120, 4):
        publisher.publish([(TOPIC, e) for e in events[start : start + 4]])
    publisher.stop()

    assert PredictionLog.objects.count() == 120
    row = PredictionLog.objects.get(event_id=events[7]["event_id"])
    assert row.model_name == "credit"
    assert row.row_index == 7
    assert row.features == {"x1": 7.0, "x2": 0.5}
    assert row.probabilities == [0.3, 0.7]


@pytest.mark.django_db(transaction=True)
def test_without_a_registered_writer_the_database_sink_journals_until_one_is_back(
    tmp_path: Path,
) -> None:
    from inference.event_sinks import database_writer_register

    registered = database_writer_register(None)
    assert registered is prediction_log_write_published  # monitoring's AppConfig.ready
    publisher = EventPublisher(_config(tmp_path))
    try:
        publisher.publish([(TOPIC, e) for e in make_events(3)])
        publisher.flush()
        assert PredictionLog.objects.count() == 0
        assert publisher.journal.has_pending()
    finally:
        database_writer_register(registered)
        publisher.stop()

    restarted = EventPublisher(_config(tmp_path))
    restarted.publish([(TOPIC, e) for e in make_events(1)])
    restarted.stop()

    assert PredictionLog.objects.count() == 4
    assert not restarted.journal.has_pending()


@pytest.mark.django_db
def test_writing_the_same_events_twice_keeps_one_row_each() -> None:
    events = make_events(10)

    first = prediction_log_write_events(events=events)
    second = prediction_log_write_events(events=events + events[:3])

    assert (first.inserted, first.duplicates) == (10, 0)
    assert (second.inserted, second.duplicates) == (0, 13)
    assert PredictionLog.objects.count() == 10


@pytest.mark.django_db
def test_invalid_events_are_counted_not_written() -> None:
    events = make_events(2)
    del events[1]["model"]

    result = prediction_log_write_events(events=events)

    assert (result.inserted, result.invalid) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_journal_left_by_a_dead_process_is_written_after_restart(tmp_path: Path) -> None:
    from inference.event_journal import EventJournal

    events = make_events(25)
    dead = EventJournal(tmp_path / "journal")
    dead.append([{"t": TOPIC, "e": e} for e in events])
    assert dead._active is not None
    dead._active.close()  # the process was killed: nothing sealed, lock released

    restarted = EventPublisher(_config(tmp_path))
    restarted.publish([(TOPIC, e) for e in make_events(1)])
    restarted.stop()

    assert PredictionLog.objects.count() == 26
    assert PredictionLog.objects.filter(event_id__in=[e["event_id"] for e in events]).count() == 25
    assert not restarted.journal.has_pending()


@pytest.mark.django_db
def test_readiness_reports_the_event_bus(client: Any) -> None:
    body = client.get("/readyz").json()

    component = body["components"]["event_bus"]
    assert component["status"] == "ok"
    assert component["backend"] == "database"


@WRITERS
@pytest.mark.django_db
def test_rows_keep_every_field_and_null_stays_null(write: Any) -> None:
    events = make_events(2)
    events[1]["probabilities"] = None
    events[1]["confidence"] = None

    write(events=events)

    full = PredictionLog.objects.get(event_id=events[0]["event_id"])
    assert full.probabilities == [0.3, 0.7]
    assert full.confidence == 0.7
    assert full.created_at.isoformat() == events[0]["created_at"]
    assert PredictionLog.objects.filter(probabilities__isnull=True).count() == 1
    assert PredictionLog.objects.filter(confidence__isnull=True).count() == 1


@WRITERS
def test_an_event_postgresql_refuses_is_set_aside_and_the_rest_written(
    postgres_db: None, write: Any
) -> None:
    events = make_events(9)
    events[4]["features"] = {"note": "nul \u0000 inside"}  # jsonb cannot store U+0000

    result = write(events=events)

    assert result.inserted == 8
    assert [str(event.event_id) for event, _ in result.rejected] == [events[4]["event_id"]]
    assert "database rejected" in result.rejected[0][1]
    assert PredictionLog.objects.count() == 8


@pytest.mark.django_db
def test_published_events_skip_ids_already_stored_and_repeated_in_the_batch() -> None:
    events = make_events(6)
    prediction_log_write_published(events=events[:2])

    result = prediction_log_write_published(events=[*events, events[3]])

    assert (result.inserted, result.duplicates) == (4, 3)
    assert PredictionLog.objects.count() == 6
    row = PredictionLog.objects.get(event_id=events[5]["event_id"])
    assert (row.model_name, row.row_index, row.features) == ("credit", 5, {"x1": 5.0, "x2": 0.5})


def test_a_published_event_with_a_too_long_request_id_is_rejected_alone(
    postgres_db: None,
) -> None:
    events = make_events(5)
    events[2]["request_id"] = "r" * 65  # a client's id longer than the column

    result = prediction_log_write_published(events=events)

    assert result.inserted == 4
    assert result.invalid + len(result.rejected) == 1
    assert PredictionLog.objects.count() == 4


@pytest.mark.django_db
def test_both_writers_store_the_same_row_for_the_same_event() -> None:
    parsed_events = make_events(3)
    parsed_events[2]["probabilities"] = None
    published_events = [{**e, "event_id": str(uuid.uuid4())} for e in parsed_events]

    prediction_log_write_events(events=parsed_events)
    prediction_log_write_published(events=published_events)

    fields = [f.name for f in PredictionLog._meta.fields if f.name not in ("id", "event_id")]

    def stored(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        ids = [e["event_id"] for e in events]
        rows = {
            str(r["event_id"]): r for r in PredictionLog.objects.filter(event_id__in=ids).values()
        }
        return [tuple(rows[i][f] for f in fields) for i in ids]

    assert stored(published_events) == stored(parsed_events)


@pytest.mark.django_db
def test_a_published_event_missing_a_field_is_set_aside_not_written_blank() -> None:
    events = make_events(4)
    del events[1]["created_at"]

    result = prediction_log_write_published(events=events)

    assert result.inserted == 3
    assert result.invalid + len(result.rejected) == 1
    assert not PredictionLog.objects.filter(event_id=events[1]["event_id"]).exists()
