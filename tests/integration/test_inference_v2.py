"""Open Inference Protocol endpoints and their errors (Django test client)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference.api_keys import api_key_create
from inference.session_cache import session_cache
from tests.inference_support import (
    onnx_classifier,
    onnx_predict,
    prediction_events_record,
    register,
)

pytestmark = pytest.mark.usefixtures("no_prediction_events", "fresh_inference_state")

ROWS = [[0.5, -1.0, 2.0], [1.0, 1.0, -1.0]]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return onnx_classifier(tmp_path / "m.onnx")


@pytest.fixture
def key(db: None, model_file: Path) -> str:
    register("credit", model_file)
    return api_key_create(name="v2", all_models=True)[1]


def infer(client: Any, key: str | None, body: Any, path: str = "credit") -> Any:
    headers = {"HTTP_X_API_KEY": key} if key else {}
    return client.post(
        f"/v2/models/{path}/infer",
        json.dumps(body) if not isinstance(body, bytes) else body,
        content_type="application/json",
        **headers,
    )


def tensor(datatype: str, data: Any, shape: list[int] | None = None) -> dict[str, Any]:
    return {
        "name": "X",
        "datatype": datatype,
        "shape": shape or list(np.shape(data)),
        "data": np.ravel(data).tolist(),
    }


def test_server_endpoints(client: Any, db: None) -> None:
    assert client.get("/v2").json()["name"] == "phoenix"
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200  # nothing to warm


def test_server_not_ready_until_models_are_warm(client: Any, key: str) -> None:
    assert client.get("/v2/health/ready").status_code == 503
    session_cache.refresh()
    assert client.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_infer_json_numeric_datatypes(
    client: Any, key: str, model_file: Path, datatype: str
) -> None:
    response = infer(client, key, {"id": "r1", "inputs": [tensor(datatype, ROWS)]})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == "r1"
    assert body["model_name"] == "credit"
    outputs = {o["name"]: o for o in body["outputs"]}
    rows = np.array(ROWS, dtype=np.dtype(datatype.replace("FP", "float").lower())).tolist()
    labels, probs = onnx_predict(model_file, rows)
    assert outputs["label"]["data"] == labels
    assert outputs["label"]["datatype"] == "INT64"
    assert outputs["probabilities"]["shape"] == [2, 2]
    assert np.allclose(outputs["probabilities"]["data"], probs.ravel(), atol=1e-6)


def test_infer_bool_is_cast_to_the_model_input(client: Any, key: str, model_file: Path) -> None:
    data = [[True, False, True]]
    response = infer(client, key, {"inputs": [tensor("BOOL", data)]})
    assert response.status_code == 200, response.content
    labels, _ = onnx_predict(model_file, [[1.0, 0.0, 1.0]])
    assert response.json()["outputs"][0]["data"] == labels


def test_infer_bytes_that_are_not_numbers_is_400(client: Any, key: str) -> None:
    body = {
        "inputs": [{"name": "X", "datatype": "BYTES", "shape": [1, 3], "data": ["a", "b", "c"]}]
    }
    response = infer(client, key, body)
    assert response.status_code == 400
    assert "X" in response.json()["error"]


def test_entity_id_parameter_routes_sticky(client: Any, key: str, tmp_path: Path) -> None:
    from inference.models import RoutingPolicy
    from models_registry.models import RegisteredModel

    register(
        "credit",
        onnx_classifier(tmp_path / "b.onnx", flip=True),
        alias="challenger",
        stage="staging",
    )
    RoutingPolicy.objects.create(
        model=RegisteredModel.objects.get(name="credit"), strategy="ab", challenger_percent=50
    )
    versions = set()
    for i in range(30):
        body = {"inputs": [tensor("FP32", ROWS)], "parameters": {"entity_id": f"e{i}"}}
        first = infer(client, key, body).json()
        second = infer(client, key, body).json()
        assert first["model_version"] == second["model_version"]
        versions.add(first["model_version"])
    assert versions == {"1", "2"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{nope", 400),
        ({"inputs": []}, 400),
        ({"inputs": [{"name": "X", "datatype": "FP128", "shape": [1, 3], "data": [1, 2, 3]}]}, 400),
        ({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3]}]}, 400),
        ({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3]}]}, 400),
        ({"inputs": [{"name": "Y", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}, 400),
        ({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}, 422),
    ],
)
def test_infer_bad_requests(client: Any, key: str, body: Any, status: int) -> None:
    response = infer(client, key, body)
    assert response.status_code == status, response.content
    assert isinstance(response.json()["error"], str)


def test_infer_auth_and_unknown_model(client: Any, key: str) -> None:
    body = {"inputs": [tensor("FP32", ROWS)]}
    assert infer(client, None, body).status_code == 401
    assert infer(client, "wrong", body).status_code == 401
    assert infer(client, key, body, path="nope").status_code == 404
    assert infer(client, key, body, path="credit/versions/9").status_code == 404
    everything = api_key_create(name="every-model", all_models=True)[1]
    assert infer(client, everything, body).status_code == 200


def test_infer_too_many_rows_is_413(client: Any, key: str, settings: Any) -> None:
    settings.PHOENIX_PREDICT_MAX_ROWS = 1
    response = infer(client, key, {"inputs": [tensor("FP32", ROWS)]})
    assert response.status_code == 413


def test_model_metadata_and_ready(client: Any, key: str) -> None:
    headers = {"HTTP_X_API_KEY": key}
    metadata = client.get("/v2/models/credit", **headers).json()
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"]
    assert metadata["parameters"]["feature_names"] == ["x1", "x2", "x3"]
    assert client.get("/v2/models/credit/versions/1", **headers).status_code == 200
    assert client.get("/v2/models/credit/ready", **headers).status_code == 200
    assert client.get("/v2/models/credit/versions/1/ready", **headers).status_code == 200
    assert client.get("/v2/models/nope", **headers).status_code == 404
    assert client.get("/v2/models/credit").status_code == 401


def test_body_over_upload_limit_is_413(client: Any, key: str, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = infer(client, key, {"inputs": [tensor("FP32", [[1.0, 2.0, 3.0]] * 20)]})
    assert response.status_code == 413


def test_infer_logs_named_features_per_row(
    client: Any, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = prediction_events_record(monkeypatch)
    columns = [
        {"name": name, "datatype": "FP64", "shape": [2], "data": [row[j] for row in ROWS]}
        for j, name in enumerate(["x1", "x2", "x3"])
    ]

    response = infer(client, key, {"inputs": columns})

    assert response.status_code == 200, response.content
    assert [e["features"] for e in recorded] == [
        dict(zip(["x1", "x2", "x3"], r, strict=True)) for r in ROWS
    ]
    assert [e["row_index"] for e in recorded] == [0, 1]


@pytest.mark.parametrize(
    ("datatype", "data", "kind"),
    [
        ("INT8", [52000, 0, 0], "out_of_range"),
        ("UINT8", [-1, 0, 0], "out_of_range"),
        ("INT64", [1e30, 0, 0], "out_of_range"),
        ("INT16", [2**70, 0, 0], "out_of_range"),
        ("FP32", [1e39, 0.0, 0.0], "out_of_range"),
        ("FP32", [None, 1.0, 2.0], "null"),
        ("INT32", [1, None, 2], "null"),
        ("BOOL", [True, None, False], "null"),
        ("FP64", ["1.0", 1.0, 2.0], "not_a_number"),
    ],
)
def test_values_outside_the_declared_datatype_are_400(
    client: Any, key: str, datatype: str, data: list[Any], kind: str
) -> None:
    body = {"inputs": [{"name": "X", "datatype": datatype, "shape": [1, 3], "data": data}]}

    response = infer(client, key, body)

    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["details"]["kind"] == kind
    assert answer["details"]["input"] == "X"
    assert datatype in answer["error"]


def test_values_beyond_the_model_inputs_float32_are_422_naming_it(client: Any, key: str) -> None:
    body = {"inputs": [{"name": "X", "datatype": "FP64", "shape": [1, 3], "data": [1e39, 0, 0]}]}

    response = infer(client, key, body)

    assert response.status_code == 422, response.content
    assert response.json()["details"] == {
        "kind": "out_of_range",
        "input": "X",
        "dtype": "float32",
        "range": "[-3.402823e+38, 3.402823e+38]",
    }
    assert "'X'" in response.json()["error"]


def test_pinning_a_version_in_a_stage_clients_may_not_pin(
    client: Any, key: str, tmp_path: Path, settings: Any
) -> None:
    register("credit", onnx_classifier(tmp_path / "dev.onnx", seed=4), stage="dev")
    register("credit", onnx_classifier(tmp_path / "staged.onnx", seed=5), stage="staging")
    body = {"inputs": [tensor("FP32", ROWS)]}

    refused = infer(client, key, body, path="credit/versions/2")
    metadata = client.get("/v2/models/credit/versions/2", HTTP_X_API_KEY=key)

    assert refused.status_code == 403, refused.content
    assert refused.json()["code"] == "version_not_pinnable"
    assert refused.json()["details"]["stage"] == "dev"
    assert "PHOENIX_PINNABLE_STAGES" in refused.json()["error"]
    assert metadata.status_code == 403
    assert infer(client, key, body, path="credit/versions/3").status_code == 200  # staging
    settings.PHOENIX_PINNABLE_STAGES = ["production", "staging", "dev"]
    assert infer(client, key, body, path="credit/versions/2").status_code == 200
