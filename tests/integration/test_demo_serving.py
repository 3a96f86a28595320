"""The regression and text demos served like the first: REST predict with named
features (a string field for text), the Open Inference Protocol with BYTES input over
HTTP (the real ``tritonclient.http``, against uvicorn serving ``phoenix.asgi``) and
gRPC, each prediction logged as an event, the dashboards showing them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from django.core.management import call_command

from inference.api_keys import api_key_create
from inference.auth import api_key_cache_clear
from inference.session_cache import session_cache
from models_registry.models import ModelVersion
from phoenix.demo import house_prices, support_tickets
from tests.asgi_server import LiveServer, asgi_server_running
from tests.inference_support import prediction_events_record

pytestmark = pytest.mark.usefixtures("fresh_inference_state")

TEXTS = ["I was charged twice for my subscription", "The app crashes when I open the screen"]
HOUSE = {
    "living_area_m2": 120.0,
    "lot_area_m2": 400.0,
    "bedrooms": 3,
    "age_years": 12,
    "distance_km": 6.5,
    "quality": 7,
}


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return prediction_events_record(monkeypatch)


@pytest.fixture
def server(
    transactional_db: None, settings: Any, tmp_path: Path, events: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    settings.MEDIA_ROOT = tmp_path / "media"
    call_command(
        "train_demo_models",
        rows=1200,
        reference_rows=300,
        models=[house_prices.MODEL_NAME, support_tickets.MODEL_NAME],
    )
    session_cache.clear()
    api_key_cache_clear()
    key = api_key_create(name="demos", all_models=True)[1]
    session_cache.refresh(reason="test start")
    with asgi_server_running(media_root=tmp_path / "media", settings=settings) as live:
        yield {"live": live, "key": key}
    session_cache.clear()


def _champion(name: str) -> ModelVersion:
    return ModelVersion.objects.get(model__name=name, stage="production")


def _session(name: str) -> ort.InferenceSession:
    with _champion(name).file.open("rb") as f:
        return ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])


def _post(live: LiveServer, path: str, body: Any, key: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{live.url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_text_demo_over_rest_takes_a_string_field(
    server: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    live, key = server["live"], server["key"]
    labels, probs = _session("support-tickets").run(
        None, {"text": np.array(TEXTS, dtype=object).reshape(-1, 1)}
    )

    status, one = _post(
        live, "/api/v1/models/support-tickets/predict", {"features": {"text": TEXTS[0]}}, key
    )
    assert status == 200, one
    assert one["predictions"] == [labels[0]]
    assert one["predictions"][0] in support_tickets.CLASSES
    assert len(one["probabilities"][0]) == len(support_tickets.CLASSES)
    assert one["confidence"] == [pytest.approx(float(np.max(probs[0])), abs=1e-6)]

    status, batch = _post(
        live,
        "/api/v1/models/support-tickets/predict",
        {"features": [{"text": t} for t in TEXTS]},
        key,
    )
    assert status == 200, batch
    assert batch["predictions"] == labels.tolist()
    status, rows = _post(
        live, "/api/v1/models/support-tickets/predict", {"features": [[t] for t in TEXTS]}, key
    )
    assert status == 200, rows
    assert rows["predictions"] == labels.tolist()

    logged = [e for e in events if e["request_id"] == batch["request_id"]]
    assert [e["features"] for e in logged] == [{"text": t} for t in TEXTS]
    assert [e["prediction"] for e in logged] == labels.tolist()


@pytest.mark.parametrize(
    ("features", "kind"),
    [
        ({"text": 42}, "non_text"),
        ({"text": None}, "missing"),
        ({"text": "x", "other": "y"}, "unexpected"),
        ({}, "missing"),
    ],
)
def test_text_demo_refuses_what_is_not_a_text_with_422_naming_it(
    server: dict[str, Any], features: dict[str, Any], kind: str
) -> None:
    status, body = _post(
        server["live"],
        "/api/v1/models/support-tickets/predict",
        {"features": features},
        server["key"],
    )
    assert status == 422, body
    assert kind in body["error"]["details"]


def test_regression_demo_over_rest_answers_values_without_probabilities(
    server: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    row = np.array([[HOUSE[n] for n in house_prices.FEATURE_NAMES]], dtype=np.float32)
    (expected,) = _session("house-prices").run(None, {"X": row})

    status, body = _post(
        server["live"], "/api/v1/models/house-prices/predict", {"features": HOUSE}, server["key"]
    )

    assert status == 200, body
    assert body["predictions"] == [pytest.approx(float(expected[0][0]), rel=1e-6)]
    assert "probabilities" not in body
    assert "confidence" not in body
    (event,) = [e for e in events if e["request_id"] == body["request_id"]]
    assert event["prediction"] == body["predictions"][0]
    assert event["confidence"] is None
    assert event["features"] == HOUSE


def test_tritonclient_http_bytes_round_trip_with_the_text_demo(
    server: dict[str, Any], events: list[dict[str, Any]]
) -> None:
    import tritonclient.http as httpclient

    live = server["live"]
    client = httpclient.InferenceServerClient(url=live.url.removeprefix("http://"))
    texts = np.array([[t.encode()] for t in TEXTS], dtype=object)
    labels, probs = _session("support-tickets").run(
        None, {"text": texts.astype(str).astype(object)}
    )

    def headers() -> dict[str, str]:
        return {"X-API-Key": server["key"]}  # tritonclient writes into the dict it gets

    metadata = client.get_model_metadata("support-tickets", headers=headers())
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    outputs = {o["name"]: o["datatype"] for o in metadata["outputs"]}
    assert outputs == {"label": "BYTES", "probabilities": "FP32"}

    for binary in (True, False):  # the binary tensor extension, then JSON tensors
        tensor = httpclient.InferInput("text", [len(TEXTS), 1], "BYTES")
        tensor.set_data_from_numpy(texts, binary_data=binary)
        wanted = [
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = client.infer("support-tickets", [tensor], outputs=wanted, headers=headers())
        assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == (
            labels.tolist()
        )
        assert np.allclose(result.as_numpy("probabilities"), probs, atol=1e-6)
        logged = [e for e in events if e["request_id"] == result.get_response()["id"]]
        # Logged as text (UTF-8 decoded), as REST logs it.
        assert [e["features"] for e in logged] == [{"text": t} for t in TEXTS]


def test_tritonclient_http_regression_demo(server: dict[str, Any]) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server["live"].url.removeprefix("http://"))
    rows = np.array([[HOUSE[n] for n in house_prices.FEATURE_NAMES]] * 2, dtype=np.float32)
    (expected,) = _session("house-prices").run(None, {"X": rows})

    tensor = httpclient.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("house-prices", [tensor], headers={"X-API-Key": server["key"]})

    assert np.allclose(result.as_numpy("variable"), expected, rtol=1e-6)


def test_grpc_bytes_input_of_the_text_demo(server: dict[str, Any]) -> None:
    import asyncio
    import threading

    import tritonclient.grpc as grpcclient

    from inference.api.v2_grpc import grpc_server_build

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-demo-loop", daemon=True)
    thread.start()

    async def start() -> tuple[Any, int]:
        built, port = grpc_server_build(host="127.0.0.1", port=0, threads=2)
        await built.start()
        return built, port

    grpc_server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    try:
        texts = np.array([[t.encode()] for t in TEXTS], dtype=object)
        labels, _ = _session("support-tickets").run(
            None, {"text": texts.astype(str).astype(object)}
        )
        with grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}") as client:
            tensor = grpcclient.InferInput("text", [len(TEXTS), 1], "BYTES")
            tensor.set_data_from_numpy(texts)
            result = client.infer("support-tickets", [tensor], headers={"x-api-key": server["key"]})
        assert [v.decode() for v in result.as_numpy("label")] == labels.tolist()
    finally:
        asyncio.run_coroutine_threadsafe(grpc_server.stop(0), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.mark.parametrize(
    ("model", "drift"), [("support-tickets", "billing:4"), ("house-prices", "distance_km:1")]
)
def test_simulate_traffic_drives_the_new_demos_with_feedback(
    server: dict[str, Any], events: list[dict[str, Any]], model: str, drift: str
) -> None:
    import io

    out = io.StringIO()
    call_command(
        "simulate_traffic",
        "--model", model, "--url", server["live"].url, "--api-key", server["key"],
        "--rps", "40", "--duration", "0.5", "--drift", drift, "--feedback-share", "0.5",
        "--seed", "4", stdout=out,
    )  # fmt: skip

    assert "sent 20 predictions" in out.getvalue()
    assert "20 ok" in out.getvalue()
    assert len([e for e in events if e["model"] == model]) == 20
