"""The event journal and schema: pure modules, no Django database."""

from __future__ import annotations

import fcntl
import uuid
from pathlib import Path

import orjson
import pytest

from inference.event_journal import EventJournal
from inference.event_schema import (
    InvalidEvent,
    encode_event,
    pack_events,
    parse_event,
    unpack_message,
)


def _records(start: int, stop: int) -> list[dict[str, object]]:
    return [{"t": "inference-events", "e": {"n": i}} for i in range(start, stop)]


def _collect(journal: EventJournal) -> list[int]:
    seen: list[int] = []
    journal.replay(lambda batch: seen.extend(int(r["e"]["n"]) for r in batch), batch_size=3)  # type: ignore[index]
    return seen


def test_replay_sends_everything_in_order_then_empties_the_journal(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    journal.append(_records(0, 5))
    journal.append(_records(5, 8))

    assert _collect(journal) == list(range(8))
    assert not journal.has_pending()
    assert _collect(journal) == []


def test_failed_send_keeps_the_segment_for_the_next_replay(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    journal.append(_records(0, 4))

    def broker_down(batch: list[dict[str, object]]) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        journal.replay(broker_down)

    assert journal.has_pending()
    assert _collect(journal) == [0, 1, 2, 3]


def test_spills_after_a_replay_started_go_to_a_new_segment(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    journal.append(_records(0, 2))
    seen: list[int] = []

    def send(batch: list[dict[str, object]]) -> None:
        seen.extend(int(r["e"]["n"]) for r in batch)  # type: ignore[index]
        journal.append(_records(100, 101))  # a request spills while we replay

    journal.replay(send)

    assert seen == [0, 1]
    assert _collect(journal) == [100]


def test_a_new_process_replays_what_a_dead_one_left(tmp_path: Path) -> None:
    dead = EventJournal(tmp_path)
    dead.append(_records(0, 3))
    assert dead._active is not None
    dead._active.close()  # the process died: its lock is gone, the file stays unsealed

    restarted = EventJournal(tmp_path)

    assert restarted.has_pending()
    assert _collect(restarted) == [0, 1, 2]
    assert list(tmp_path.glob("*.jsonl")) == []


def test_a_live_writers_active_segment_is_not_replayed_by_another(tmp_path: Path) -> None:
    live = EventJournal(tmp_path)
    live.append(_records(0, 2))
    other = EventJournal(tmp_path)

    assert _collect(other) == []
    assert _collect(live) == [0, 1]


def test_a_new_active_segment_is_never_listed_before_it_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A replay that lists the folder while a writer creates its segment must not see an
    # unlocked "active" file: it would lock it as a dead process's, and the writer's own
    # lock (and the events it was spilling) would fail.
    writer = EventJournal(tmp_path)
    replayer = EventJournal(tmp_path)
    listed_at_lock: list[list[str]] = []
    real_flock = fcntl.flock

    def flock_after_a_listing(fd: int, operation: int) -> None:
        listed_at_lock.append([p.name for p in replayer.pending_segments()])
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_a_listing)
    writer.append(_records(0, 2))
    monkeypatch.undo()

    assert listed_at_lock == [[]]
    assert _collect(replayer) == []  # the live writer's segment is its own
    assert _collect(writer) == [0, 1]


def test_a_torn_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path)
    journal.append(_records(0, 2))
    journal.seal()
    segment = next(tmp_path.glob("sealed-*.jsonl"))
    with segment.open("ab") as handle:
        handle.write(b'{"t": "inference-events", "e": {"n"')  # crash mid-write

    sent: list[dict[str, object]] = []
    result = journal.replay(sent.extend)

    assert result.records == 2
    assert result.corrupt_lines == 1


def _event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "request_id": "req-1",
        "row_index": 0,
        "model": "credit",
        "version": "1",
        "routed_by": "single",
        "features": {"x1": 1.0},
        "prediction": 1,
        "probabilities": [0.2, 0.8],
        "confidence": 0.8,
        "latency_ms": 0.4,
        "created_at": "2026-11-23T08:00:00+00:00",
    }
    event.update(overrides)
    return event


def test_parse_event_round_trips_an_encoded_event() -> None:
    event = _event()

    parsed = parse_event(encode_event(event))

    assert str(parsed.event_id) == event["event_id"]
    assert parsed.model == "credit"
    assert parsed.confidence == 0.8
    assert parsed.created_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "kind", "reason_part"),
    [
        (b"not json at all", "not_json", "not JSON"),
        (b"[1, 2]", "not_object", "not a JSON object"),
        (encode_event({"event_id": str(uuid.uuid4())}), "missing_fields", "request_id"),
        (encode_event(_event(event_id="nope")), "invalid_field", "UUID"),
        (encode_event(_event(created_at="yesterday")), "invalid_field", "ISO 8601"),
        (encode_event(_event(confidence="high")), "invalid_field", "confidence"),
    ],
)
def test_parse_event_names_the_reason_for_a_poison_message(
    raw: bytes, kind: str, reason_part: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)

    assert caught.value.kind == kind
    assert reason_part in caught.value.reason


def test_pack_events_makes_json_arrays_under_the_size_limit() -> None:
    encoded = [encode_event(_event()) for _ in range(50)]
    limit = len(encoded[0]) * 10 + 20

    messages, too_large = pack_events(encoded, max_bytes=limit)

    assert too_large == 0
    assert len(messages) == 5
    assert all(len(m) <= limit for m in messages)
    unpacked = [event for m in messages for event in unpack_message(m)[0]]
    assert [e["event_id"] for e in unpacked] == [orjson.loads(e)["event_id"] for e in encoded]


def test_pack_events_counts_an_event_too_large_for_any_message() -> None:
    small, huge = encode_event(_event()), encode_event(_event(features={"x": "y" * 5000}))

    messages, too_large = pack_events([small, huge, small], max_bytes=1000)

    assert too_large == 1
    assert len(unpack_message(messages[0])[0]) == 2


def test_unpack_message_takes_an_array_or_one_event() -> None:
    event = _event()

    assert unpack_message(encode_event([event])) == ([event], True)
    assert unpack_message(encode_event(event)) == ([event], False)
    with pytest.raises(InvalidEvent):
        unpack_message(b"{oops")
