"""A stage change in this process reaches a separate server process's warm cache (no restart).

PostgreSQL (both processes see the committed rows) and Redis (the registry-change
broadcast) are required: skipped locally without them, failed in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import database_url_for_servers, free_port, wait_for_port
from tests.inference_support import onnx_classifier, register

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


@pytest.fixture
def server(
    postgres_db: None, transactional_db: None, redis_url: str, settings: Any, tmp_path: Path
) -> Iterator[str]:
    settings.REDIS_URL = redis_url  # this process broadcasts over Redis too
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "phoenix.settings",
        "DATABASE_URL": database_url_for_servers(),
        "REDIS_URL": redis_url,
        "PHOENIX_PRELOAD_MODELS": "1",
        "PHOENIX_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PHOENIX_DATA_DIR": str(tmp_path / "server"),
        "PHOENIX_FEATURE_STORE": "database",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "phoenix.asgi:application", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_for_port(port, timeout_s=60):
            pytest.fail(f"server did not start: {(tmp_path / 'server.log').read_text()}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _version(url: str, key: str) -> str | None:
    request = urllib.request.Request(
        f"{url}/api/v1/models/credit/predict",
        data=json.dumps({"features": ROW}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(json.loads(response.read())["version"])
    except urllib.error.HTTPError:
        return None


@pytest.fixture
def registered(postgres_db: None, transactional_db: None, tmp_path: Path) -> dict[str, Any]:
    from inference.api_keys import api_key_create

    first = register("credit", onnx_classifier(tmp_path / "a.onnx"))
    second = register("credit", onnx_classifier(tmp_path / "b.onnx", flip=True), stage="staging")
    return {"first": first, "second": second, "key": api_key_create(name="x", all_models=True)[1]}


def test_stage_change_reaches_another_process(registered: dict[str, Any], server: str) -> None:
    from models_registry.services import model_version_set_stage

    assert _version(server, registered["key"]) == registered["first"].version
    ready = urllib.request.urlopen(f"{server}/readyz", timeout=10)
    components = json.loads(ready.read())["components"]
    assert components[f"model:credit:{registered['first'].version}"]["status"] == "ok"

    model_version_set_stage(version=registered["second"], stage="production")

    deadline = time.monotonic() + 15
    served = None
    while time.monotonic() < deadline:
        served = _version(server, registered["key"])
        if served == registered["second"].version:
            break
        time.sleep(0.2)
    assert served == registered["second"].version
