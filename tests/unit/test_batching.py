"""MicroBatcher: order kept, errors per request, the delay bound, fallbacks (no Django).

No test here depends on how fast the machine is. Requests are made concurrent by
holding the fake model inside a run (a gate only the test opens), batches fill or
are sequenced by watching ``queued``, and every time bound is either a delay the
batcher must have waited (a lower bound it cannot undercut) or a wide margin against
a delay of 30 s that a correct batcher never waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from inference.batching import BatchingPolicy, Feeds, MicroBatcher, Outputs

BLOCK = -1.0  # a row holding this value keeps its model run waiting at the gate
NEVER = 30.0  # a delay no test may wait out
WIDE = 10.0  # seconds: generous for anything that should happen "at once"


class FakeModel:
    """Doubles ``x`` and sums its rows; records every run; blocks on BLOCK rows."""

    def __init__(self, *, scalar: bool = False, fixed_rows: int | None = None) -> None:
        self.scalar, self.fixed_rows = scalar, fixed_rows
        self.runs: list[tuple[float, np.ndarray]] = []  # (monotonic start, x)
        self.gate = threading.Event()
        self.blocked = 0

    def __call__(self, feeds: Feeds) -> Outputs:
        x = feeds["x"]
        self.runs.append((time.monotonic(), x.copy()))
        if (x == BLOCK).any():
            self.blocked += 1
            assert self.gate.wait(WIDE)
        if np.isnan(x).any():
            raise ValueError("bad row")
        if self.fixed_rows is not None and len(x) != self.fixed_rows:
            raise RuntimeError(f"this model takes exactly {self.fixed_rows} row(s)")
        if self.scalar:
            return [x * 2, np.float32(x.sum())]
        return [x * 2, x.sum(axis=1)]

    def run_sizes(self) -> list[int]:
        return [len(x) for _, x in self.runs]


class Call:
    """``batcher.run(feeds)`` on a thread of its own."""

    def __init__(self, batcher: MicroBatcher, feeds: Feeds) -> None:
        self.feeds = feeds
        self.outputs: Outputs | None = None
        self.error: Exception | None = None
        self.submitted = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(batcher,), daemon=True)
        self.thread.start()

    def _run(self, batcher: MicroBatcher) -> None:
        try:
            self.outputs = batcher.run(self.feeds)
        except Exception as error:
            self.error = error

    def result(self) -> Outputs:
        self.thread.join(WIDE)
        assert not self.thread.is_alive(), "the request is still waiting"
        if self.error is not None:
            raise self.error
        assert self.outputs is not None
        return self.outputs

    @property
    def finished(self) -> bool:
        return not self.thread.is_alive()


def rows(*values: float, width: int = 3, dtype: Any = np.float32) -> Feeds:
    """One row per value, every column holding it."""
    return {"x": np.array([[v] * width for v in values], dtype=dtype)}


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WIDE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def hold_busy(batcher: MicroBatcher, model: FakeModel) -> Call:
    """A run in progress (held at the gate), so that new requests gather."""
    before = model.blocked
    call = Call(batcher, rows(BLOCK))
    wait_until(lambda: model.blocked == before + 1)
    return call


def assert_answers(call: Call) -> None:
    """The request got its own rows of every output, and only those."""
    x = call.feeds["x"]
    doubled, sums = call.result()
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(sums, x.sum(axis=1))


@pytest.fixture
def model() -> Iterator[FakeModel]:
    model = FakeModel()
    yield model
    model.gate.set()  # never leave a thread at the gate


def test_concurrent_requests_share_one_run_and_each_gets_its_own_rows(model: FakeModel) -> None:
    sizes: list[tuple[int, int]] = []
    batcher = MicroBatcher(
        model, max_batch_rows=6, max_delay_s=NEVER, on_batch=lambda r, n: sizes.append((r, n))
    )
    busy = hold_busy(batcher, model)

    calls = [Call(batcher, rows(float(i))) for i in range(6)]

    for call in calls:
        assert_answers(call)
    assert model.run_sizes() == [1, 6]
    assert sizes == [(1, 1), (6, 6)]
    assert not busy.finished  # the batch filled and ran at once: nobody waited out the delay
    model.gate.set()
    busy.result()


def test_multi_row_requests_are_concatenated_in_arrival_order(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=6, max_delay_s=NEVER)
    hold_busy(batcher, model)

    first = Call(batcher, rows(1, 2, 3))
    wait_until(lambda: batcher.queued == 1)
    second = Call(batcher, rows(4))
    wait_until(lambda: batcher.queued == 2)
    third = Call(batcher, rows(5, 6))

    for call in (first, second, third):
        assert_answers(call)
    _, batched = model.runs[-1]
    np.testing.assert_array_equal(batched, rows(1, 2, 3, 4, 5, 6)["x"])


def test_request_that_would_overflow_dispatches_the_gathering_batch(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=4, max_delay_s=NEVER)
    hold_busy(batcher, model)
    first = Call(batcher, rows(1, 2, 3))
    wait_until(lambda: batcher.queued == 1)

    second = Call(batcher, rows(4, 5))

    assert_answers(first)  # dispatched when the second could not fit
    wait_until(lambda: batcher.queued == 1)  # the second leads the next batch
    third = Call(batcher, rows(6, 7))
    assert_answers(second)
    assert_answers(third)
    assert model.run_sizes()[1:] == [3, 4]


def test_request_as_large_as_a_batch_runs_alone_at_once(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=2, max_delay_s=NEVER)
    hold_busy(batcher, model)

    assert_answers(Call(batcher, rows(1, 2, 3)))
    assert batcher.queued == 0


def test_idle_batcher_runs_a_request_at_once(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=32, max_delay_s=NEVER)

    started = time.monotonic()
    doubled, _ = batcher.run(rows(1))

    assert time.monotonic() - started < WIDE
    np.testing.assert_array_equal(doubled, rows(2)["x"])
    assert model.run_sizes() == [1]


def test_gathering_stops_when_no_other_run_is_in_progress(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=32, max_delay_s=NEVER)
    busy = hold_busy(batcher, model)
    waiting = Call(batcher, rows(1))
    wait_until(lambda: batcher.queued == 1)

    model.gate.set()

    busy.result()
    assert_answers(waiting)  # well before the 30 s delay


def test_slow_batch_never_delays_the_next_beyond_the_bound(model: FakeModel) -> None:
    bound = 0.05
    batcher = MicroBatcher(model, max_batch_rows=2, max_delay_s=bound)
    slow_alone = hold_busy(batcher, model)
    slow_batch = [Call(batcher, rows(BLOCK)), Call(batcher, rows(BLOCK))]
    wait_until(lambda: model.blocked == 2)  # a batch of two, stuck in the model

    late = Call(batcher, rows(1))

    assert_answers(late)  # while both slow runs are still held at the gate
    assert not slow_alone.finished
    assert not any(call.finished for call in slow_batch)
    started, _ = model.runs[-1]
    # It waited for company (nobody came) exactly as long as the bound, not for the
    # slow runs: the upper margin is wide, the slow runs never end without the test.
    assert bound <= started - late.submitted < bound + WIDE
    model.gate.set()
    for call in (slow_alone, *slow_batch):
        call.result()
    assert model.run_sizes() == [1, 2, 1]


def test_bad_row_fails_only_its_own_request(model: FakeModel) -> None:
    sizes: list[tuple[int, int]] = []
    batcher = MicroBatcher(
        model, max_batch_rows=4, max_delay_s=NEVER, on_batch=lambda r, n: sizes.append((r, n))
    )
    hold_busy(batcher, model)

    good = [Call(batcher, rows(float(i))) for i in range(3)]
    bad = Call(batcher, rows(float("nan")))

    for call in good:
        assert_answers(call)
    with pytest.raises(ValueError, match="bad row"):
        bad.result()
    # The batch failed, then each request ran alone; batching stays on.
    assert model.run_sizes() == [1, 4, 1, 1, 1, 1]
    assert sizes == [(1, 1), (4, 4), (1, 1), (1, 1), (1, 1), (1, 1)]
    assert batcher.batchable


def test_model_that_cannot_take_batches_stops_batching_for_good() -> None:
    model = FakeModel(fixed_rows=1)
    reasons: list[str] = []
    batcher = MicroBatcher(
        model, max_batch_rows=3, max_delay_s=NEVER, on_unbatchable=reasons.append
    )
    try:
        hold_busy(batcher, model)
        calls = [Call(batcher, rows(float(i))) for i in range(3)]
        for call in calls:
            assert_answers(call)

        assert not batcher.batchable
        assert reasons == ["a batch failed whose every request succeeds alone"]
        after = Call(batcher, rows(7))  # the model is still busy: it would have gathered
        assert_answers(after)
        assert model.run_sizes() == [1, 3, 1, 1, 1, 1]
    finally:
        model.gate.set()


def test_outputs_not_split_by_rows_fall_back_to_requests_alone() -> None:
    model = FakeModel(scalar=True)
    reasons: list[str] = []
    batcher = MicroBatcher(
        model, max_batch_rows=2, max_delay_s=NEVER, on_unbatchable=reasons.append
    )
    try:
        hold_busy(batcher, model)
        calls = [Call(batcher, rows(1)), Call(batcher, rows(2))]

        for call in calls:
            doubled, total = call.result()
            np.testing.assert_array_equal(doubled, call.feeds["x"] * 2)
            assert total == call.feeds["x"].sum()  # its own scalar, not the batch's
        assert not batcher.batchable
        assert reasons == ["an output's first dimension is not the batch's row count"]
        assert model.run_sizes() == [1, 2, 1, 1]
    finally:
        model.gate.set()


def test_feeds_of_other_shapes_or_dtypes_never_share_a_batch(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=2, max_delay_s=NEVER)
    hold_busy(batcher, model)
    kinds: list[dict[str, Any]] = [
        {"dtype": np.float32, "width": 3},
        {"dtype": np.float64, "width": 3},
        {"dtype": np.float32, "width": 4},
    ]

    calls = [Call(batcher, rows(float(i), **kind)) for i in range(2) for kind in kinds]

    for call in calls:
        assert_answers(call)
    batched = [x for _, x in model.runs[1:]]
    assert sorted((x.dtype.str, x.shape) for x in batched) == sorted(
        (np.dtype(kind["dtype"]).str, (2, kind["width"])) for kind in kinds
    )


def test_inputs_that_disagree_on_rows_run_alone(model: FakeModel) -> None:
    batcher = MicroBatcher(model, max_batch_rows=32, max_delay_s=NEVER)
    hold_busy(batcher, model)

    odd = Call(batcher, {**rows(1, 2), "y": np.ones((3, 1), np.float32)})

    assert_answers(odd)  # at once, though the model is busy
    assert model.run_sizes() == [1, 2]


def test_close_dispatches_the_gathering_batch_and_later_calls_run_alone(
    model: FakeModel,
) -> None:
    batcher = MicroBatcher(model, max_batch_rows=32, max_delay_s=NEVER)
    hold_busy(batcher, model)
    waiting = Call(batcher, rows(1))
    wait_until(lambda: batcher.queued == 1)

    batcher.close()

    assert_answers(waiting)
    assert_answers(Call(batcher, rows(2)))  # still busy, yet no gathering
    assert not batcher.batchable


def test_batching_policy_defaults_and_delay_in_seconds() -> None:
    policy = BatchingPolicy()

    assert (policy.max_rows, policy.max_delay_ms) == (32, 1.0)
    assert policy.max_delay_s == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("max_rows", "max_delay_ms"), [(0, 1.0), (1025, 1.0), (32, 0.01), (32, 50.5)]
)
def test_batching_policy_refuses_values_outside_the_bounds(
    max_rows: int, max_delay_ms: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        BatchingPolicy(max_rows=max_rows, max_delay_ms=max_delay_ms)


def test_batcher_for_policy_batches_up_to_its_rows(model: FakeModel) -> None:
    batcher = MicroBatcher.for_policy(model, BatchingPolicy(max_rows=2, max_delay_ms=50.0))
    hold_busy(batcher, model)

    calls = [Call(batcher, rows(1)), Call(batcher, rows(2))]

    for call in calls:
        assert_answers(call)
    assert model.run_sizes()[1:] == [2]
