"""The Celery application; tasks are discovered in each app's ``tasks.py``."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")

app = Celery("phoenix")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _ensure_filesystem_broker_folders() -> None:
    # The embedded broker exchanges messages through files; kombu expects the folders.
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@app.on_after_configure.connect
def _on_after_configure(sender: Celery, **kwargs: object) -> None:
    _ensure_filesystem_broker_folders()


@worker_ready.connect
def _start_metrics_exporter(**kwargs: object) -> None:
    # A worker has no web server: with PHOENIX_METRICS_PORT set it serves /metrics itself,
    # so Prometheus sees drift and retraining metrics (deploy/prometheus/prometheus.yml).
    port = int(os.environ.get("PHOENIX_METRICS_PORT", "0"))
    if port:
        from phoenix.metrics_exporter import metrics_exporter_start

        metrics_exporter_start(port=port)
