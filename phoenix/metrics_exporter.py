"""The process's Prometheus registry, and /metrics for processes with no web server.

In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, as ``make run`` and the stack set)
every process writes its samples to files and any process can serve the sum; else a
process serves only its own. The live dashboards read the same registry
(``monitoring.live_snapshot``), so they and Prometheus never disagree.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry


def metrics_registry() -> CollectorRegistry:
    """The registry /metrics serves: all processes' files in multiprocess mode, else ours."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def metrics_exporter_start(*, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104
    """Serve /metrics on ``port`` from a process with no web server (Celery worker, consumer).

    Serves the same registry as the API's /metrics: every process's files in
    multiprocess mode, else this process's own metrics. Prometheus scrapes it (see
    deploy/prometheus/prometheus.yml: the worker on 9102, the consumer on 9101).
    """
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=metrics_registry())
