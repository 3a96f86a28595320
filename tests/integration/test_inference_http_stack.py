"""The inference URLs' slim Django stack (phoenix/http_stack.py), under WSGI and ASGI.

Django's test client always builds the full middleware stack, so these tests call
the WSGI and ASGI applications themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.signals import request_finished
from django.middleware.csrf import CsrfViewMiddleware
from prometheus_client import REGISTRY

from inference.api_keys import api_key_create
from phoenix.http_stack import INFERENCE_PATHS, HTTPApplication, OneHopWSGI
from tests.inference_support import onnx_classifier, onnx_predict, register, wsgi_call

pytestmark = pytest.mark.usefixtures("fresh_inference_state", "no_prediction_events")

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}
SKIPPED = [SessionMiddleware, CsrfViewMiddleware, AuthenticationMiddleware, MessageMiddleware]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_classifier(tmp_path_factory.mktemp("stack") / "m.onnx")


@pytest.fixture
def key(db: None, model_file: Path) -> str:
    register("credit", model_file)
    return api_key_create(name="stack", all_models=True)[1]


@pytest.fixture(scope="module")
def app() -> HTTPApplication:
    return HTTPApplication()


def predict_body(row: dict[str, float] = ROW) -> bytes:
    return json.dumps({"features": row}).encode()


def test_inference_paths() -> None:
    assert INFERENCE_PATHS.match("/api/v1/models/credit/predict")
    assert INFERENCE_PATHS.match("/v2/models/credit/infer")
    assert INFERENCE_PATHS.match("/v2")
    # Feedback also accepts a browser session; the rest are pages and other APIs.
    for path in [
        "/api/v1/predictions/abc/feedback",
        "/api/v1/models/credit/predict/",
        "/api/v1/models/credit/drift",
        "/api/v1/models/",
        "/v2x",
        "/admin/",
    ]:
        assert not INFERENCE_PATHS.match(path), path


def test_predict_skips_session_csrf_auth_and_messages(
    app: HTTPApplication, key: str, model_file: Path
) -> None:
    spies = [mock.patch.object(cls, "process_request", autospec=True) for cls in SKIPPED]
    started = [spy.start() for spy in spies]
    try:
        status, headers, content = wsgi_call(
            app, "POST", "/api/v1/models/credit/predict", predict_body(), {"X-API-Key": key}
        )
    finally:
        for spy in spies:
            spy.stop()

    assert status == 200
    labels, probs = onnx_predict(model_file, [list(ROW.values())])
    body = json.loads(content)
    assert body["predictions"] == labels
    assert body["probabilities"][0] == pytest.approx(probs[0].tolist(), abs=1e-6)
    assert [spy.call_count for spy in started] == [0, 0, 0, 0]
    # No session machinery, no frame options; security headers and a length remain.
    assert "X-Frame-Options" not in headers
    assert "Set-Cookie" not in headers
    assert "Vary" not in headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Length"] == str(len(content))


def test_pages_and_feedback_still_get_the_full_stack(app: HTTPApplication, db: None) -> None:
    real = SessionMiddleware.process_request
    with mock.patch.object(
        SessionMiddleware, "process_request", autospec=True, side_effect=real
    ) as session_spy:
        status, headers, content = wsgi_call(app, "GET", "/accounts/login/")
        assert status == 200
        assert headers["X-Frame-Options"] == "DENY"
        assert b"csrfmiddlewaretoken" in content

        status, _, content = wsgi_call(
            app, "POST", "/api/v1/predictions/nope/feedback", b'{"actual": 1}'
        )
        assert status in (401, 403)
        assert "error" in json.loads(content)

    assert session_spy.call_count == 2


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("/api/v1/models/nope/predict", predict_body(), True, 404, "not_found"),
        ("/api/v1/models/credit/predict", predict_body(), False, 401, "not_authenticated"),
        ("/api/v1/models/credit/predict", b"{not json", True, 400, None),
        ("/api/v1/models/credit/predict", predict_body({"x1": 1.0}), True, 422, None),
    ],
)
def test_errors_keep_the_json_shape(
    app: HTTPApplication,
    key: str,
    path: str,
    body: bytes,
    headers: bool,
    status: int,
    code: str | None,
) -> None:
    got, response_headers, content = wsgi_call(
        app, "POST", path, body, {"X-API-Key": key} if headers else None
    )

    assert got == status
    assert response_headers["Content-Type"] == "application/json"
    error = json.loads(content)["error"]
    assert set(error) >= {"code", "message", "details"}
    if code:
        assert error["code"] == code


def test_django_404_outside_the_inference_paths_is_json(app: HTTPApplication, db: None) -> None:
    status, _, content = wsgi_call(
        app, "POST", "/api/v1/models/credit/predict/extra", b"{}", {"Accept": "application/json"}
    )
    assert status == 404
    assert json.loads(content)["error"]["code"] == "not_found"


def test_prometheus_counts_slim_requests(app: HTTPApplication, key: str) -> None:
    labels = {"method": "POST", "status": "200", "view": "inference-predict"}
    name = "django_http_responses_total_by_status_view_method_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    requests_before = REGISTRY.get_sample_value("django_http_requests_before_middlewares_total")

    for _ in range(3):
        status, _, _ = wsgi_call(
            app, "POST", "/api/v1/models/credit/predict", predict_body(), {"X-API-Key": key}
        )
        assert status == 200

    assert REGISTRY.get_sample_value(name, labels) == before + 3
    after = REGISTRY.get_sample_value("django_http_requests_before_middlewares_total")
    assert after == (requests_before or 0.0) + 3


# --- ASGI: phoenix.asgi sends the predict URL through OneHopWSGI --------------------------


def asgi_call(
    path: str, body: bytes, key: str | None, *, content_length: bool = True
) -> dict[str, Any]:
    from phoenix.asgi import application

    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if content_length:
        headers.append((b"content-length", str(len(body)).encode()))
    if key:
        headers.append((b"x-api-key", key.encode()))

    async def run() -> dict[str, Any]:
        communicator = HttpCommunicator(application, "POST", path, body=body, headers=headers)
        return await communicator.get_response(timeout=20)  # type: ignore[no-any-return]

    return async_to_sync(run)()


@pytest.fixture
def committed_key(transactional_db: None, model_file: Path) -> str:
    # The request runs on a pool thread with its own database connection.
    register("credit", model_file)
    return api_key_create(name="stack", all_models=True)[1]


def test_asgi_predict_runs_in_one_hop_and_finishes_the_request(
    committed_key: str, model_file: Path
) -> None:
    finished: list[Any] = []

    def on_finished(**kwargs: Any) -> None:
        finished.append(kwargs)

    request_finished.connect(on_finished)
    try:
        with mock.patch("a2wsgi.wsgi.WSGIResponder.__call__") as a2wsgi_path:
            response = asgi_call("/api/v1/models/credit/predict", predict_body(), committed_key)
    finally:
        request_finished.disconnect(on_finished)

    assert response["status"] == 200
    assert a2wsgi_path.call_count == 0
    assert len(finished) == 1  # the response was closed: connections and caches cleaned up
    labels, _ = onnx_predict(model_file, [list(ROW.values())])
    assert json.loads(response["body"])["predictions"] == labels
    headers = dict(response["headers"])
    assert headers[b"content-length"] == str(len(response["body"])).encode()
    assert b"x-frame-options" not in headers


def test_asgi_predict_errors_are_json(committed_key: str) -> None:
    response = asgi_call("/api/v1/models/nope/predict", predict_body(), committed_key)

    assert response["status"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"


def test_asgi_body_without_length_is_read_by_the_edge_and_served(committed_key: str) -> None:
    # Django's WSGI request reads no body without a Content-Length; the ASGI edge reads a
    # chunked body (at most PHOENIX_MAX_BODY_BYTES) and hands it on with its length.
    response = asgi_call(
        "/api/v1/models/credit/predict", predict_body(), committed_key, content_length=False
    )

    assert response["status"] == 200
    assert json.loads(response["body"])["model"] == "credit"


def test_large_or_chunked_bodies_go_to_the_fallback() -> None:
    calls: list[str] = []

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def never(environ: Any, start_response: Any) -> Any:
        raise AssertionError("the buffered path must not run")

    hop = OneHopWSGI(never, executor=mock.Mock(), fallback=fallback, max_buffered=10)

    async def run(headers: list[tuple[bytes, bytes]]) -> int:
        communicator = HttpCommunicator(hop, "POST", "/p", body=b"x" * 11, headers=headers)
        return (await communicator.get_response())["status"]  # type: ignore[no-any-return]

    assert async_to_sync(run)([(b"content-length", b"11")]) == 299
    assert async_to_sync(run)([]) == 299
    assert calls == ["/p", "/p"]
