"""The embedded default (SQLite) under contention, against a live server: no 500s.

Predictions and feedback from many clients at once while the event writer inserts rows;
a lock held past the busy timeout answers 503 with Retry-After, and the next request
after it is released succeeds (its connection was not left in a broken transaction).
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from inference.api_keys import api_key_create
from inference.auth import api_key_cache_clear
from inference.session_cache import session_cache
from monitoring.models import PredictionLog
from tests.asgi_server import asgi_server_running
from tests.inference_support import embedded_publisher_installed, onnx_classifier, register

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


@pytest.fixture
def sqlite_server(transactional_db: None, tmp_path: Path, settings: Any) -> Iterator[Any]:
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default's database (SQLite) only")
    session_cache.clear()
    api_key_cache_clear()
    register("credit", onnx_classifier(tmp_path / "credit.onnx"))
    key = api_key_create(name="contention", model_names=["credit"])[1]
    session_cache.refresh(reason="test start")
    # Small batches written every few milliseconds: the writer contends with feedback.
    with (
        embedded_publisher_installed(
            tmp_path / "journal", buffer_size=100_000, batch_size=4, flush_s=0.005
        ) as publisher,
        asgi_server_running(media_root=tmp_path / "media", settings=settings) as server,
    ):
        yield {"url": server.url, "key": key, "publisher": publisher}
    session_cache.clear()


def _post(url: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        headers = {k.lower(): v for k, v in error.headers.items()}
        return error.code, headers, json.loads(error.read() or b"null")


def _feedback_url(base: str, request_id: str) -> str:
    return f"{base}/api/v1/predictions/{request_id}/feedback"


def test_concurrent_predictions_and_feedback_never_answer_500(sqlite_server: Any) -> None:
    url, key = sqlite_server["url"], sqlite_server["key"]
    statuses: list[int] = []

    def client(worker: int) -> list[str]:
        labelled = []
        for i in range(12):
            status, _, body = _post(f"{url}/api/v1/models/credit/predict", {"features": ROW}, key)
            statuses.append(status)
            assert status == 200, body
            request_id = body["request_id"]
            actual = (worker + i) % 2
            for _attempt in range(30):  # a busy database says when to come back
                status, headers, answer = _post(
                    _feedback_url(url, request_id), {"actual": actual}, key
                )
                statuses.append(status)
                if status != 503:
                    break
                assert headers.get("retry-after") == "1", answer
                time.sleep(0.05)
            assert status == 200, answer
            labelled.append(request_id)
        return labelled

    with ThreadPoolExecutor(max_workers=8) as pool:
        labelled = [rid for ids in pool.map(client, range(8)) for rid in ids]

    print(f"answers: {sorted(Counter(statuses).items())}")
    assert not [s for s in statuses if s >= 500 and s != 503]
    assert len(labelled) == 96
    sqlite_server["publisher"].flush()
    rows = PredictionLog.objects.filter(request_id__in=labelled)
    assert rows.count() == 96
    assert not rows.filter(actual__isnull=True).exists()


def test_a_lock_held_past_the_busy_timeout_is_a_503_and_the_next_request_works(
    sqlite_server: Any,
) -> None:
    url, key = sqlite_server["url"], sqlite_server["key"]
    _, _, predicted = _post(f"{url}/api/v1/models/credit/predict", {"features": ROW}, key)
    request_id = predicted["request_id"]
    sqlite_server["publisher"].flush()
    assert PredictionLog.objects.filter(request_id=request_id).exists()
    options = connection.settings_dict["OPTIONS"]
    busy_timeout = options["timeout"]
    # Another process holding the write lock for longer than a request will wait.
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    options["timeout"] = 0.2  # the server's next connections wait this long
    try:
        holder.execute("BEGIN IMMEDIATE")
        status, headers, body = _post(_feedback_url(url, request_id), {"actual": 1}, key)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        options["timeout"] = busy_timeout

    assert status == 503, body
    assert headers.get("retry-after") == "1"
    assert body["error"]["code"] == "database_busy"
    status, _, body = _post(_feedback_url(url, request_id), {"actual": 1}, key)
    assert status == 200, body
    assert PredictionLog.objects.get(request_id=request_id).actual == 1
