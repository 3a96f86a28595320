"""POST /api/v1/models/{name}/predict end to end through Django, with real ONNX models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rest_framework.test import APIClient

from inference import api_keys
from inference.auth import api_key_cache_clear
from inference.models import RoutingPolicy
from inference.routing import shadow_request_id
from inference.session_cache import session_cache
from tests.inference_support import (
    FEATURES,
    onnx_classifier,
    onnx_predict,
    onnx_regressor,
    prediction_events_record,
    register,
)

pytestmark = pytest.mark.usefixtures("fresh_inference_state")

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


@pytest.fixture(autouse=True)
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Prediction events as the publisher receives them (none reach its flusher thread)."""
    return prediction_events_record(monkeypatch)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inference-models")
    return {
        "a": onnx_classifier(folder / "a.onnx"),
        "b": onnx_classifier(folder / "b.onnx", flip=True),
        "reg": onnx_regressor(folder / "reg.onnx"),
    }


@pytest.fixture
def champion(db: None, model_files: dict[str, Path]) -> Any:
    return register("credit", model_files["a"])


@pytest.fixture
def key(db: None) -> str:
    return api_keys.api_key_create(name="tests", all_models=True)[1]


@pytest.fixture
def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def predict(client: APIClient, body: Any, model: str = "credit") -> Any:
    return client.post(f"/api/v1/models/{model}/predict", body, format="json")


def test_single_row_returns_what_onnxruntime_says(
    api: APIClient, champion: Any, model_files: dict[str, Path], events: list[dict[str, Any]]
) -> None:
    response = predict(api, {"features": ROW})

    assert response.status_code == 200, response.content
    body = response.json()
    labels, probs = onnx_predict(model_files["a"], [[ROW[f] for f in FEATURES]])
    assert body["model"] == "credit"
    assert body["version"] == champion.version
    assert body["routed_by"] == "single:champion"
    assert body["predictions"] == labels
    assert np.allclose(body["probabilities"], probs, atol=1e-6)
    assert body["confidence"] == pytest.approx([float(probs[0].max())], abs=1e-6)
    assert body["latency_ms"] > 0
    assert len(events) == 1
    event = events[0]
    assert event["request_id"] == body["request_id"]
    assert event["features"] == ROW
    assert event["prediction"] == labels[0]
    assert event["routed_by"] == "single:champion"


def test_many_rows_as_objects_or_lists_agree(
    api: APIClient, champion: Any, model_files: dict[str, Path]
) -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(20, 3)).round(4).tolist()
    as_objects = predict(api, {"features": [dict(zip(FEATURES, r, strict=True)) for r in rows]})
    as_lists = predict(api, {"features": rows})

    assert as_objects.status_code == as_lists.status_code == 200
    labels, _ = onnx_predict(model_files["a"], rows)
    assert as_objects.json()["predictions"] == labels
    assert as_lists.json()["predictions"] == labels
    assert len(as_lists.json()["confidence"]) == 20


def test_regressor_returns_predictions_only(
    api: APIClient, model_files: dict[str, Path], db: None
) -> None:
    register("price", model_files["reg"])

    body = predict(api, {"features": ROW}, model="price").json()

    assert body["predictions"] == pytest.approx([0.5 + 2 * -1.0 - 2.0 + 0.5], abs=1e-3)
    assert "probabilities" not in body
    assert "confidence" not in body


def test_x_api_key_header_is_accepted(key: str, champion: Any) -> None:
    response = APIClient().post(
        "/api/v1/models/credit/predict", {"features": ROW}, format="json", HTTP_X_API_KEY=key
    )
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_missing_or_invalid_key_is_401(champion: Any, header: str | None) -> None:
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = predict(client, {"features": ROW})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_revoked_key_stops_working_without_restart(
    api: APIClient, champion: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from inference.models import ApiKey

    assert predict(api, {"features": ROW}).status_code == 200  # now cached in-process
    with django_capture_on_commit_callbacks(execute=True):
        api_keys.api_key_revoke(api_key=ApiKey.objects.get())

    assert predict(api, {"features": ROW}).status_code == 401


def test_key_not_scoped_to_model_is_403(
    champion: Any, model_files: dict[str, Path], db: None
) -> None:
    register("other", model_files["b"])
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_keys.api_key_create(name="s", model_names=["other"])[1])

    assert predict(client, {"features": ROW}, model="other").status_code == 200
    forbidden = predict(client, {"features": ROW})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"


