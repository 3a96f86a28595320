"""Feature store backends, freshness, and the predict path's fallback when Redis is gone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from inference import api_keys, services
from inference.exceptions import FeatureStoreUnavailable
from inference.feature_store import DatabaseFeatureStore, FeatureStatus, RedisFeatureStore
from tests.conftest import free_port
from tests.inference_support import FEATURES, onnx_classifier, onnx_predict, register

pytestmark = pytest.mark.usefixtures("no_prediction_events", "fresh_inference_state")

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return onnx_classifier(tmp_path / "m.onnx")


@pytest.fixture
def api(db: None, model_file: Path) -> APIClient:
    register("credit", model_file)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_keys.api_key_create(name="fs", all_models=True)[1])
    return client


def predict(client: APIClient, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/models/credit/predict", body, format="json")


def _fallbacks() -> float:
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("phoenix_feature_store_fallback_total", {"backend": "redis"})
        or 0.0
    )


# --- database backend (embedded default) -------------------------------------------


def test_database_store_statuses(db: None) -> None:
    store = DatabaseFeatureStore(ttl_s=60)
    store.put_many({"cust_1": {"x1": 1.0, "x2": 2.0}})
    store.put_many({"cust_1": {"x3": 3.0}}, at=time.time() - 120)

    lookup = store.get("cust_1", ["x1", "x2", "x3", "x4"])

    assert lookup.values == {"x1": 1.0, "x2": 2.0}
    assert lookup.status == {
        "x1": FeatureStatus.PRESENT,
        "x2": FeatureStatus.PRESENT,
        "x3": FeatureStatus.STALE,
        "x4": FeatureStatus.NOT_FOUND,
    }


def test_predict_by_entity_uses_stored_features(
    api: APIClient, model_file: Path, settings: Any
) -> None:
    settings.PHOENIX_FEATURE_STORE = "database"
    services.online_features_write(rows={"cust_7": ROW})

    body = predict(api, {"entity_id": "cust_7"}).json()

    labels, _ = onnx_predict(model_file, [[ROW[f] for f in FEATURES]])
    assert body["predictions"] == labels


def test_request_features_override_and_complete_the_store(
    api: APIClient, model_file: Path, settings: Any
) -> None:
    settings.PHOENIX_FEATURE_STORE = "database"
    services.online_features_write(rows={"cust_7": {"x1": 9.0, "x2": -1.0}})

    body = predict(api, {"entity_id": "cust_7", "features": {"x1": 0.5, "x3": 2.0}}).json()

    labels, _ = onnx_predict(model_file, [[0.5, -1.0, 2.0]])
    assert body["predictions"] == labels


def test_unknown_entity_is_422_naming_features(api: APIClient, settings: Any) -> None:
    settings.PHOENIX_FEATURE_STORE = "database"

    response = predict(api, {"entity_id": "nobody", "features": {"x1": 1.0}})

    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details["missing"] == ["x2", "x3"]
    assert details["feature_status"] == {"x2": "NOT_FOUND", "x3": "NOT_FOUND"}


def test_stale_features_are_not_used(api: APIClient, settings: Any) -> None:
    settings.PHOENIX_FEATURE_STORE = "database"
    settings.PHOENIX_FEATURE_TTL_S = 60
    services.online_features_write(rows={"cust_1": ROW}, at=time.time() - 3600)

    response = predict(api, {"entity_id": "cust_1"})

    assert response.status_code == 422
    assert response.json()["error"]["details"]["feature_status"]["x1"] == "STALE"


# --- Redis backend --------------------------------------------------------------------


def test_redis_store_statuses_and_ttl_at_read_time(redis_url: str, redis_client: Any) -> None:
    store = RedisFeatureStore(redis_url, ttl_s=60)
    store.put_many({"cust_1": {"x1": 1.5, "x2": 2.5}})
    store.put_many({"cust_1": {"x3": 3.5}}, at=time.time() - 61)

    lookup = store.get("cust_1", ["x1", "x2", "x3", "x9"])

    assert lookup.values == {"x1": 1.5, "x2": 2.5}
    assert lookup.status["x3"] is FeatureStatus.STALE
    assert lookup.status["x9"] is FeatureStatus.NOT_FOUND
    assert redis_client.ttl("phoenix:features:cust_1") > 0


def test_predict_by_entity_from_redis(
    api: APIClient, model_file: Path, settings: Any, redis_url: str, redis_client: Any
) -> None:
    settings.PHOENIX_FEATURE_STORE = "redis"
    settings.PHOENIX_FEATURE_STORE_URL = redis_url
    services.online_features_write(rows={"cust_3": ROW})

    body = predict(api, {"entity_id": "cust_3"}).json()

    labels, _ = onnx_predict(model_file, [[ROW[f] for f in FEATURES]])
    assert body["predictions"] == labels


def test_unreachable_redis_falls_back_to_request_features(
    api: APIClient, model_file: Path, settings: Any
) -> None:
    settings.PHOENIX_FEATURE_STORE = "redis"
    settings.PHOENIX_FEATURE_STORE_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    before = _fallbacks()

    partial = predict(api, {"entity_id": "cust_1", "features": {"x1": 0.5}})
    full = predict(api, {"entity_id": "cust_1", "features": ROW})

    assert partial.status_code == 422
    assert partial.json()["error"]["details"]["missing"] == ["x2", "x3"]
    assert full.status_code == 200
    labels, _ = onnx_predict(model_file, [[ROW[f] for f in FEATURES]])
    assert full.json()["predictions"] == labels
    # A complete request needs no store; only the partial one tried (and fell back).
    assert _fallbacks() == before + 1


def test_unreachable_redis_fails_fast_and_is_not_retried_at_once() -> None:
    store = RedisFeatureStore(f"redis://127.0.0.1:{free_port()}/0", ttl_s=60)
    with pytest.raises(FeatureStoreUnavailable):
        store.get("e", ["x1"])
    started = time.perf_counter()
    with pytest.raises(FeatureStoreUnavailable, match="marked down"):
        store.get("e", ["x1"])
    assert time.perf_counter() - started < 0.01
