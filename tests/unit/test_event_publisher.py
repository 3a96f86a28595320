"""The publisher's buffer, spill and replay, against an in-memory sink (no DB, no broker)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from inference.event_schema import PredictionRecord
from inference.event_sinks import Item
from inference.events import EVENTS_SPILLED, EventPublisher, PublisherConfig
from inference.exceptions import SinkUnavailable

TOPIC = "inference-events"


class MemorySink:
    """Acknowledges batches into a list; can be switched off like an unreachable broker."""

    name = "memory"

    def __init__(self) -> None:
        self.received: list[Item] = []
        self.up = True
        self.gate = threading.Event()
        self.gate.set()

    def send(self, items: list[Item]) -> None:
        self.gate.wait(10)
        if not self.up:
            raise SinkUnavailable("down")
        self.received.extend(items)

    def close(self) -> None:
        pass


def _config(tmp_path: Path, **overrides: object) -> PublisherConfig:
    values: dict[str, object] = {
        "backend": "memory",
        "topic": TOPIC,
        "buffer_size": 100,
        "batch_size": 10,
        "flush_interval_s": 0.05,
        "journal_dir": tmp_path / "journal",
        "retry_max_s": 0.1,
    }
    values.update(overrides)
    return PublisherConfig(**values)  # type: ignore[arg-type]


def _items(start: int, stop: int) -> list[Item]:
    return [(TOPIC, {"n": i, "model": "m"}) for i in range(start, stop)]


def _numbers(sink: MemorySink) -> list[int]:
    return [int(event["n"]) for _, event in sink.received]


def _wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _spilled(reason: str) -> float:
    return EVENTS_SPILLED.labels(reason=reason)._value.get()


def test_flusher_ships_every_event_in_order(tmp_path: Path) -> None:
    sink = MemorySink()
    publisher = EventPublisher(_config(tmp_path), sink=sink)
    try:
        for start in range(0, 95, 5):
            publisher.publish(_items(start, start + 5))

        assert _wait_for(lambda: len(sink.received) == 95)
        assert _numbers(sink) == list(range(95))
    finally:
        publisher.stop()


def test_publish_does_not_start_a_thread_until_first_use(tmp_path: Path) -> None:
    publisher = EventPublisher(_config(tmp_path), sink=MemorySink())

    assert not publisher.running
    publisher.publish(_items(0, 1))
    assert publisher.running
    publisher.stop()


def test_buffer_full_spills_to_the_journal_without_blocking(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.gate.clear()  # the backend hangs: the flusher is stuck inside send()
    publisher = EventPublisher(_config(tmp_path, buffer_size=20), sink=sink)
    spilled_before = _spilled("buffer_full")
    try:
        slowest = 0.0
        for start in range(0, 200, 2):
            began = time.perf_counter()
            publisher.publish(_items(start, start + 2))
            slowest = max(slowest, time.perf_counter() - began)

        assert slowest < 0.5
        assert _spilled("buffer_full") - spilled_before > 0
        assert publisher.journal.size_bytes() > 0
        sink.gate.set()  # the backend answers again

        assert _wait_for(lambda: len(sink.received) >= 200)
        assert sorted(_numbers(sink)) == list(range(200))
    finally:
        sink.gate.set()
        publisher.stop()


def test_backend_down_journals_then_replays_in_order_exactly_once(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.up = False
    publisher = EventPublisher(_config(tmp_path), sink=sink)
    spilled_before = _spilled("backend_unavailable")
    try:
        publisher.publish(_items(0, 30))
        assert _wait_for(lambda: _spilled("backend_unavailable") - spilled_before >= 30)
        publisher.publish(_items(30, 40))
        assert _wait_for(lambda: _spilled("backend_unavailable") - spilled_before >= 40)
        assert sink.received == []

        sink.up = True
        publisher.publish(_items(40, 50))

        assert _wait_for(lambda: len(sink.received) == 50)
        assert _numbers(sink) == list(range(50))
        assert not publisher.journal.has_pending()
    finally:
        publisher.stop()


def test_restart_with_a_non_empty_journal_replays_it(tmp_path: Path) -> None:
    down = MemorySink()
    down.up = False
    first = EventPublisher(_config(tmp_path), sink=down)
    first.publish(_items(0, 12))
    first.stop()  # exit with the broker unreachable: the journal keeps the events
    assert first.journal.size_bytes() > 0

    sink = MemorySink()
    second = EventPublisher(_config(tmp_path), sink=sink)
    try:
        second.publish(_items(12, 13))

        assert _wait_for(lambda: len(sink.received) == 13)
        assert _numbers(sink) == list(range(13))
    finally:
        second.stop()


def test_stop_flushes_what_is_buffered(tmp_path: Path) -> None:
    sink = MemorySink()
    publisher = EventPublisher(_config(tmp_path, flush_interval_s=60, batch_size=1000), sink=sink)
    publisher.publish(_items(0, 7))

    publisher.stop()

    assert _numbers(sink) == list(range(7))


def test_an_unexpected_sink_error_keeps_the_batch(tmp_path: Path) -> None:
    class FlakySink(MemorySink):
        failures = 1

        def send(self, items: list[Item]) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("a bug, not an outage")
            super().send(items)

    sink = FlakySink()
    publisher = EventPublisher(_config(tmp_path), sink=sink)
    try:
        publisher.publish(_items(0, 20))

        assert _wait_for(lambda: len(sink.received) == 20)
        assert _numbers(sink) == list(range(20))
    finally:
        publisher.stop()


def _record(request: int, rows: int) -> PredictionRecord:
    return PredictionRecord(
        f"req-{request}",
        "m",
        "1",
        "single",
        [{"x": float(r)} for r in range(rows)],
        [r % 2 for r in range(rows)],
        [[0.5, 0.5]] * rows,
        [0.5] * rows,
        0.2,
        1_700_000_000.25,
    )


def test_scored_requests_become_one_event_per_row_in_order(tmp_path: Path) -> None:
    sink = MemorySink()
    publisher = EventPublisher(_config(tmp_path), sink=sink)
    try:
        for request in range(12):
            publisher.publish_prediction(_record(request, rows=1 + request % 3))

        expected = sum(1 + r % 3 for r in range(12))
        assert _wait_for(lambda: len(sink.received) == expected)
        events = [event for _, event in sink.received]
        assert [(e["request_id"], e["row_index"]) for e in events] == [
            (f"req-{r}", i) for r in range(12) for i in range(1 + r % 3)
        ]
        assert len({e["event_id"] for e in events}) == expected
        assert {e["created_at"] for e in events} == {"2023-11-14T22:13:20.250000+00:00"}
    finally:
        publisher.stop()


def test_buffer_counts_a_record_by_its_rows(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.gate.clear()  # nothing leaves the buffer
    publisher = EventPublisher(_config(tmp_path, buffer_size=20, batch_size=1000), sink=sink)
    spilled_before = _spilled("buffer_full")
    try:
        publisher.publish_prediction(_record(0, rows=15))
        publisher.publish_prediction(_record(1, rows=6))  # 21 > 20: spilled whole

        assert publisher.status()["buffer_depth"] == 15
        assert _spilled("buffer_full") - spilled_before == 6
    finally:
        sink.gate.set()
        publisher.stop()
    # The spilled record's events went through the journal and arrive all the same.
    delivered = sorted((e["request_id"], e["row_index"]) for _, e in sink.received)
    assert delivered == [("req-0", i) for i in range(15)] + [("req-1", i) for i in range(6)]


def test_a_full_batch_wakes_the_flusher_for_whole_batches_only(tmp_path: Path) -> None:
    sink = MemorySink()
    sends: list[int] = []
    original_send = sink.send

    def counting_send(items: list[Item]) -> None:
        sends.append(len(items))
        original_send(items)

    sink.send = counting_send  # type: ignore[method-assign]
    # An interval far longer than the first check below takes, even on a loaded machine.
    publisher = EventPublisher(_config(tmp_path, flush_interval_s=2.0), sink=sink)
    try:
        publisher.publish(_items(0, 25))  # two whole batches of 10 and 5 left over

        assert _wait_for(lambda: len(sink.received) >= 20)
        time.sleep(0.1)
        assert sends == [10, 10]
        # The rest waits for the interval, not shipped as a small extra send.
        assert _wait_for(lambda: len(sink.received) == 25)
        assert sends == [10, 10, 5]
    finally:
        publisher.stop()
