"""A server stopped with SIGTERM ships the prediction events it still buffers.

uvicorn ends a SIGTERM-ed worker by re-raising the signal, which skips atexit hooks;
the ASGI lifespan shutdown is what flushes (phoenix/lifespan.py). The server runs as
``make run``, compose.yaml and the Dockerfile run it: a separate uvicorn process, two
workers, lifespan on, here against the PostgreSQL test database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from inference.api_keys import api_key_create
from monitoring.models import PredictionLog
from tests.conftest import database_url_for_servers, free_port, wait_for_port
from tests.inference_support import onnx_classifier, register


def _predict(url: str, key: str) -> str:
    request = urllib.request.Request(
        f"{url}/api/v1/models/shutdown-model/predict",
        data=json.dumps({"features": {"x1": 0.5, "x2": -1.0, "x3": 2.0}}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["request_id"])


@pytest.mark.timeout(120)
def test_sigterm_ships_every_buffered_event(
    postgres_db: None, transactional_db: None, settings: Any, tmp_path: Path
) -> None:
    register("shutdown-model", onnx_classifier(tmp_path / "model.onnx"))
    key = api_key_create(name="shutdown", all_models=True)[1]
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "phoenix.asgi:application"),
            *("--port", str(port), "--workers", "2", "--lifespan", "on"),
        ],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "phoenix.settings",
            "DATABASE_URL": database_url_for_servers(),
            "PHOENIX_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PHOENIX_DATA_DIR": str(tmp_path / "server"),
            "PHOENIX_EVENT_BACKEND": "database",
            # Nothing ships before the shutdown: every event is still buffered then.
            "PHOENIX_EVENT_FLUSH_INTERVAL_S": "300",
            "PHOENIX_EVENT_BATCH_SIZE": "100000",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port(port, timeout_s=60), (tmp_path / "server.log").read_text()
        url = f"http://127.0.0.1:{port}"
        request_ids = {_predict(url, key) for _ in range(40)}
        assert PredictionLog.objects.count() == 0  # all of them in the workers' buffers

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()

    logged = set(PredictionLog.objects.values_list("request_id", flat=True))
    assert logged == request_ids, (tmp_path / "server.log").read_text()[-3000:]
    assert PredictionLog.objects.count() == 40
