"""The v2 protocol through the ASGI entry point (Channels consumer, no Django handler)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator

from inference.api import v2
from inference.api_keys import api_key_create
from tests.inference_support import onnx_classifier, onnx_predict, register

pytestmark = pytest.mark.usefixtures("no_prediction_events", "fresh_inference_state")

ROWS = [[0.5, -1.0, 2.0], [1.0, 1.0, -1.0]]


def call(method: str, path: str, body: bytes = b"", key: str | None = None) -> dict[str, Any]:
    from phoenix.asgi import application

    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if key:
        headers.append((b"x-api-key", key.encode()))

    async def run() -> dict[str, Any]:
        communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
        return await communicator.get_response(timeout=20)

    return async_to_sync(run)()


def test_infer_cold_then_warm_through_asgi(db: None, tmp_path: Path) -> None:
    path = onnx_classifier(tmp_path / "m.onnx")
    register("credit", path)
    key = api_key_create(name="asgi", all_models=True)[1]
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "data": [v for row in ROWS for v in row],
                }
            ]
        }
    ).encode()
    labels, _ = onnx_predict(path, ROWS)
    headers = {"X-API-Key": key}

    assert v2.infer_execution("POST", "/v2/models/credit/infer", headers, body) is None
    cold = call("POST", "/v2/models/credit/infer", body, key)  # reads the registry: thread
    assert v2.infer_execution("POST", "/v2/models/credit/infer", headers, body) == "inline"
    warm = call("POST", "/v2/models/credit/infer", body, key)  # answered on the event loop

    for response in (cold, warm):
        assert response["status"] == 200, response["body"]
        outputs = {o["name"]: o for o in json.loads(response["body"])["outputs"]}
        assert outputs["label"]["data"] == labels
    unknown_key = {"X-API-Key": "unknown"}
    assert v2.infer_execution("POST", "/v2/models/credit/infer", unknown_key, body) is None
    assert v2.infer_execution("GET", "/v2/models/credit", headers, b"") is None


def test_heavier_model_goes_to_the_pool(
    db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference import runtime

    path = onnx_classifier(tmp_path / "m.onnx")
    register("credit", path)
    key = api_key_create(name="asgi", all_models=True)[1]
    # Every model now counts as heavy: warm-up time is above the inline threshold.
    monkeypatch.setattr(runtime, "INLINE_THRESHOLD_S", 0.0)
    body = json.dumps(
        {"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 3], "data": [1.0] * 6}]}
    ).encode()
    assert call("POST", "/v2/models/credit/infer", body, key)["status"] == 200

    execution = v2.infer_execution("POST", "/v2/models/credit/infer", {"X-API-Key": key}, body)
    warm = call("POST", "/v2/models/credit/infer", body, key)

    assert execution == "pool"
    assert warm["status"] == 200


def test_asgi_routes_errors_and_other_paths(db: None) -> None:
    assert call("GET", "/v2")["status"] == 200
    assert call("POST", "/v2/health/live")["status"] == 405
    unknown = call("POST", "/v2/models/nope/infer", b"{}", None)
    assert unknown["status"] == 401
    assert isinstance(json.loads(unknown["body"])["error"], str)
    # Everything outside /v2 still reaches Django.
    assert call("GET", "/healthz")["status"] == 200
