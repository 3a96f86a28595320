"""The Open Inference Protocol over gRPC, driven by the real ``tritonclient.grpc``.

The server is the one ``manage.py serve_grpc`` builds, on a free port in this
process (its loop and worker threads are its own, so the test database is
transactional). Warm calls run on its event loop, first ones on its threads: both
paths are exercised, since every test starts with a cold key cache.
The last test runs the command itself as a separate process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from inference import api_keys
from inference.api.v2_grpc import grpc_server_build
from inference.session_cache import session_cache
from tests.conftest import database_url_for_servers, free_port, wait_for_port
from tests.inference_support import (
    onnx_classifier,
    onnx_predict,
    onnx_text_classifier,
    prediction_events_record,
    register,
)

pytestmark = pytest.mark.usefixtures("fresh_inference_state")

ROWS = [[0.5, -1.0, 2.0], [1.0, 1.0, 1.0], [-2.0, 0.3, 0.0]]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return prediction_events_record(monkeypatch)


@pytest.fixture
def served(transactional_db: None, tmp_path: Path) -> dict[str, Any]:
    path = onnx_classifier(tmp_path / "m.onnx")
    version = register("credit", path)
    other = register("other", onnx_classifier(tmp_path / "o.onnx", seed=3))
    key = api_keys.api_key_create(name="grpc", model_names=["credit"])[1]
    session_cache.refresh()
    return {"path": path, "version": version, "other": other, "key": key}


@pytest.fixture
def server(served: dict[str, Any]) -> Iterator[str]:
    """The grpc.aio server serve_grpc builds, on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-test-loop", daemon=True)
    thread.start()

    async def start() -> tuple[Any, int]:
        built, port = grpc_server_build(host="127.0.0.1", port=0, threads=4)
        await built.start()
        return built, port

    grpc_server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(grpc_server.stop(0), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture
def client(server: str) -> Iterator[Any]:
    with grpcclient.InferenceServerClient(url=server) as triton:
        yield triton


def _bearer(served: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {served['key']}"}


def _input(rows: list[list[float]]) -> Any:
    tensor = grpcclient.InferInput("X", [len(rows), 3], "FP32")
    tensor.set_data_from_numpy(np.array(rows, dtype=np.float32))
    return tensor


def test_health_and_metadata(client: Any, served: dict[str, Any]) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("credit", headers=_bearer(served))
    server = client.get_server_metadata()
    assert server.name == "phoenix"

    metadata = client.get_model_metadata("credit", headers=_bearer(served), as_json=True)

    assert metadata["name"] == "credit"
    assert metadata["versions"] == [served["version"].version]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": ["-1", "3"]}]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "probabilities"}


def test_batch_infer_matches_onnxruntime_and_is_logged(
    client: Any, served: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    result = client.infer(
        "credit", [_input(ROWS)], headers=_bearer(served), request_id="grpc-batch-1"
    )

    labels, probabilities = onnx_predict(served["path"], ROWS)
    assert result.as_numpy("label").tolist() == labels
    assert np.allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    response = result.get_response(as_json=True)
    assert response["model_name"] == "credit"
    assert response["model_version"] == served["version"].version
    assert response["id"] == "grpc-batch-1"
    assert response["parameters"]["routed_by"]["string_param"] == "single:champion"
    assert [e["request_id"] for e in events] == ["grpc-batch-1"] * 3
    assert [e["prediction"] for e in events] == labels


def test_requested_outputs_only(client: Any, served: dict[str, Any]) -> None:
    result = client.infer(
        "credit",
        [_input(ROWS[:1])],
        outputs=[grpcclient.InferRequestedOutput("label")],
        headers=_bearer(served),
    )

    assert result.as_numpy("label").tolist() == onnx_predict(served["path"], ROWS[:1])[0]
    assert result.as_numpy("probabilities") is None


def test_typed_contents_are_read_like_raw_ones(server: str, served: dict[str, Any]) -> None:
    """A client may send typed ``contents`` instead of ``raw_input_contents``."""
    request = service_pb2.ModelInferRequest(model_name="credit")
    tensor = request.inputs.add(name="X", datatype="FP32", shape=[2, 3])
    tensor.contents.fp32_contents.extend([v for row in ROWS[:2] for v in row])
    with grpc.insecure_channel(server) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=[("x-api-key", served["key"])])

    labels = np.frombuffer(response.raw_output_contents[0], dtype=np.int64)
    assert labels.tolist() == onnx_predict(served["path"], ROWS[:2])[0]


@pytest.mark.parametrize(
    ("headers", "model", "version", "code"),
    [
        ({}, "credit", "", grpc.StatusCode.UNAUTHENTICATED),
        ({"authorization": "Bearer not-a-key"}, "credit", "", grpc.StatusCode.UNAUTHENTICATED),
        (None, "other", "", grpc.StatusCode.PERMISSION_DENIED),  # key scoped to credit
        (None, "credit", "99", grpc.StatusCode.NOT_FOUND),
    ],
)
def test_errors_map_to_grpc_status_codes(
    client: Any,
    served: dict[str, Any],
    headers: dict[str, str] | None,
    model: str,
    version: str,
    code: Any,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(
            model,
            [_input(ROWS[:1])],
            model_version=version,
            headers=_bearer(served) if headers is None else headers,
        )

    assert raised.value.status() == str(code)


def test_pinning_a_dev_version_is_permission_denied(
    client: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    register("credit", onnx_classifier(tmp_path / "dev.onnx", seed=5), stage="dev")

    with pytest.raises(InferenceServerException) as raised:
        client.infer("credit", [_input(ROWS[:1])], model_version="2", headers=_bearer(served))

    assert raised.value.status() == str(grpc.StatusCode.PERMISSION_DENIED)
    assert "PHOENIX_PINNABLE_STAGES" in raised.value.message()


def test_key_whose_model_is_deleted_serves_nothing(
    client: Any, served: dict[str, Any], tmp_path: Path
) -> None:
    from models_registry.models import RegisteredModel
    from models_registry.services import registered_model_delete

    assert client.infer("credit", [_input(ROWS[:1])], headers=_bearer(served))  # warm, cached
    registered_model_delete(model=RegisteredModel.objects.get(name="credit"))
    register("credit", onnx_classifier(tmp_path / "again.onnx", seed=7))  # same name, new model

    for model in ("credit", "other"):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, [_input(ROWS[:1])], headers=_bearer(served))
        assert raised.value.status() == str(grpc.StatusCode.PERMISSION_DENIED)


@pytest.mark.parametrize(
    ("datatype", "values", "code"),
    [
        ("INT8", [52000, 0, 0], grpc.StatusCode.INVALID_ARGUMENT),
        ("UINT8", [300, 0, 0], grpc.StatusCode.INVALID_ARGUMENT),  # uint_contents: no -1
        ("FP32", [1e39, 0.0, 0.0], grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_out_of_range_typed_contents_are_invalid_argument(
    server: str, served: dict[str, Any], datatype: str, values: list[float], code: Any
) -> None:
    request = service_pb2.ModelInferRequest(model_name="credit")
    tensor = request.inputs.add(name="X", datatype=datatype, shape=[1, len(values)])
    field = {"INT8": "int_contents", "UINT8": "uint_contents", "FP32": "fp64_contents"}[datatype]
    if datatype == "FP32":
        tensor.datatype = "FP64"  # fp32_contents cannot even carry 1e39; FP64 data can
    getattr(tensor.contents, field).extend(values)
    with grpc.insecure_channel(server) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(request, metadata=[("x-api-key", served["key"])])

    assert raised.value.code() == code


def test_bad_tensors_are_invalid_argument(client: Any, served: dict[str, Any]) -> None:
    wrong_width = grpcclient.InferInput("X", [1, 4], "FP32")
    wrong_width.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))
    short = service_pb2.ModelInferRequest(model_name="credit")
    short.inputs.add(name="X", datatype="FP32", shape=[1, 3])
    short.raw_input_contents.append(b"\x00" * 8)  # 2 floats for a 1 x 3 tensor

    for call in (
        lambda: client.infer("credit", [wrong_width], headers=_bearer(served)),
        lambda: client._client_stub.ModelInfer(short, metadata=list(_bearer(served).items())),
    ):
        with pytest.raises((InferenceServerException, grpc.RpcError)) as raised:
            call()
        status = (
            raised.value.status()
            if isinstance(raised.value, InferenceServerException)
            else str(raised.value.code())
        )
        assert status == str(grpc.StatusCode.INVALID_ARGUMENT)


def test_metrics_count_grpc_requests(client: Any, served: dict[str, Any]) -> None:
    from prometheus_client import REGISTRY

    labels = {
        "model": "credit",
        "version": served["version"].version,
        "route": "single:champion",
        "status": "200",
    }
    before = REGISTRY.get_sample_value("phoenix_inference_requests_total", labels) or 0.0

    client.infer("credit", [_input(ROWS[:1])], headers=_bearer(served))

    assert REGISTRY.get_sample_value("phoenix_inference_requests_total", labels) == before + 1


def test_serve_grpc_command_serves_until_terminated(
    postgres_db: None, served: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "phoenix.settings",
        "DATABASE_URL": database_url_for_servers(),
        "PHOENIX_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PHOENIX_DATA_DIR": str(tmp_path / "grpc"),
    }
    log = tmp_path / "grpc.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve_grpc", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_for_port(port, timeout_s=90), log.read_text()
        with grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}") as triton:
            assert triton.is_server_ready()
            result = triton.infer("credit", [_input(ROWS)], headers=_bearer(served))
            assert result.as_numpy("label").tolist() == onnx_predict(served["path"], ROWS)[0]
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, log.read_text()


def test_bytes_input_of_a_text_model(
    client: Any, served: dict[str, Any], tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    import onnxruntime as ort

    path = onnx_text_classifier(tmp_path / "text.onnx")
    register("tickets", path)
    session_cache.refresh()
    texts = [["card was charged twice"], ["app crashes on login"]]
    tensor = grpcclient.InferInput("text", [2, 1], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))
    key = api_keys.api_key_create(name="text", all_models=True)[1]

    result = client.infer("tickets", [tensor], headers={"x-api-key": key})

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"text": np.array(texts, dtype=object)})[0].tolist()
    assert result.as_numpy("label").tolist() == expected
    assert [e["prediction"] for e in events] == expected
