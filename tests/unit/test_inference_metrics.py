"""inference.metrics.observe_many counts a batch exactly as one observe() per value."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from inference.metrics import observe_many

BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("size", [3, 8, 256])
def test_batch_equals_one_observe_per_value(size: int) -> None:
    values = np.random.default_rng(size).uniform(0.4, 1.0, size=size).round(2).tolist()
    values[:3] = [0.5, 0.95, 1.0]  # exactly on bounds: le is inclusive
    one, batch = CollectorRegistry(), CollectorRegistry()
    a = Histogram("c", "c", ["m"], buckets=BUCKETS, registry=one).labels("x")
    b = Histogram("c", "c", ["m"], buckets=BUCKETS, registry=batch).labels("x")

    for value in values:
        a.observe(value)
    observe_many(b, values)

    expected, got = _samples(one), _samples(batch)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
