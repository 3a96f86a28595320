"""The ASGI data plane (inference/api/dataplane.py) answers as Django's DRF view does.

Each request goes once through the slim Django stack (the DRF ``PredictView``, the
REST API's definition) and once through the data plane; status, body (less request
id and latency), headers and the logged events must be identical. A recording
fallback says which requests the data plane answered itself: the warm ones must be,
or the comparison would prove nothing.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from inference import api_keys, services
from inference.api.dataplane import DataPlane, Headers
from phoenix.http_stack import HTTPApplication
from tests.inference_support import (
    onnx_classifier,
    prediction_events_record,
    register,
    wsgi_call,
)

# No event reaches the real publisher, whose writer would commit rows that outlive a test.
pytestmark = pytest.mark.usefixtures("fresh_inference_state", "no_prediction_events")

PATH = "/api/v1/models/credit/predict"
ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}
# Values that differ between any two calls.
VOLATILE = ("request_id", "latency_ms", "event_id", "created_at")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_classifier(tmp_path_factory.mktemp("dataplane") / "m.onnx")


@pytest.fixture(scope="module")
def django_app() -> HTTPApplication:
    return HTTPApplication()


class Paths:
    """Calls the same request through Django and through the data plane."""

    def __init__(self, django_app: HTTPApplication) -> None:
        self.slim = django_app.slim
        self.declined: list[str] = []
        self.plane = DataPlane(
            self._not_here, django_rest=self._django_asgi, executor=ThreadPoolExecutor(2)
        )

    async def _not_here(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError(f"{scope['path']} should not leave the REST route")

    async def _django_asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The slim Django stack behind ASGI, on the test's thread (its transaction)."""
        self.declined.append(scope["path"])
        message = await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status, response_headers, body = await sync_to_async(wsgi_call)(
            self.slim, "POST", scope["path"], message.get("body", b""), _wsgi_headers(headers)
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in response_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def django(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        status, response_headers, content = wsgi_call(
            self.slim, "POST", PATH, body, _wsgi_headers(headers)
        )
        return status, {k.lower(): v for k, v in response_headers.items()}, content

    def dataplane(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        raw = [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        scope = {
            "type": "http",
            "method": "POST",
            "path": PATH,
            "scheme": "http",
            "query_string": b"",
            "headers": raw,
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async_to_sync(self.plane)(scope, receive, send)
        start, content = sent
        response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], response_headers, content["body"]


def _wsgi_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}


def _stable(content: bytes) -> Any:
    body = json.loads(content)
    if isinstance(body, dict):
        for name in VOLATILE:
            body.pop(name, None)
    return body


def _events(recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in event.items() if k not in VOLATILE} for event in recorded]


@pytest.fixture
def keys(db: None, model_file: Path) -> dict[str, str]:
    from models_registry.services import registered_model_delete

    register("credit", model_file)
    register("credit", onnx_classifier(model_file.parent / "dev.onnx", seed=5), stage="dev")
    register("other", onnx_classifier(model_file.parent / "other.onnx", seed=3))
    gone = register("gone", onnx_classifier(model_file.parent / "gone.onnx", seed=4))
    keys = {
        "all": api_keys.api_key_create(name="all", all_models=True)[1],
        "other": api_keys.api_key_create(name="other", model_names=["other"])[1],
        "gone": api_keys.api_key_create(name="gone", model_names=["gone"])[1],
    }
    registered_model_delete(model=gone.model)  # the key's only model
    return keys


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


# (case, body, which key, whether the data plane answers it itself)
CASES: list[tuple[str, bytes, str | None, bool]] = [
    ("one row", _json({"features": ROW}), "all", True),
    ("rows as objects", _json({"features": [ROW, {**ROW, "x1": 3.0}]}), "all", True),
    ("rows as lists", _json({"features": [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]}), "all", True),
    ("pinned version", _json({"features": ROW, "version": "1"}), "all", True),
    ("missing feature", _json({"features": {"x1": 1.0}}), "all", True),
    ("non-numeric feature", _json({"features": {**ROW, "x2": "high"}}), "all", True),
    ("unknown field", _json({"features": ROW, "colour": "red"}), "all", True),
    ("body not an object", _json([ROW]), "all", True),
    ("no features", _json({}), "all", True),
    ("too many rows", _json({"features": [ROW] * 1025}), "all", True),
    ("key scoped to another model", _json({"features": ROW}), "other", True),
    ("key whose models were all deleted", _json({"features": ROW}), "gone", True),
    ("feature beyond float32", _json({"features": {**ROW, "x1": 1e39}}), "all", True),
    ("rows beyond float32", _json({"features": [[1.0, -3.5e38, 0.0]]}), "all", True),
    ("integer past 64 bits", _json({"features": {**ROW, "x3": 2**64}}), "all", True),
    # Refused before its session loads, so the data plane never finds it warm.
    ("pinned dev version", _json({"features": ROW, "version": "2"}), "all", False),
    ("malformed JSON", b'{"features": {"x1": ', "all", False),
    ("no API key", _json({"features": ROW}), None, False),
    ("unknown API key", _json({"features": ROW}), "phx_unknown", False),
    ("unknown version", _json({"features": ROW, "version": "9"}), "all", False),
]


@pytest.mark.parametrize(("case", "body", "key", "answered_here"), CASES, ids=[c[0] for c in CASES])
def test_dataplane_answers_as_the_drf_view(
    case: str,
    body: bytes,
    key: str | None,
    answered_here: bool,
    keys: dict[str, str],
    django_app: HTTPApplication,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = Paths(django_app)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = keys.get(key, key)
    # Warm: the key cached, the plans read, the sessions loaded (as after any request).
    for warm_key in keys.values():
        paths.django(_json({"features": ROW}), {**headers, "X-API-Key": warm_key})
    recorded = prediction_events_record(monkeypatch)

    django_status, django_headers, django_body = paths.django(body, headers)
    django_events = _events(recorded)
    recorded.clear()
    plane_status, plane_headers, plane_body = paths.dataplane(body, headers)

    assert (plane_status, _stable(plane_body)) == (django_status, _stable(django_body))
    assert _events(recorded) == django_events
    assert {k: v for k, v in plane_headers.items() if k != "content-length"} == {
        k: v for k, v in django_headers.items() if k != "content-length"
    }
    assert plane_headers["content-length"] == str(len(plane_body))
    assert (paths.declined == []) is answered_here, paths.declined


def test_feature_store_entity_answers_as_the_drf_view(
    transactional_db: None,
    model_file: Path,
    django_app: HTTPApplication,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup runs on a pool thread (a query in the embedded store): not the loop."""
    register("credit", model_file)
    key = api_keys.api_key_create(name="fs", all_models=True)[1]
    services.online_features_write(rows={"cust_1": {"x1": 1.0, "x2": 0.5}})
    paths = Paths(django_app)
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    paths.django(_json({"features": ROW}), headers)
    recorded = prediction_events_record(monkeypatch)

    for body in (
        _json({"entity_id": "cust_1", "features": {"x3": 2.0}}),  # completed from the store
        _json({"entity_id": "cust_1"}),  # x3 is missing: 422 naming it
        _json({"entity_id": "nobody"}),
    ):
        recorded.clear()
        django_status, _, django_body = paths.django(body, headers)
        django_events = _events(recorded)
        recorded.clear()
        plane_status, _, plane_body = paths.dataplane(body, headers)
        assert (plane_status, _stable(plane_body)) == (django_status, _stable(django_body))
        assert _events(recorded) == django_events
    assert paths.declined == []
    assert django_status == 422


def test_cold_process_and_odd_requests_go_to_django(
    keys: dict[str, str], django_app: HTTPApplication
) -> None:
    paths = Paths(django_app)
    headers = {"Content-Type": "application/json", "X-API-Key": keys["all"]}

    form_headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}

    cold = paths.dataplane(_json({"features": ROW}), headers)  # nothing cached yet
    form = paths.dataplane(b"x1=1", form_headers)

    assert cold[0] == 200
    assert form[:1] == paths.django(b"x1=1", form_headers)[:1]
    assert form[0] == 400
    assert paths.declined == [PATH, PATH]
    assert paths.dataplane(_json({"features": ROW}), headers)[0] == 200
    assert len(paths.declined) == 2  # warm now: answered by the data plane


def test_headers_are_case_insensitive() -> None:
    headers = Headers([(b"x-api-key", b"k"), (b"content-type", b"application/json")])

    assert headers.get("X-API-Key") == "k"
    assert headers["Content-Type"] == "application/json"
    assert "CONTENT-TYPE" in headers
    assert headers.get("Authorization") is None
    assert sorted(headers) == ["content-type", "x-api-key"]
