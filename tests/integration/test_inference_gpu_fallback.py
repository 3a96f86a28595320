"""A GPU session failing at run time: the version moves to the CPU, the request is
retried there, and readiness, metrics and the log say it runs degraded.

There is no GPU on these machines: the accelerator session is a stand-in whose
``run`` raises what onnxruntime's CUDA provider raises, put in place of a real
session the cache loaded. Everything after it (the fall back, the CPU session,
the retry, the API's answer) is the real code path.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from inference import api_keys
from inference.runtime import CPU, CUDA, device_failure, model_load
from inference.session_cache import session_cache
from tests.inference_support import (
    onnx_classifier,
    onnx_predict,
    prediction_events_record,
    register,
)

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}

# What onnxruntime-gpu raises, as seen in its issue tracker.
CUDA_OOM = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
    "running Gemm node. Name:'gemm' Status Message: CUDA failure 2: out of memory ; "
    "GPU=0 ; hostname=gpu-1 ; file=cuda_allocator.cc ; line=47 ; expr=cudaMalloc((void**)&p, size);"
)
ARENA_OOM = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
    "running MatMul node. Name:'mm' Status Message: bfc_arena.cc:376 AllocateRawInternal "
    "Failed to allocate memory for requested buffer of size 1073741824"
)
BAD_INPUT = (
    "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: X for "
    "the following indices index: 1 Got: 4 Expected: 3"
)

pytestmark = pytest.mark.usefixtures("fresh_inference_state")


class FailingGpuSession:
    """Stands in for a CUDA session: every run raises ``message``."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.calls = 0

    def run(self, names: Any, feeds: Any) -> Any:
        self.calls += 1
        raise RuntimeError(self.message)


@pytest.mark.parametrize(
    ("message", "on_device"),
    [
        (CUDA_OOM, True),
        (ARENA_OOM, True),
        ("CUBLAS_STATUS_EXECUTION_FAILED", True),
        ("CUDNN_STATUS_INTERNAL_ERROR", True),
        (BAD_INPUT, False),
        ("Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))", False),
    ],
)
def test_device_failures_are_told_from_bad_input(message: str, on_device: bool) -> None:
    assert device_failure(RuntimeError(message)) is on_device


@pytest.fixture
def loaded(tmp_path: Path) -> Any:
    """A real model loaded on the CPU, then made to look like a failing GPU session."""
    path = onnx_classifier(tmp_path / "m.onnx")
    model = model_load(path=str(path), sha256="f" * 64, warm_up_calls=1)
    return path, model


def _on_gpu(model: Any, message: str) -> FailingGpuSession:
    failing = FailingGpuSession(message)
    model.session, model.provider = failing, CUDA
    return failing


def test_out_of_memory_moves_the_model_to_the_cpu_and_retries(loaded: Any) -> None:
    path, model = loaded
    reports: list[tuple[str, str]] = []
    model.on_degraded = lambda previous, reason: reports.append((previous, reason))
    failing = _on_gpu(model, CUDA_OOM)
    rows = [[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
    labels, probabilities = model.run({"X": np.array(rows, dtype=np.float32)})

    expected_labels, expected_probabilities = onnx_predict(path, rows)
    assert labels.tolist() == expected_labels
    assert probabilities == pytest.approx(expected_probabilities)
    assert failing.calls == 1  # retried once, on the new CPU session
    assert model.provider == CPU
    assert model.session is not failing
    assert model.degraded is not None
    assert "out of memory" in model.degraded
    assert reports == [(CUDA, model.degraded)]


def test_an_input_error_on_the_gpu_is_raised_and_changes_nothing(loaded: Any) -> None:
    _, model = loaded
    failing = _on_gpu(model, BAD_INPUT)

    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
        model.run({"X": np.zeros((1, 3), dtype=np.float32)})

    assert model.session is failing
    assert model.provider == CUDA
    assert model.degraded is None


def test_concurrent_failures_create_one_cpu_session(loaded: Any) -> None:
    _, model = loaded
    reports: list[str] = []
    model.on_degraded = lambda previous, reason: reports.append(reason)
    _on_gpu(model, CUDA_OOM)
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def call() -> None:
        barrier.wait()
        results.append(model.run({"X": np.zeros((1, 3), dtype=np.float32)})[0].tolist())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 8
    assert len(reports) == 1  # one fall back, whatever the interleaving
    assert model.provider == CPU


# --- through the API: the answer, readiness, metrics and the log ---------------------


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return prediction_events_record(monkeypatch)


@pytest.fixture
def served(db: None, tmp_path: Path) -> Any:
    path = onnx_classifier(tmp_path / "served.onnx")
    version = register("credit", path)
    session_cache.refresh()
    return path, version


@pytest.fixture
def api(db: None) -> APIClient:
    client = APIClient()
    key = api_keys.api_key_create(name="gpu", all_models=True)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_request_failing_on_the_gpu_is_answered_from_the_cpu_and_reported(
    served: Any,
    api: APIClient,
    client: Any,
    events: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, version = served
    _on_gpu(session_cache.get(version.sha256), CUDA_OOM)
    component = f"model:credit:{version.version}"
    before = client.get("/readyz").json()["components"][component]
    assert before["degraded"] is False

    with caplog.at_level(logging.ERROR, logger="inference.session_cache"):
        response = api.post("/api/v1/models/credit/predict", {"features": ROW}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["predictions"] == onnx_predict(path, [[0.5, -1.0, 2.0]])[0]
    assert len(events) == 1
    assert any(
        "runs degraded on the CPU" in r.getMessage() and "out of memory" in r.getMessage()
        for r in caplog.records
    )
    ready = client.get("/readyz")
    assert ready.status_code == 200  # slower, still serving
    after = ready.json()["components"][component]
    assert after["degraded"] is True
    assert after["provider"] == CPU
    assert "out of memory" in after["degraded_reason"]
    text = client.get("/metrics").content.decode()
    assert f'phoenix_model_degraded{{model="credit",version="{version.version}"}} 1.0' in text
    assert (
        f'phoenix_model_loaded{{model="credit",provider="{CPU}",version="{version.version}"}} 1.0'
        in text
    )
    # The next request goes straight to the CPU session.
    again = api.post("/api/v1/models/credit/predict", {"features": ROW}, format="json")
    assert again.status_code == 200
