"""Upload validation runs in a child process within a memory and time budget: a tiny
file describing a huge graph is refused with a clear error, and this process's memory
does not move."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from rest_framework.test import APIClient

from models_registry import services
from models_registry.exceptions import ModelOverBudget
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.onnx_trial import onnx_model_trial
from tests.registry_support import make_data_scientist, stored_files

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

SIDE = 16000  # a 16000 x 16000 float tensor: 1 GB


def _model(nodes: list[Any], initializers: list[Any]) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "m"])
    graph = helper.make_graph(nodes, "huge", [x], [y], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _shape() -> Any:
    return numpy_helper.from_array(np.array([SIDE, SIDE], dtype=np.int64), "shape")


def constant_of_shape_model() -> bytes:
    """ConstantOfShape folds into a 1 GB constant when the session is created."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
        helper.make_node("Add", ["x", "big"], ["y"]),
    ]
    return _model(nodes, [_shape()])


def expand_model() -> bytes:
    """Expanding the input cannot be folded: the 1 GB appears on the first run."""
    return _model([helper.make_node("Expand", ["x", "shape"], ["y"])], [_shape()])


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@pytest.fixture
def scientist_client(django_user_model: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(make_data_scientist(django_user_model))
    return client


def _upload(client: APIClient, content: bytes) -> Any:
    upload = io.BytesIO(content)
    upload.name = "model.onnx"
    return client.post("/api/v1/models/huge/versions", {"file": upload}, format="multipart")


@pytest.mark.parametrize("build", [constant_of_shape_model, expand_model])
def test_tiny_file_with_a_huge_graph_is_refused_and_memory_stays_flat(
    scientist_client: APIClient, media: Path, build: Any
) -> None:
    content = build()
    assert len(content) < 300
    before = _peak_rss_bytes()

    response = _upload(scientist_client, content)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "model_over_budget"
    assert "PHOENIX_MODEL_VALIDATION_MEMORY_MB" in error["message"]
    assert error["details"]["memory_budget_mb"] == 1024
    assert _peak_rss_bytes() - before < 200 * 1024 * 1024
    assert not ModelVersion.objects.exists()
    assert not RegisteredModel.objects.exists()
    assert stored_files(media) == []


def test_a_smaller_budget_refuses_less(settings: Any, tiny_onnx_model: Path) -> None:
    settings.PHOENIX_MODEL_VALIDATION_MEMORY_MB = 64

    version = services.model_version_register(model_name="tiny", file=tiny_onnx_model)
    with pytest.raises(ModelOverBudget, match="64 MB"):
        services.model_version_register(model_name="huge", file=io.BytesIO(expand_model()))

    assert version.signature["inputs"][0]["dtype"] == "float32"


def test_validation_past_its_time_budget_is_refused(settings: Any, tiny_onnx_model: Path) -> None:
    # No child process answers a load and a run in a tenth of a millisecond.
    settings.PHOENIX_MODEL_VALIDATION_TIMEOUT_S = 0.0001

    with pytest.raises(ModelOverBudget, match="PHOENIX_MODEL_VALIDATION_TIMEOUT_S"):
        services.model_version_register(model_name="slow", file=tiny_onnx_model)

    assert not ModelVersion.objects.exists()


def test_trial_reads_the_signature_and_reports_a_failed_run_without_refusing(
    tmp_path: Path,
) -> None:
    # Reshape of one value into a (2,) tensor fails on any input, for reasons not memory.
    target = numpy_helper.from_array(np.array([2], dtype=np.int64), "target")
    path = tmp_path / "reshape.onnx"
    path.write_bytes(_model([helper.make_node("Reshape", ["x", "target"], ["y"])], [target]))

    trial = onnx_model_trial(str(path), memory_bytes=256 * 1024 * 1024, timeout_s=60)

    assert trial.outcome == "ok"
    assert trial.inputs == [("x", "tensor(float)", [1])]
    assert trial.run_error


def test_a_daemonic_process_validates_in_a_fresh_interpreter(
    monkeypatch: pytest.MonkeyPatch, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    """Celery's prefork workers are daemonic; multiprocessing refuses them children."""
    import multiprocessing

    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)  # type: ignore[attr-defined]
    huge = tmp_path / "huge.onnx"
    huge.write_bytes(constant_of_shape_model())

    fine = onnx_model_trial(str(tiny_onnx_model), memory_bytes=1024**3, timeout_s=60)
    refused = onnx_model_trial(str(huge), memory_bytes=1024**3, timeout_s=60)

    assert fine.outcome == "ok"
    assert fine.inputs == [("X", "tensor(float)", [None, 3])]
    assert refused.outcome == "over_memory"