def test_unknown_model_and_version_are_404(api: APIClient, champion: Any) -> None:
    assert predict(api, {"features": ROW}, model="nope").status_code == 404
    response = predict(api, {"features": ROW, "version": "99"})
    assert response.status_code == 404


def test_model_without_servable_version_is_503(
    api: APIClient, model_files: dict[str, Path], db: None
) -> None:
    register("draft", model_files["a"], stage="dev")
    response = predict(api, {"features": ROW}, model="draft")
    assert response.status_code == 503
    assert "servable" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        {"features": "x1=1"},
        {"features": []},
        {"features": [{"x1": 1, "x2": 2, "x3": 3}, [1, 2, 3]]},
        {},
        {"feature": {"x1": 1}},
        {"features": {"x1": 1, "x2": 2, "x3": 3}, "entity_id": {"id": 1}},
        {"features": {"x1": 1, "x2": 2, "x3": 3}, "version": ""},
    ],
)
def test_bad_body_is_400(api: APIClient, champion: Any, body: Any) -> None:
    response = predict(api, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_input"


def test_invalid_json_is_400(api: APIClient, champion: Any) -> None:
    response = api.post(
        "/api/v1/models/credit/predict", b"{not json", content_type="application/json"
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("features", "kind", "names"),
    [
        ({"x1": 1.0, "x2": 2.0}, "missing", ["x3"]),
        ({"x1": 1.0, "x2": 2.0, "x3": 3.0, "zip": 1}, "unexpected", ["zip"]),
        ({"x1": 1.0, "x2": "two", "x3": True}, "non_numeric", ["x2", "x3"]),
        ({"x1": 1.0, "x2": None, "x3": 3.0}, "missing", ["x2"]),
    ],
)
def test_unusable_features_are_422_and_named(
    api: APIClient, champion: Any, features: dict[str, Any], kind: str, names: list[str]
) -> None:
    response = predict(api, {"features": features})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][kind] == names
    assert all(name in error["message"] for name in names)


@pytest.mark.parametrize("bad", [True, "2", None, [1.0]])
def test_non_numeric_value_in_a_list_row_is_422_and_named(
    api: APIClient, champion: Any, bad: Any
) -> None:
    rows: list[list[Any]] = [[1.0, 2.0, 3.0], [4, 5, 6], [7.0, bad, 9.0]]
    response = predict(api, {"features": rows})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details["row"] == 2
    assert details["non_numeric"] == ["x2"]


def test_a_batch_logs_one_event_per_row_with_named_features(
    api: APIClient, champion: Any, events: list[dict[str, Any]]
) -> None:
    rows = [[0.5, -1.0, 2.0], [1, 2, 3], [-0.25, 0.0, 4.5]]
    body = predict(api, {"features": rows}).json()

    assert [e["row_index"] for e in events] == [0, 1, 2]
    assert [e["features"] for e in events] == [dict(zip(FEATURES, r, strict=True)) for r in rows]
    assert [e["prediction"] for e in events] == body["predictions"]
    assert [e["probabilities"] for e in events] == body["probabilities"]
    assert [e["confidence"] for e in events] == body["confidence"]
    assert {e["request_id"] for e in events} == {body["request_id"]}
    assert len({e["event_id"] for e in events}) == 3


def test_row_of_wrong_width_is_422(api: APIClient, champion: Any) -> None:
    response = predict(api, {"features": [[1, 2, 3], [1, 2]]})
    assert response.status_code == 422
    assert response.json()["error"]["details"]["row"] == 1


def test_too_many_rows_is_413(api: APIClient, champion: Any, settings: Any) -> None:
    settings.PHOENIX_PREDICT_MAX_ROWS = 4
    assert predict(api, {"features": [[1, 2, 3]] * 4}).status_code == 200
    response = predict(api, {"features": [[1, 2, 3]] * 5})
    assert response.status_code == 413
    assert response.json()["error"]["details"] == {"rows": 5, "limit": 4}


def test_pinned_version_is_served(
    api: APIClient, champion: Any, model_files: dict[str, Path]
) -> None:
    staging = register("credit", model_files["b"], stage="staging")

    body = predict(api, {"features": ROW, "version": staging.version}).json()

    assert body["version"] == staging.version
    assert body["routed_by"] == "pinned"
    labels, _ = onnx_predict(model_files["b"], [[ROW[f] for f in FEATURES]])
    assert body["predictions"] == labels


