"""Micro-batching of concurrent requests to one model version (no Django).

A ``MicroBatcher`` wraps one model's run function. Any number of threads call
``run(feeds)`` at once; requests whose feeds agree in input names, dtypes and
every dimension but the first are concatenated along axis 0, the model runs once,
and each caller gets its own rows of every output back, in order.

Why threads and no dispatcher thread of its own: the predict service is
synchronous and runs on pool threads, so each request already owns a thread that
can wait. The first request of a batch (its leader) gathers the others and runs
the batch on its own thread; a slow batch therefore occupies only its own callers'
threads, and the next batch gathers and starts meanwhile: no request waits behind
another batch, only up to ``max_delay_s`` for company.

When a request waits. It joins a batch already gathering for the same shape. If
there is none, it waits for company only while some other run of this model is in
progress (that is when requests pile up); an idle batcher runs a request at once,
so one client never pays the delay. A gathering leader dispatches at the first of:

- ``max_batch_rows`` rows queued (a request that would overflow the batch
  dispatches it and starts the next one);
- ``max_delay_s`` after the leader arrived (the bound: no request waits longer in
  the queue before its batch starts running);
- no run of this model in progress any more (nothing is coming back to join);
- ``close()``.

Failures stay per request. If a batched run raises, every request of that batch is
run again alone on its own thread and gets its own outputs or its own exception:
a bad row never fails its neighbours. If every one of them then succeeds, the
model cannot take batches (a fixed batch dimension of 1, say) and the batcher stops
batching for good; likewise when an output's first dimension is not the batch's
row count (a scalar output, say), since such outputs cannot be split by rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Feeds = dict[str, npt.NDArray[Any]]
# One entry per model output: an array (or a list, as onnxruntime returns for
# sequence outputs) whose first dimension is the rows.
Outputs = list[Any]
RunBatch = Callable[[Feeds], Outputs]

# What a per-model policy may ask for (models.py validates with the same bounds).
MAX_ROWS_MIN, MAX_ROWS_MAX = 1, 1024
MAX_DELAY_MS_MIN, MAX_DELAY_MS_MAX = 0.05, 50.0
DEFAULT_MAX_ROWS = 32
DEFAULT_MAX_DELAY_MS = 1.0

# (input name, dtype, shape after the first dimension) of every input.
_ShapeKey = tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]


@dataclass(frozen=True)
class BatchingPolicy:
    """A model's micro-batching settings. Raises ValueError outside the bounds."""

    max_rows: int = DEFAULT_MAX_ROWS
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS

    def __post_init__(self) -> None:
        if not MAX_ROWS_MIN <= self.max_rows <= MAX_ROWS_MAX:
            raise ValueError(
                f"max_rows must be {MAX_ROWS_MIN}..{MAX_ROWS_MAX}, not {self.max_rows}"
            )
        if not MAX_DELAY_MS_MIN <= self.max_delay_ms <= MAX_DELAY_MS_MAX:
            raise ValueError(
                f"max_delay_ms must be {MAX_DELAY_MS_MIN}..{MAX_DELAY_MS_MAX},"
                f" not {self.max_delay_ms}"
            )

    @property
    def max_delay_s(self) -> float:
        return self.max_delay_ms / 1000.0


class _Batch:
    """Requests gathering (then running) together; guarded by the batcher's lock."""

    __slots__ = (
        "done",
        "failed",
        "feeds",
        "filled",
        "key",
        "outcomes",
        "row_counts",
        "rows",
        "sealed",
        "succeeded_alone",
    )

    def __init__(self, key: _ShapeKey, lock: threading.Lock) -> None:
        self.key = key
        self.feeds: list[Feeds] = []
        self.row_counts: list[int] = []
        self.rows = 0
        self.sealed = False  # no request may join any more
        self.filled = threading.Condition(lock)  # the leader waits on it while gathering
        self.done = threading.Event()  # the batch ran (or gave up): outcomes are set
        # Per request, its rows of every output; None: each request runs alone.
        self.outcomes: list[Outputs] | None = None
        self.failed = False  # the batched run raised
        self.succeeded_alone = 0  # after a failure: requests that then succeeded alone


