"""Against a live server: the real tritonclient, and 200 parallel predict requests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test.testcases import LiveServerThread, _StaticFilesHandler

from inference.api_keys import api_key_create
from inference.auth import api_key_cache_clear
from inference.session_cache import session_cache
from tests.inference_support import (
    FEATURES,
    onnx_classifier,
    onnx_predict,
    prediction_events_record,
    register,
)


class _WideBacklogServer(ThreadedWSGIServer):
    # Django's default listen backlog (10) resets connections under 50 simultaneous clients.
    request_queue_size = 512


class _LiveServerThread(LiveServerThread):
    server_class = _WideBacklogServer


@pytest.fixture
def live_url(transactional_db: None) -> Iterator[str]:
    """A threaded WSGI server on a free port that sees the test database.

    Like pytest-django's live_server (an in-memory SQLite connection is shared with the
    server thread; PostgreSQL is reached on its own connection), with a deep backlog.
    """
    from django.db import connections

    shared = {c.alias: c for c in connections.all() if c.vendor == "sqlite" and c.is_in_memory_db()}
    for connection in shared.values():
        connection.inc_thread_sharing()
    thread = _LiveServerThread(
        "127.0.0.1", static_handler=_StaticFilesHandler, connections_override=shared, port=0
    )
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    try:
        if thread.error:
            raise thread.error
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()
        for connection in shared.values():
            connection.dec_thread_sharing()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return prediction_events_record(monkeypatch)


@pytest.fixture
def served(live_url: str, tmp_path: Path, events: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    session_cache.clear()
    api_key_cache_clear()
    path = onnx_classifier(tmp_path / "m.onnx")
    version = register("credit", path)
    key = api_key_create(name="live", model_names=["credit"])[1]
    session_cache.refresh(reason="test start")  # as preload() does at server start
    yield {"url": live_url, "key": key, "path": path, "version": version.version}
    session_cache.clear()


def _post(url: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_tritonclient_metadata_readiness_and_infer(served: dict[str, Any]) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(url=served["url"].removeprefix("http://"))
    key = served["key"]

    def headers() -> dict[str, str]:
        # tritonclient writes its binary-length header into the dict it is given.
        return {"X-API-Key": key}

    rows = np.array([[0.5, -1.0, 2.0], [1.0, 1.0, -1.0], [-2.0, 0.0, 0.3]], dtype=np.float32)
    labels, probs = onnx_predict(served["path"], rows.tolist())

    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "phoenix"
    assert client.is_model_ready("credit", headers=headers())
    metadata = client.get_model_metadata("credit", headers=headers())
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}

    # Binary tensors both ways (tritonclient's default) ...
    tensor = httpclient.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("credit", [tensor], headers=headers())
    assert result.as_numpy("label").tolist() == labels
    assert np.allclose(result.as_numpy("probabilities"), probs, atol=1e-6)
    assert result.get_response()["model_version"] == served["version"]

    # ... and JSON tensors, one per named feature, with a pinned version.
    columns = []
    for j, name in enumerate(FEATURES):
        column = httpclient.InferInput(name, [3], "FP64")
        column.set_data_from_numpy(rows[:, j].astype(np.float64), binary_data=False)
        columns.append(column)
    wanted = [httpclient.InferRequestedOutput("label", binary_data=False)]
    result = client.infer(
        "credit", columns, model_version=served["version"], outputs=wanted, headers=headers()
    )
    assert result.as_numpy("label").tolist() == labels
    assert result.as_numpy("probabilities") is None

    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("credit", [tensor])
    wrong = httpclient.InferInput("nope", list(rows.shape), "FP32")
    wrong.set_data_from_numpy(rows)
    with pytest.raises(InferenceServerException, match="Inputs must be"):
        client.infer("credit", [wrong], headers=headers())


def test_200_parallel_requests_are_all_correct(
    served: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    rng = np.random.default_rng(11)
    rows = rng.normal(size=(200, 3)).round(5).tolist()
    labels, _ = onnx_predict(served["path"], rows)
    url = f"{served['url']}/api/v1/models/credit/predict"

    def call(i: int) -> tuple[int, dict[str, Any]]:
        return _post(url, {"features": dict(zip(FEATURES, rows[i], strict=True))}, served["key"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(call, range(200)))

    assert [status for status, _ in results] == [200] * 200
    assert [body["predictions"][0] for _, body in results] == labels
    assert len({body["request_id"] for _, body in results}) == 200
    assert len(events) == 200