def test_warm_request_makes_no_database_query(
    api: APIClient, champion: Any, django_assert_num_queries: Any
) -> None:
    assert predict(api, {"features": ROW}).status_code == 200
    with django_assert_num_queries(0):
        assert predict(api, {"features": ROW}).status_code == 200


def test_stage_change_refreshes_cache_without_restart(
    api: APIClient,
    champion: Any,
    model_files: dict[str, Path],
    django_capture_on_commit_callbacks: Any,
) -> None:
    from models_registry.services import model_version_set_stage

    assert predict(api, {"features": ROW}).json()["version"] == champion.version
    candidate = register("credit", model_files["b"], stage="staging")

    with django_capture_on_commit_callbacks(execute=True):
        model_version_set_stage(version=candidate, stage="production")

    assert predict(api, {"features": ROW}).json()["version"] == candidate.version
    assert session_cache.get(candidate.sha256) is not None
    # The replaced version's session is dropped once nothing serves it.
    assert session_cache.get(champion.sha256) is None


def _policy(model: Any, strategy: str, percent: float = 0.0, seed: str = "s1") -> None:
    RoutingPolicy.objects.update_or_create(
        model=model, defaults={"strategy": strategy, "challenger_percent": percent, "seed": seed}
    )
    session_cache.clear()  # as the admin save's broadcast does (tested in test_inference_admin)


def test_ab_routing_is_sticky_per_entity(
    api: APIClient, champion: Any, model_files: dict[str, Path]
) -> None:
    challenger = register("credit", model_files["b"], stage="staging", alias="challenger")
    _policy(champion.model, "ab", 50.0)

    served = {}
    for i in range(40):
        first = predict(api, {"features": ROW, "entity_id": f"cust_{i}"}).json()
        again = predict(api, {"features": ROW, "entity_id": f"cust_{i}"}).json()
        assert first["version"] == again["version"]
        served[i] = first["version"]
        assert first["routed_by"] in ("ab:champion", "ab:challenger")
    assert set(served.values()) == {champion.version, challenger.version}


def test_canary_at_100_percent_serves_the_challenger(
    api: APIClient, champion: Any, model_files: dict[str, Path]
) -> None:
    challenger = register("credit", model_files["b"], stage="staging", alias="challenger")
    _policy(champion.model, "canary", 100.0)

    body = predict(api, {"features": ROW}).json()

    assert body["version"] == challenger.version
    assert body["routed_by"] == "canary:challenger"


def test_shadow_logs_challenger_but_returns_champion(
    api: APIClient, champion: Any, model_files: dict[str, Path], events: list[dict[str, Any]]
) -> None:
    challenger = register("credit", model_files["b"], stage="staging", alias="challenger")
    _policy(champion.model, "shadow")

    body = predict(api, {"features": ROW}).json()

    assert body["version"] == champion.version
    assert body["routed_by"] == "shadow:champion"
    by_route = {e["routed_by"]: e for e in events}
    assert set(by_route) == {"shadow:champion", "shadow"}
    shadow = by_route["shadow"]
    assert shadow["version"] == challenger.version
    # Its own id, linked to the client's (feedback on the client's id labels both rows).
    assert shadow["request_id"] == shadow_request_id(body["request_id"])
    assert shadow["request_id"] != body["request_id"]
    # The two models disagree by construction: the logged answer is the challenger's own.
    assert shadow["prediction"] != body["predictions"][0]


def test_readyz_lists_each_servable_version_with_provider(
    api: APIClient, champion: Any, client: Any
) -> None:
    not_warm = client.get("/readyz")
    assert not_warm.status_code == 503
    component = f"model:credit:{champion.version}"
    assert not_warm.json()["components"][component]["status"] == "fail"

    session_cache.refresh()
    ready = client.get("/readyz")

    assert ready.status_code == 200, ready.content
    assert ready.json()["components"][component]["provider"] == "CPUExecutionProvider"


