"""Dashboard snapshots from Prometheus readings: which series, summed how (no Django).

Snapshots are read from the prometheus_client registry that /metrics serves
(``phoenix.metrics_exporter.metrics_registry``), so the dashboard and Prometheus can
never disagree about what happened. ``MetricsSampler`` keeps the readings of the last
window and turns each new one into a snapshot: rates and quantiles over the window,
as PromQL's ``rate()`` and ``histogram_quantile()`` compute them
(``monitoring.live_metrics``). The broadcaster (``monitoring.services.live``) sends it.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from monitoring.live_metrics import (
    HistogramReading,
    bucket_counts,
    counter_increase,
    histogram_delta,
    histogram_merge,
    histogram_quantile,
)
from phoenix.metrics_exporter import metrics_registry

REQUESTS_METRIC = "phoenix_inference_requests_total"
LATENCY_METRIC = "phoenix_inference_latency_seconds"
CONFIDENCE_METRIC = "phoenix_prediction_confidence"
LOADED_METRIC = "phoenix_model_loaded"
# Event pipeline series (buffer, journal, published/spilled/replayed/consumed, lag).
PIPELINE_PREFIXES = ("phoenix_event", "phoenix_prediction_log", "phoenix_consumer")
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
# Statuses are HTTP codes (inference/metrics.py). The error rate is the server's share
# (5xx): a 4xx is the client's mistake and would page nobody.
ERROR_STATUSES = frozenset({"error", "failed", "exception"})

SNAPSHOT_INTERVAL_S = float(os.environ.get("PHOENIX_DASHBOARD_INTERVAL_S", "1.0"))
# Rates and quantiles cover this many seconds, like rate(...[10s]) in PromQL: one
# second alone holds too few requests for a stable p99.
SNAPSHOT_WINDOW_S = float(os.environ.get("PHOENIX_DASHBOARD_WINDOW_S", "10"))


def series_key(name: str, labels: dict[str, str]) -> str:
    """A series as PromQL writes it: ``name{a="1",b="2"}``."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def pipeline_series_read(registry: CollectorRegistry | None = None) -> list[dict[str, Any]]:
    """The event pipeline's series in this process's registry, for the pipeline page."""
    rows: list[dict[str, Any]] = []
    for family in (registry or metrics_registry()).collect():
        if not family.name.startswith(PIPELINE_PREFIXES):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            rows.append(
                {
                    "key": series_key(sample.name, sample.labels),
                    "name": sample.name,
                    "labels": dict(sample.labels),
                    "value": sample.value,
                    "help": family.documentation,
                    "type": family.type,
                }
            )
    return sorted(rows, key=lambda row: row["key"])


def _is_error(status: str) -> bool:
    return status.startswith("5") or status.lower() in ERROR_STATUSES


class RawReading:
    """Cumulative values of the dashboard's series at one moment."""

    def __init__(self, at: float) -> None:
        self.at = at
        # (model, version, route, status) -> count
        self.requests: dict[tuple[str, str, str, str], float] = {}
        # (model, version) -> histogram, for latency and confidence
        self.latency: dict[tuple[str, str], HistogramReading] = {}
        self.confidence: dict[tuple[str, str], HistogramReading] = {}
        # (model, version) -> provider
        self.loaded: dict[tuple[str, str], str] = {}
        self.pipeline: dict[str, float] = {}


def _histograms(samples: Iterable[Any], name: str) -> dict[tuple[str, str], HistogramReading]:
    buckets: dict[tuple[str, str], dict[float, float]] = {}
    counts: dict[tuple[str, str], float] = {}
    sums: dict[tuple[str, str], float] = {}
    for sample in samples:
        key = (sample.labels.get("model", ""), sample.labels.get("version", ""))
        if sample.name == f"{name}_bucket":
            # Series split by further labels (route, ...) are summed per model version.
            per_key = buckets.setdefault(key, {})
            le = float(sample.labels["le"])
            per_key[le] = per_key.get(le, 0.0) + sample.value
        elif sample.name == f"{name}_count":
            counts[key] = counts.get(key, 0.0) + sample.value
        elif sample.name == f"{name}_sum":
            sums[key] = sums.get(key, 0.0) + sample.value
    return {
        key: HistogramReading(
            buckets=tuple(sorted(per_key.items())),
            count=counts.get(key, 0.0),
            total=sums.get(key, 0.0),
        )
        for key, per_key in buckets.items()
    }


def reading_take(registry: CollectorRegistry, at: float) -> RawReading:
    """The dashboard's series in ``registry`` now, summed over the labels it does not show."""
    reading = RawReading(at)
    latency_samples: list[Any] = []
    confidence_samples: list[Any] = []
    for family in registry.collect():
        for sample in family.samples:
            name = sample.name
            labels = sample.labels
            if name == REQUESTS_METRIC:
                key = (
                    labels.get("model", ""),
                    labels.get("version", ""),
                    labels.get("route", ""),
                    labels.get("status", ""),
                )
                reading.requests[key] = reading.requests.get(key, 0.0) + sample.value
            elif name.startswith(LATENCY_METRIC):
                latency_samples.append(sample)
            elif name.startswith(CONFIDENCE_METRIC):
                confidence_samples.append(sample)
            elif name == LOADED_METRIC:
                if sample.value > 0:
                    key2 = (labels.get("model", ""), labels.get("version", ""))
                    reading.loaded[key2] = labels.get("provider", "")
            elif name.startswith(PIPELINE_PREFIXES) and not name.endswith("_created"):
                reading.pipeline[series_key(name, labels)] = sample.value
    reading.latency = _histograms(latency_samples, LATENCY_METRIC)
    reading.confidence = _histograms(confidence_samples, CONFIDENCE_METRIC)
    return reading


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _latency_ms(histogram: HistogramReading | None) -> dict[str, float | None]:
    if histogram is None:
        return dict.fromkeys(QUANTILES)
    result: dict[str, float | None] = {}
    for label, q in QUANTILES.items():
        seconds = histogram_quantile(q, histogram.buckets) if histogram.count > 0 else None
        result[label] = _round(None if seconds is None else seconds * 1000.0)
    return result


