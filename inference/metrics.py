"""Prometheus metrics of the inference path, exported at /metrics with django-prometheus's.

Label values are bounded: model names and versions come from the registry (a
request for an unknown model is counted as model="unknown"), routes from the
routing module's small set, statuses are HTTP codes. Entity ids and inputs never
become labels. With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client writes
these to per-process files and /metrics aggregates every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

UNKNOWN = "unknown"

_LATENCY_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
_COMPUTE_BUCKETS = (
    0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
)  # fmt: skip
_CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)

REQUESTS = Counter(
    "phoenix_inference_requests_total",
    "Prediction requests by model, version, route and HTTP status.",
    ["model", "version", "route", "status"],
)
LATENCY = Histogram(
    "phoenix_inference_latency_seconds",
    "Time to answer a prediction request inside the service (parsing to response data).",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
COMPUTE = Histogram(
    "phoenix_inference_model_seconds",
    "Time spent in the ONNX Runtime call alone.",
    ["model", "version"],
    buckets=_COMPUTE_BUCKETS,
)
CONFIDENCE = Histogram(
    "phoenix_prediction_confidence",
    "Classifier confidence (highest class probability) per predicted row.",
    ["model", "version"],
    buckets=_CONFIDENCE_BUCKETS,
)
ROWS = Counter(
    "phoenix_inference_rows_total", "Rows scored, shadow scoring included.", ["model", "version"]
)
FEATURE_STORE_FALLBACK = Counter(
    "phoenix_feature_store_fallback_total",
    "Requests served from their own features because the feature store was unreachable.",
    ["backend"],
)
MODEL_LOADED = Gauge(
    "phoenix_model_loaded",
    "1 while a model version's session is warm in a live worker.",
    ["model", "version", "provider"],
    multiprocess_mode="livemax",
)
MODEL_DEGRADED = Gauge(
    "phoenix_model_degraded",
    "1 while a model version runs on the CPU after its accelerator failed at run time.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
BATCH_REQUESTS = Histogram(
    "phoenix_inference_batch_requests",
    "Requests answered by one model run of a micro-batching model (1: ran alone).",
    ["model", "version"],
    buckets=_BATCH_BUCKETS,
)
BATCH_ROWS = Histogram(
    "phoenix_inference_batch_rows",
    "Rows in one model run of a micro-batching model.",
    ["model", "version"],
    buckets=_BATCH_BUCKETS,
)
EXPLANATIONS = Counter(
    "phoenix_explanations_total",
    "Rows explained, by model, version and attribution method.",
    ["model", "version", "method"],
)

# labels() costs a lock and a dict lookup per call; the hot path reuses children.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = metric.labels(*labels)
        _children[key] = child
    return child


def request_observed(
    *, model: str, version: str, route: str, status: int, latency_s: float | None = None
) -> None:
    _child(REQUESTS, model, version, route, str(status)).inc()
    if latency_s is not None:
        _child(LATENCY, model, version).observe(latency_s)


def compute_observed(*, model: str, version: str, seconds: float, rows: int) -> None:
    _child(COMPUTE, model, version).observe(seconds)
    _child(ROWS, model, version).inc(rows)


def observe_many(child: Any, values: list[float]) -> None:
    """``child.observe(v)`` for each value, in one pass for a batch.

    A 256-row request would otherwise make 256 observe calls (~0.6 ms). The buckets are
    counted with numpy and added once each; the result is the same series. Falls back
    to plain observe() if prometheus_client's histogram internals ever change.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if len(values) < 8 or bounds is None or buckets is None or total is None:
        for value in values:
            child.observe(value)
        return
    # Histogram.observe puts a value in the first bucket whose bound is >= it.
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    total.inc(float(np.sum(values)))
    for index in np.flatnonzero(counts):
        buckets[index].inc(int(counts[index]))


def confidence_observed(*, model: str, version: str, values: list[float]) -> None:
    observe_many(_child(CONFIDENCE, model, version), values)


def feature_store_fallback(*, backend: str) -> None:
    _child(FEATURE_STORE_FALLBACK, backend).inc()


_loaded_series: set[tuple[str, str, str]] = set()


def model_loaded(model: str, version: str, provider: str, *, loaded: bool) -> None:
    if loaded:
        _loaded_series.add((model, version, provider))
        MODEL_LOADED.labels(model, version, provider).set(1)
        return
    # The provider is not known at unload time: zero every series of this version.
    if (model, version) in _degraded_series:
        _degraded_series.discard((model, version))
        MODEL_DEGRADED.labels(model, version).set(0)
    for labels in list(_loaded_series):
        if labels[:2] == (model, version):
            MODEL_LOADED.labels(*labels).set(0)
            _loaded_series.discard(labels)


_degraded_series: set[tuple[str, str]] = set()


def model_degraded(model: str, version: str) -> None:
    _degraded_series.add((model, version))
    MODEL_DEGRADED.labels(model, version).set(1)


def batch_observer(model: str, version: str) -> Callable[[int, int], None]:
    """A micro-batcher's ``on_batch(rows, requests)`` for one version."""
    rows_child = BATCH_ROWS.labels(model, version)
    requests_child = BATCH_REQUESTS.labels(model, version)

    def observe(rows: int, requests: int) -> None:
        rows_child.observe(rows)
        requests_child.observe(requests)

    return observe


def explanation_observed(*, model: str, version: str, method: str) -> None:
    _child(EXPLANATIONS, model, version, method).inc()