def test_metrics_count_requests_with_bounded_labels(
    api: APIClient, champion: Any, client: Any
) -> None:
    predict(api, {"features": ROW})
    predict(api, {"features": {"x1": 1}})
    predict(api, {"features": ROW}, model="cust_12345")

    text = client.get("/metrics").content.decode()

    version = champion.version
    assert (
        f'phoenix_inference_requests_total{{model="credit",route="single:champion",'
        f'status="200",version="{version}"}}' in text
    )
    assert 'status="422"' in text
    assert 'model="cust_12345"' not in text
    assert 'phoenix_inference_requests_total{model="unknown"' in text
    loaded = f'model="credit",provider="CPUExecutionProvider",version="{version}"'
    assert f"phoenix_model_loaded{{{loaded}}} 1.0" in text
    assert "phoenix_prediction_confidence_bucket" in text
    assert "phoenix_inference_model_seconds_bucket" in text


def test_archived_version_cannot_be_pinned(
    api: APIClient, champion: Any, model_files: dict[str, Path]
) -> None:
    from models_registry.services import model_version_set_stage

    old = register("credit", model_files["b"], stage="staging")
    model_version_set_stage(version=old, stage="archived")

    response = predict(api, {"features": ROW, "version": old.version})

    assert response.status_code == 404
    assert "archived" in response.json()["error"]["message"]


def test_only_versions_in_pinnable_stages_can_be_pinned(
    api: APIClient, champion: Any, model_files: dict[str, Path], settings: Any
) -> None:
    dev = register("credit", model_files["b"], stage="dev")

    refused = predict(api, {"features": ROW, "version": dev.version})

    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "version_not_pinnable"
    assert error["details"]["stage"] == "dev"
    assert error["details"]["pinnable_stages"] == ["production", "staging"]
    assert predict(api, {"features": ROW, "version": champion.version}).status_code == 200
    settings.PHOENIX_PINNABLE_STAGES = ["production"]
    assert predict(api, {"features": ROW, "version": dev.version}).status_code == 403
    settings.PHOENIX_PINNABLE_STAGES = ["production", "dev"]
    assert predict(api, {"features": ROW, "version": dev.version}).status_code == 200


@pytest.mark.parametrize(
    "features",
    [
        {"x1": 1e39, "x2": 0.0, "x3": 0.0},
        [[0.0, -1e39, 0.0]],
        [{"x1": 0.0, "x2": 0.0, "x3": 0.0}, {"x1": 0.0, "x2": 0.0, "x3": 3.5e38}],
    ],
)
def test_values_beyond_float32_are_422_naming_the_feature(
    api: APIClient, champion: Any, features: Any, events: list[dict[str, Any]]
) -> None:
    response = predict(api, {"features": features})

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    named = error["details"]["out_of_range"]
    assert len(named) == 1
    assert named[0] in error["message"]
    assert events == []


def test_integers_past_64_bits_within_float32_are_scored(api: APIClient, champion: Any) -> None:
    response = predict(api, {"features": {"x1": 2**64, "x2": 0.0, "x3": 0.0}})

    assert response.status_code == 200, response.content


def test_unloadable_model_file_is_503_and_not_ready(
    api: APIClient, client: Any, tmp_path: Path
) -> None:
    # A model of its own (its own content-addressed file), restored afterwards.
    champion = register("credit", onnx_classifier(tmp_path / "own.onnx", seed=99))
    stored = Path(champion.file.path)
    original = stored.read_bytes()
    stored.write_bytes(b"not an onnx model")
    try:
        response = predict(api, {"features": ROW})
    finally:
        stored.write_bytes(original)

    assert response.status_code == 503
    version = champion.version
    assert response.json()["error"]["details"] == {"model": "credit", "version": version}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    component = ready.json()["components"][f"model:credit:{version}"]
    assert component["status"] == "fail"
    # The load error itself, so an operator sees why.
    assert component["error"].startswith(("InvalidProtobuf", "Fail", "RuntimeException"))


def test_answers_json_whatever_the_accept_header(api: APIClient, champion: Any) -> None:
    response = api.post(
        "/api/v1/models/credit/predict", {"features": ROW}, format="json", HTTP_ACCEPT="text/html"
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["model"] == "credit"


def test_unreachable_database_is_503_not_500(
    champion: Any, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from inference import auth
    from inference import session_cache as cache_module

    def down(**_: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(cache_module, "serving_plans_read", lambda: down())
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    cold_registry = predict(client, {"features": ROW})
    monkeypatch.setattr(auth, "api_key_principal_get", down)
    api_key_cache_clear()
    cold_key = predict(client, {"features": ROW})

    assert cold_registry.status_code == 503
    assert cold_key.status_code == 503
    assert cold_key.json()["error"]["code"] == "dependency_unavailable"