class MetricsSampler:
    """Turns successive registry readings into dashboard snapshots (rates over a window)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        window_s: float = SNAPSHOT_WINDOW_S,
        clock: Any = time.time,
    ) -> None:
        self._registry = registry
        self._window_s = window_s
        self._clock = clock
        self._readings: deque[RawReading] = deque()

    def sample(self) -> dict[str, Any]:
        """Read the registry now and return the snapshot (JSON-ready)."""
        now = reading_take(self._registry or metrics_registry(), self._clock())
        # Keep the oldest reading that is still at least a window old as the baseline.
        while len(self._readings) > 1 and now.at - self._readings[1].at >= self._window_s:
            self._readings.popleft()
        baseline = self._readings[0] if self._readings else None
        self._readings.append(now)
        return snapshot_compute(now, baseline)


def snapshot_compute(now: RawReading, before: RawReading | None) -> dict[str, Any]:
    """The dashboard snapshot (JSON-ready) from two readings ``before`` -> ``now``."""
    seconds = (now.at - before.at) if before is not None else 0.0
    names = sorted(
        {k[0] for k in now.requests}
        | {k[0] for k in now.latency}
        | {k[0] for k in now.loaded}
        | {k[0] for k in now.confidence}
    )
    models: dict[str, Any] = {}
    all_requests = all_errors = all_increase = all_error_increase = 0.0
    for name in names:
        versions = sorted(
            {k[1] for k in now.requests if k[0] == name}
            | {k[1] for k in now.latency if k[0] == name}
            | {k[1] for k in now.loaded if k[0] == name}
        )
        per_version: dict[str, Any] = {}
        routes: dict[str, float] = {}
        model_latency: list[HistogramReading] = []
        m_total = m_errors = m_inc = m_err_inc = 0.0
        for version in versions:
            v_total = v_errors = v_inc = v_err_inc = 0.0
            for key, count in now.requests.items():
                if key[0] != name or key[1] != version:
                    continue
                before_count = before.requests.get(key) if before is not None else None
                increase = counter_increase(count, before_count) if before is not None else 0.0
                v_total += count
                v_inc += increase
                routes[key[2] or "default"] = routes.get(key[2] or "default", 0.0) + increase
                if _is_error(key[3]):
                    v_errors += count
                    v_err_inc += increase
            latency_now = now.latency.get((name, version))
            latency_window = None
            if latency_now is not None and before is not None:
                latency_window = histogram_delta(latency_now, before.latency.get((name, version)))
                model_latency.append(latency_window)
            per_version[version or "-"] = {
                "requests_total": v_total,
                "errors_total": v_errors,
                "rps": _round(v_inc / seconds if seconds > 0 else 0.0),
                "error_rate": _round(v_err_inc / v_inc if v_inc > 0 else None, 4),
                "latency_ms": _latency_ms(latency_window),
                "provider": now.loaded.get((name, version)),
            }
            m_total += v_total
            m_errors += v_errors
            m_inc += v_inc
            m_err_inc += v_err_inc
        confidence = histogram_merge([h for k, h in now.confidence.items() if k[0] == name])
        confidence_window = histogram_merge(
            [
                histogram_delta(h, before.confidence.get(k))
                for k, h in now.confidence.items()
                if k[0] == name and before is not None
            ]
        )
        models[name] = {
            "requests_total": m_total,
            "errors_total": m_errors,
            "rps": _round(m_inc / seconds if seconds > 0 else 0.0),
            "error_rate": _round(m_err_inc / m_inc if m_inc > 0 else None, 4),
            "latency_ms": _latency_ms(histogram_merge(model_latency)),
            "routes": {
                route: _round(inc / m_inc if m_inc > 0 else None, 4)
                for route, inc in sorted(routes.items())
            },
            "versions": per_version,
            "providers": sorted({p for (m, _), p in now.loaded.items() if m == name and p}),
            "confidence": None
            if confidence is None
            else {
                # JSON has no Infinity: the +Inf bucket's bound is null.
                "bounds": [le if math.isfinite(le) else None for le, _ in confidence.buckets],
                "counts": bucket_counts(confidence.buckets),
                "window_counts": bucket_counts(confidence_window.buckets)
                if confidence_window is not None
                else None,
            },
        }
        all_requests += m_total
        all_errors += m_errors
        all_increase += m_inc
        all_error_increase += m_err_inc
    return {
        "at": datetime.fromtimestamp(now.at, tz=UTC).isoformat(),
        "ts": now.at,
        "window_s": _round(seconds),
        "totals": {
            "requests_total": all_requests,
            "errors_total": all_errors,
            "rps": _round(all_increase / seconds if seconds > 0 else 0.0),
            "error_rate": _round(all_error_increase / all_increase if all_increase else None, 4),
        },
        "models": models,
        "pipeline": now.pipeline,
    }
