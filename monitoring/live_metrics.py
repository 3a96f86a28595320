"""Rates and quantiles from cumulative Prometheus samples, as PromQL computes them (no Django).

The live dashboards read the same counters and histograms that /metrics exposes. A
counter only ever grows, so "requests per second" is the difference between two
readings over the time between them (``rate()``), and a latency quantile over a
window comes from the difference of the cumulative bucket counts at its ends
(``histogram_quantile(q, rate(..._bucket[w]))``), interpolated linearly inside the
bucket that holds the rank. Counters reset when a process restarts; a reading lower
than the one before is treated as a reset, as Prometheus does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# A cumulative histogram: (upper bound "le", observations <= le), sorted by le, ending at +Inf.
Buckets = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class HistogramReading:
    """One histogram series at one moment: cumulative buckets, count and sum."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    total: float


@dataclass(frozen=True)
class Reading:
    """Everything the dashboards need from the registry at one moment, keyed by label tuples."""

    at: float
    counters: Mapping[tuple[str, ...], float] = field(default_factory=dict)
    histograms: Mapping[tuple[str, ...], HistogramReading] = field(default_factory=dict)


def counter_increase(now: float, before: float | None) -> float:
    """How much a counter grew; a drop means the process restarted and counted from zero."""
    if before is None:
        return now
    return now if now < before else now - before


def rate(now: float, before: float | None, seconds: float) -> float:
    """Per-second increase of a counter between two readings (0 for an empty interval)."""
    if seconds <= 0:
        return 0.0
    return counter_increase(now, before) / seconds


def histogram_delta(now: HistogramReading, before: HistogramReading | None) -> HistogramReading:
    """The observations made between two readings of one histogram series."""
    if before is None or now.count < before.count:
        return now
    previous = dict(before.buckets)
    buckets = tuple((le, max(0.0, c - previous.get(le, 0.0))) for le, c in now.buckets)
    return HistogramReading(
        buckets=buckets, count=now.count - before.count, total=now.total - before.total
    )


def histogram_merge(readings: Sequence[HistogramReading]) -> HistogramReading | None:
    """Sum series that share bucket bounds (several versions or routes of one model)."""
    if not readings:
        return None
    totals: dict[float, float] = {}
    for reading in readings:
        for le, c in reading.buckets:
            totals[le] = totals.get(le, 0.0) + c
    return HistogramReading(
        buckets=tuple(sorted(totals.items())),
        count=sum(r.count for r in readings),
        total=sum(r.total for r in readings),
    )


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, or None when it holds nothing.

    Like PromQL: the rank ``q * total`` is found in the first bucket whose cumulative
    count reaches it, and the value is interpolated linearly between that bucket's
    lower and upper bound (the lowest bucket starts at 0). If the rank falls in the
    +Inf bucket the highest finite bound is returned, since nothing larger is known.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within [0, 1], got {q}")
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        raise ValueError("a histogram's last bucket must be +Inf")
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, cumulative in ordered:
        if cumulative >= rank and cumulative > lower_count:
            if math.isinf(le):
                return lower_bound
            if le <= 0:
                return le
            fraction = (rank - lower_count) / (cumulative - lower_count)
            return lower_bound + (le - lower_bound) * fraction
        lower_bound, lower_count = le, cumulative
    return lower_bound


def bucket_counts(buckets: Buckets) -> list[float]:
    """Per-bucket (not cumulative) counts, for drawing a distribution."""
    counts: list[float] = []
    previous = 0.0
    for _, cumulative in sorted(buckets):
        counts.append(max(0.0, cumulative - previous))
        previous = cumulative
    return counts