class MicroBatcher:
    """Runs concurrent ``run`` calls for one model as few batched model runs.

    ``run_batch`` runs the model on feeds of any row count and returns its outputs.
    ``on_batch(rows, requests)`` is called before every model run the batcher makes,
    batched or alone, with its row and request counts (for metrics).
    ``on_unbatchable(reason)`` is called once when the batcher stops batching.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_rows: int,
        max_delay_s: float,
        on_batch: Callable[[int, int], None] | None = None,
        on_unbatchable: Callable[[str], None] | None = None,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be at least 1, not {max_batch_rows}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must not be negative, not {max_delay_s}")
        self._run_batch = run_batch
        self._max_rows = max_batch_rows
        self._max_delay_s = max_delay_s
        self._on_batch = on_batch
        self._on_unbatchable = on_unbatchable
        self._lock = threading.Lock()
        self._open: dict[_ShapeKey, _Batch] = {}  # gathering, by shape
        self._runs = 0  # model runs in progress
        self._batchable = True
        self._closed = False

    @classmethod
    def for_policy(
        cls,
        run_batch: RunBatch,
        policy: BatchingPolicy,
        *,
        on_batch: Callable[[int, int], None] | None = None,
        on_unbatchable: Callable[[str], None] | None = None,
    ) -> MicroBatcher:
        return cls(
            run_batch,
            max_batch_rows=policy.max_rows,
            max_delay_s=policy.max_delay_s,
            on_batch=on_batch,
            on_unbatchable=on_unbatchable,
        )

    @property
    def batchable(self) -> bool:
        """False once the model showed it cannot take batches, or after ``close()``."""
        return self._batchable and not self._closed

    @property
    def queued(self) -> int:
        """Requests gathering for a batch that has not started yet."""
        with self._lock:
            return sum(len(batch.feeds) for batch in self._open.values())

    def close(self) -> None:
        """Stop batching: gathering batches dispatch now, later calls run alone.

        Calls in progress still get their answers; nothing is waited for here.
        """
        with self._lock:
            self._closed = True
            for batch in self._open.values():
                batch.filled.notify()

    def run(self, feeds: Feeds) -> Outputs:
        """The model's outputs for ``feeds`` alone (this request's rows only; after a
        batched run, views into the batch's output arrays).

        Blocks at most ``max_delay_s`` for other requests, then for the model run.
        Raises whatever the model run raises for these feeds.
        """
        rows, key = _shape_of(feeds)
        with self._lock:
            batch = self._open.get(key) if key is not None else None
            if batch is not None and batch.rows + rows > self._max_rows:
                self._seal(batch)  # full for this request: it starts the next one
                batch = None
            alone = (
                key is None
                or rows >= self._max_rows
                or not self._batchable
                or self._closed
                or (batch is None and self._runs == 0)
            )
            if alone:
                self._runs += 1
            else:
                leader = batch is None
                if batch is None:
                    assert key is not None  # for mypy: alone covers key None
                    batch = _Batch(key, self._lock)
                    self._open[key] = batch
                index = len(batch.feeds)
                batch.feeds.append(feeds)
                batch.row_counts.append(rows)
                batch.rows += rows
                if batch.rows >= self._max_rows:
                    self._seal(batch)
                if leader:
                    self._gather(batch)
        if alone:
            return self._run_counted(feeds, rows, 1, counted=True)
        assert batch is not None
        if leader:
            self._execute(batch)
        else:
            batch.done.wait()
        if batch.outcomes is not None:
            return batch.outcomes[index]
        return self._run_after_batch(batch, feeds, rows)

    # --- under the lock ----------------------------------------------------------

    def _seal(self, batch: _Batch) -> None:
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        batch.sealed = True
        batch.filled.notify()

    def _gather(self, batch: _Batch) -> None:
        """Wait (lock released meanwhile) until the batch should start."""
        deadline = time.monotonic() + self._max_delay_s
        while not batch.sealed and not self._closed and self._runs > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batch.filled.wait(remaining)
        self._seal(batch)
        self._runs += 1  # counted before the lock is let go: joiners see a run in progress

    def _stop_batching(self, reason: str) -> None:
        with self._lock:
            if not self._batchable:
                return
            self._batchable = False
        if self._on_unbatchable is not None:
            self._on_unbatchable(reason)

    # --- without the lock --------------------------------------------------------

    def _run_counted(self, feeds: Feeds, rows: int, requests: int, *, counted: bool) -> Outputs:
        """One model run; ``counted``: ``_runs`` already includes it."""
        if not counted:
            with self._lock:
                self._runs += 1
        try:
            if self._on_batch is not None:
                self._on_batch(rows, requests)
            return self._run_batch(feeds)
        finally:
            self._run_finished()

    def _run_finished(self) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0:
                # Gathering leaders stop waiting: nothing in progress will come back.
                for waiting in self._open.values():
                    waiting.filled.notify()

    def _execute(self, batch: _Batch) -> None:
        """The leader's part: run the batch, split it, wake the others (always)."""
        if len(batch.feeds) == 1 or not self._batchable:
            # Nobody came, or batching stopped meanwhile: each request runs alone
            # (_run_after_batch counts those runs).
            self._run_finished()
            batch.done.set()
            return
        try:
            try:
                merged = {
                    name: np.concatenate([feeds[name] for feeds in batch.feeds])
                    for name in batch.feeds[0]
                }
            except BaseException:
                self._run_finished()  # the run _gather counted never starts
                raise
            outputs = self._run_counted(merged, batch.rows, len(batch.feeds), counted=True)
        except Exception:
            # Not swallowed: each request runs alone and gets its own exception.
            batch.failed = True
        else:
            batch.outcomes = _split(outputs, batch.row_counts)
            if batch.outcomes is None:
                self._stop_batching("an output's first dimension is not the batch's row count")
        finally:
            batch.done.set()

    def _run_after_batch(self, batch: _Batch, feeds: Feeds, rows: int) -> Outputs:
        outputs = self._run_counted(feeds, rows, 1, counted=False)
        if batch.failed:
            # A request that fails alone never gets here, so the count reaches the
            # batch's size only when every request succeeded on its own.
            with self._lock:
                batch.succeeded_alone += 1
                everyone = batch.succeeded_alone == len(batch.feeds)
            if everyone:
                self._stop_batching("a batch failed whose every request succeeds alone")
        return outputs


