"""Requests and failed requests per version and route of a model, for the experiments'
error-rate guard.

Failed requests leave no prediction-log row, so the guard counts them from the
``phoenix_inference_requests_total`` counter that every serving process keeps. Where
those counters can be read decides how:

* Prometheus (``PHOENIX_PROMETHEUS_URL`` set): the sum over every serving process and
  pod as scraped, as ``increase()`` over the phase, so a restarted pod's reset counter
  costs nothing. This is what compose and Kubernetes use, where the Celery worker that
  runs the guard shares no files with the API processes (Flagger and Argo Rollouts
  judge canaries from Prometheus the same way).
* this host's metrics registry (``PROMETHEUS_MULTIPROC_DIR`` shared by every process
  ``make run`` starts): the counters now minus a baseline taken when the phase began.

Counts are keyed ``"<version>|<route>"`` and hold ``[requests, failed]``; failed means
any 4xx/5xx after routing (both arms see the same clients, so only the difference
between them counts).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from phoenix.metrics_exporter import metrics_registry

METRIC = "phoenix_inference_requests_total"
Counts = dict[str, list[float]]


class RequestCountsUnavailable(Exception):
    """Prometheus did not answer the query (down, unreachable, or an error reply)."""


def _add(counts: Counts, *, version: Any, route: Any, status: Any, value: float) -> None:
    entry = counts.setdefault(f"{version}|{route}", [0.0, 0.0])
    entry[0] += value
    if str(status).isdigit() and int(status) >= 400:
        entry[1] += value


def request_counters_local(model_name: str) -> Counts:
    """Cumulative counts of ``model_name`` in this host's metrics registry (every
    process's, in multiprocess mode)."""
    counts: Counts = {}
    for family in metrics_registry().collect():
        if family.name != METRIC.removesuffix("_total"):
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("model") != model_name:
                continue
            _add(
                counts,
                version=labels.get("version"),
                route=labels.get("route"),
                status=labels.get("status", ""),
                value=sample.value,
            )
    return counts


def _label_value(value: str) -> str:
    """``value`` as a PromQL string literal."""
    return json.dumps(value)  # a JSON string is a valid PromQL double-quoted string


def promql_requests_since(model_name: str, seconds: int) -> str:
    """The query: each series' increase over the last ``seconds``, summed per label set."""
    return (
        f"sum by (version, route, status) "
        f"(increase({METRIC}{{model={_label_value(model_name)}}}[{seconds}s]))"
    )


def counts_from_prometheus_reply(reply: dict[str, Any]) -> Counts:
    """Counts from a Prometheus ``/api/v1/query`` reply of ``promql_requests_since``.

    Raises RequestCountsUnavailable for an error reply or one of another shape."""
    if reply.get("status") != "success":
        raise RequestCountsUnavailable(f"Prometheus answered {reply.get('error') or reply!r}")
    data = reply.get("data") or {}
    if data.get("resultType") != "vector":
        raise RequestCountsUnavailable(f"expected a vector, got {data.get('resultType')!r}")
    counts: Counts = {}
    for series in data.get("result") or []:
        labels, (_, raw) = series.get("metric") or {}, series.get("value") or (0, "0")
        value = float(raw)
        if not math.isfinite(value):
            continue
        _add(
            counts,
            version=labels.get("version"),
            route=labels.get("route"),
            status=labels.get("status", ""),
            value=value,
        )
    return counts


def request_counts_prometheus(
    *, base_url: str, model_name: str, since: datetime, now: datetime, timeout_s: float
) -> Counts:
    """Counts of ``model_name`` since ``since``, summed over every scraped process.

    ``increase()`` extrapolates to the window's edges, so counts are estimates (not
    integers) and miss what happened before the first scrape a new series was in.
    Raises RequestCountsUnavailable."""
    seconds = max(1, math.ceil((now - since).total_seconds()))
    query = urllib.parse.urlencode(
        {"query": promql_requests_since(model_name, seconds), "time": f"{now.timestamp():.3f}"}
    )
    url = f"{base_url.rstrip('/')}/api/v1/query?{query}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            reply = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # Prometheus explains a bad query in the body
        try:
            reply = json.loads(exc.read())
        except ValueError:
            raise RequestCountsUnavailable(f"Prometheus answered HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise RequestCountsUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(reply, dict):
        raise RequestCountsUnavailable(f"unexpected reply {reply!r:.200}")
    return counts_from_prometheus_reply(reply)
