"""Rates and quantiles from cumulative histogram readings (pure, no Django)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.live_metrics import (
    HistogramReading,
    bucket_counts,
    counter_increase,
    histogram_delta,
    histogram_merge,
    histogram_quantile,
    rate,
)

INF = math.inf


def cumulative(values: np.ndarray, bounds: list[float]) -> tuple[tuple[float, float], ...]:
    return tuple((le, float(np.count_nonzero(values <= le))) for le in [*bounds, INF])


def test_quantile_of_fine_buckets_is_close_to_the_sample_quantile() -> None:
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 0.01, size=20_000)
    bounds = list(np.round(np.arange(0.002, 0.2, 0.002), 6))
    buckets = cumulative(values, bounds)
    for q in (0.5, 0.95, 0.99):
        estimate = histogram_quantile(q, buckets)
        assert estimate is not None
        # Linear interpolation is exact up to the width of one bucket.
        assert abs(estimate - float(np.quantile(values, q))) < 0.002


def test_quantile_interpolates_inside_the_bucket_like_promql() -> None:
    # 10 observations <= 0.1, 10 more in (0.1, 0.2]: the median sits at the 0.1 boundary,
    # the 75th percentile halfway through the second bucket.
    buckets = [(0.1, 10.0), (0.2, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = [(0.1, 1.0), (0.5, 2.0), (INF, 10.0)]
    assert histogram_quantile(0.99, buckets) == 0.5


def test_quantile_of_an_empty_histogram_is_none_and_bad_input_is_refused() -> None:
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, [(INF, 1.0)])
    with pytest.raises(ValueError, match="Inf"):
        histogram_quantile(0.5, [(0.1, 1.0)])


def test_counter_drop_is_a_restart_not_a_negative_rate() -> None:
    assert counter_increase(15.0, 10.0) == 5.0
    assert counter_increase(3.0, 10.0) == 3.0  # restarted and counted 3 since
    assert rate(30.0, 10.0, 2.0) == 10.0
    assert rate(30.0, 10.0, 0.0) == 0.0


def test_histogram_delta_is_what_was_observed_between_readings() -> None:
    before = HistogramReading(buckets=((0.1, 4.0), (INF, 5.0)), count=5.0, total=0.6)
    now = HistogramReading(buckets=((0.1, 10.0), (INF, 15.0)), count=15.0, total=2.1)
    delta = histogram_delta(now, before)
    assert delta.buckets == ((0.1, 6.0), (INF, 10.0))
    assert delta.count == 10.0
    assert delta.total == pytest.approx(1.5)
    # After a restart the new reading is all there is.
    restarted = HistogramReading(buckets=((0.1, 1.0), (INF, 1.0)), count=1.0, total=0.05)
    assert histogram_delta(restarted, before) == restarted


def test_merge_sums_series_and_bucket_counts_uncumulate() -> None:
    a = HistogramReading(buckets=((0.5, 1.0), (1.0, 3.0), (INF, 3.0)), count=3.0, total=2.0)
    b = HistogramReading(buckets=((0.5, 2.0), (1.0, 2.0), (INF, 4.0)), count=4.0, total=9.0)
    merged = histogram_merge([a, b])
    assert merged is not None
    assert merged.buckets == ((0.5, 3.0), (1.0, 5.0), (INF, 7.0))
    assert merged.count == 7.0
    assert bucket_counts(merged.buckets) == [3.0, 2.0, 2.0]
    assert histogram_merge([]) is None