def _shape_of(feeds: Feeds) -> tuple[int, _ShapeKey | None]:
    """(rows, shape key); the key is None when the feeds cannot share a batch.

    Feeds that name the same inputs in another order get another key (another
    batch): harmless, and it spares a sort on every request.
    """
    rows = -1
    parts: list[tuple[str, np.dtype[Any], tuple[int, ...]]] = []
    for name, value in feeds.items():
        if not isinstance(value, np.ndarray) or value.ndim == 0:
            return max(rows, 1), None
        shape = value.shape
        if rows == -1:
            rows = shape[0]
        elif shape[0] != rows:
            return rows, None
        parts.append((name, value.dtype, shape[1:]))
    if rows < 1:
        return max(rows, 1), None  # no inputs, or no rows: nothing to share
    return rows, tuple(parts)


def _split(outputs: Outputs, row_counts: list[int]) -> list[Outputs] | None:
    """Each request's rows of every output, or None when an output is not per row."""
    total = sum(row_counts)
    for output in outputs:
        per_row = isinstance(output, list) or (isinstance(output, np.ndarray) and output.ndim > 0)
        if not per_row or len(output) != total:
            return None
    outcomes: list[Outputs] = []
    start = 0
    for count in row_counts:
        end = start + count
        outcomes.append([output[start:end] for output in outputs])
        start = end
    return outcomes
