"""Building prediction events from a scored request's record (pure: no Django)."""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime

import pytest

from inference.event_schema import (
    InvalidEvent,
    PredictionRecord,
    _timestamps,
    event_ids_new,
    parse_event,
    prediction_events,
)


def test_event_ids_are_distinct_canonical_version_4_uuids() -> None:
    ids = event_ids_new(1000) + event_ids_new(1) + event_ids_new(1000)

    assert len(set(ids)) == 2001
    parsed = [uuid.UUID(i) for i in ids]
    assert {u.version for u in parsed} == {4}
    assert {u.variant for u in parsed} == {uuid.RFC_4122}
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))


def test_a_forked_child_draws_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids go back through the pipe
        os.close(read)
        os.write(write, ",".join(event_ids_new(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_ids = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent_ids = event_ids_new(3)

    assert len(child_ids) == 3
    assert not set(child_ids) & set(parent_ids)
    # Not just other counters: another random prefix.
    assert child_ids[0][:24] != parent_ids[0][:24]


def test_timestamps_read_as_datetime_isoformat_would_write_them() -> None:
    rng = random.Random(3)
    stamps = [rng.uniform(0, 2e9) for _ in range(20_000)] + [1_700_000_000.0, 1.9999999]

    for stamp in stamps:
        assert _timestamps.iso(stamp) == datetime.fromtimestamp(stamp, UTC).isoformat()


def _record(rows: list[dict[str, float]], predictions: list[int]) -> PredictionRecord:
    return PredictionRecord(
        "req-1",
        "credit",
        "3",
        "ab",
        rows,
        predictions,
        [[0.9, 0.1], [0.2, 0.8]][: len(predictions)],
        [0.9, 0.8][: len(predictions)],
        0.42,
        1_700_000_000.5,
    )


def test_one_event_per_row_that_the_consumer_accepts() -> None:
    record = _record([{"x": 1.0}, {"x": 2.0}], [0, 1])

    events = prediction_events(record)

    assert [e["row_index"] for e in events] == [0, 1]
    assert [e["features"] for e in events] == [{"x": 1.0}, {"x": 2.0}]
    assert [e["probabilities"] for e in events] == [[0.9, 0.1], [0.2, 0.8]]
    parsed = [parse_event(e) for e in events]
    assert {(p.model, p.version, p.routed_by, p.request_id) for p in parsed} == {
        ("credit", "3", "ab", "req-1")
    }
    assert parsed[0].created_at == datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=UTC)
    assert parsed[1].confidence == 0.8


def test_a_single_row_event_matches_the_general_shape() -> None:
    one = prediction_events(_record([{"x": 1.0}], [0]))[0]
    first_of_two = prediction_events(_record([{"x": 1.0}, {"x": 2.0}], [0, 1]))[0]

    assert one.keys() == first_of_two.keys()
    assert {k: v for k, v in one.items() if k != "event_id"} == {
        k: v for k, v in first_of_two.items() if k != "event_id"
    }


def test_rows_without_named_features_log_empty_features() -> None:
    # Raw tensors through the Open Inference Protocol: predictions but no feature dicts.
    assert [e["features"] for e in prediction_events(_record([], [0, 1]))] == [{}, {}]
    assert prediction_events(_record([], [1]))[0]["features"] == {}


def test_ids_past_65536_in_one_batch_stay_distinct() -> None:
    many = event_ids_new(70_000)

    assert len(set(many)) == 70_000
    assert all(str(uuid.UUID(i)) == i for i in many[65_530:65_540])


def test_events_carry_the_api_key_of_the_request_and_the_consumer_checks_it() -> None:
    record = _record([{"x": 1.0}, {"x": 2.0}], [0, 1])._replace(api_key_id=42)

    events = prediction_events(record)
    single = prediction_events(_record([{"x": 1.0}], [0])._replace(api_key_id=7))[0]

    assert [parse_event(e).api_key_id for e in events] == [42, 42]
    assert parse_event(single).api_key_id == 7
    assert parse_event({**single, "api_key_id": None}).api_key_id is None
    unkeyed = {k: v for k, v in single.items() if k != "api_key_id"}
    assert parse_event(unkeyed).api_key_id is None  # events from before keys were logged
    for bad in ("7", -1, True, 1.5):
        with pytest.raises(InvalidEvent, match="api_key_id"):
            parse_event({**single, "api_key_id": bad})
