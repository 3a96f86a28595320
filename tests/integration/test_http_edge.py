"""The ASGI edge (phoenix/edge.py) against uvicorn serving the real application.

Body and header limits, /v2's Host check, and the throttles (per client IP, per
credential, per authentication failure), each over real HTTP. Throttles run on a
fixed clock, so no window ever ends mid-test; their sharing across processes is
checked against real Redis.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.api_keys import api_key_create
from phoenix.edge import Edge
from phoenix.throttling import Rate, Throttle, cache_shared_add
from tests.asgi_server import LiveServer, asgi_server_running
from tests.inference_support import onnx_classifier, register

pytestmark = pytest.mark.usefixtures("fresh_inference_state", "no_prediction_events")

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}
NOW = 1_800_000_030.0  # 30 s into a minute window


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return onnx_classifier(tmp_path_factory.mktemp("edge") / "m.onnx")


@pytest.fixture
def key(transactional_db: None, model_file: Path, settings: Any, tmp_path: Path) -> str:
    settings.MEDIA_ROOT = tmp_path / "media"  # where the servers below look too
    register("credit", model_file)
    return api_key_create(name="edge", all_models=True)[1]


def _inner_application() -> Any:
    from phoenix.asgi import data_plane

    return data_plane


def _serve(settings: Any, tmp_path: Path, app: Any = None) -> Any:
    return asgi_server_running(media_root=tmp_path / "media", settings=settings, app=app)


@pytest.fixture
def server(key: str, settings: Any, tmp_path: Path) -> Iterator[LiveServer]:
    """phoenix.asgi.application as deployed (edge with its default limits)."""
    with _serve(settings, tmp_path) as live:
        yield live


def request(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def predict(
    server: LiveServer, key: str | None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    sent = {"Content-Type": "application/json", **headers}
    if key is not None:
        sent["X-API-Key"] = key
    return request(
        server,
        "POST",
        "/api/v1/models/credit/predict",
        json.dumps({"features": ROW}).encode(),
        sent,
    )


def chunked_post(
    server: LiveServer, path: str, chunks: Iterator[bytes], headers: dict[str, str]
) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked over a raw socket; stops sending once the
    server has answered (as a client would), and returns (status, body)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        start = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        sock.sendall(f"{start}{head}\r\n".encode())
        sock.settimeout(0.0)
        answered = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answered += sock.recv(65536)
            if answered:
                break
            sock.settimeout(30)
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.settimeout(0.0)
        else:
            sock.settimeout(30)
            sock.sendall(b"0\r\n\r\n")
        sock.settimeout(30)
        response = http.client.HTTPResponse(_Prefixed(answered, sock))  # type: ignore[arg-type]
        response.begin()
        return response.status, response.read()
    finally:
        sock.close()


class _Prefixed:
    """A socket whose first bytes were already read: makefile() for HTTPResponse."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self.prefix, self.sock = prefix, sock

    def makefile(self, mode: str) -> Any:
        import io

        rest = self.sock.makefile("rb")

        class Joined(io.RawIOBase):
            def __init__(inner) -> None:
                inner.buffer = bytearray(self.prefix)

            def readable(inner) -> bool:
                return True

            def readinto(inner, target: Any) -> int:
                if not inner.buffer:
                    data = rest.read1(len(target))
                    target[: len(data)] = data
                    return len(data)
                n = min(len(target), len(inner.buffer))
                target[:n] = inner.buffer[:n]
                del inner.buffer[:n]
                return n

        return io.BufferedReader(Joined())


def _error(body: bytes) -> dict[str, Any]:
    return json.loads(body)["error"]  # type: ignore[no-any-return]


# --- item 4: body limits ------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413_on_every_route(server: LiveServer, key: str) -> None:
    big = b"{" + b" " * (10 * 1024 * 1024) + b"}"  # 10 MiB + 2 bytes: over the default
    for path in [
        "/api/v1/models/credit/predict",
        "/v2/models/credit/infer",
        "/api/v1/predictions/abc/feedback",
        "/api/v1/models/credit/versions/1/stage",
        "/api/v1/experiments",
    ]:
        status, _, body = request(
            server, "POST", path, big, {"Content-Type": "application/json", "X-API-Key": key}
        )
        assert status == 413, path
        assert _error(body)["code"] == "too_large"
        assert _error(body)["details"] == {"limit_bytes": 10 * 1024 * 1024}


def test_chunked_body_is_refused_when_it_passes_the_limit(server: LiveServer, key: str) -> None:
    # 1 MiB chunks, endlessly: the server answers 413 once 10 MiB have arrived, long
    # before the client would stop (it never would).
    def endless() -> Iterator[bytes]:
        yield b'{"features": {"x1": 1, "pad": "'
        while True:
            yield b"x" * (1024 * 1024)

    status, body = chunked_post(
        server,
        "/api/v1/models/credit/predict",
        endless(),
        {"Content-Type": "application/json", "X-API-Key": key},
    )

    assert status == 413
    assert _error(body)["code"] == "too_large"


def test_chunked_body_under_the_limit_is_served(server: LiveServer, key: str) -> None:
    payload = json.dumps({"features": ROW}).encode()
    chunks = iter([payload[:10], payload[10:]])

    status, body = chunked_post(
        server,
        "/api/v1/models/credit/predict",
        chunks,
        {"Content-Type": "application/json", "X-API-Key": key},
    )

    assert status == 200, body
    assert json.loads(body)["model"] == "credit"


def test_chunked_stage_move_over_the_limit_never_reaches_the_view(
    key: str, settings: Any, tmp_path: Path, django_user_model: Any
) -> None:
    # A small limit, and an over-limit body that is a valid JSON object padded with
    # spaces, which a truncated read would accept: the view must not run.
    from rest_framework.authtoken.models import Token

    from models_registry.models import ModelVersion
    from tests.registry_support import make_data_scientist

    token = Token.objects.create(user=make_data_scientist(django_user_model)).key
    app = Edge(_inner_application(), max_body_bytes=1024, throttle=Throttle({}))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    with _serve(settings, tmp_path, app) as live:
        over = chunked_post(
            live,
            "/api/v1/models/credit/versions/1/stage",
            iter([b'{"stage": "archived"}', b" " * 2048]),
            headers,
        )
        assert ModelVersion.objects.get().stage == "production"
        under = chunked_post(
            live,
            "/api/v1/models/credit/versions/1/stage",
            iter([b'{"stage": "archived"}']),
            headers,
        )
    assert over[0] == 413
    assert under[0] == 200, under[1]
    assert ModelVersion.objects.get().stage == "archived"


def test_model_uploads_may_be_larger_than_other_bodies(
    key: str, settings: Any, tmp_path: Path
) -> None:
    app = Edge(
        _inner_application(), max_body_bytes=1024, upload_extra_bytes=4096, throttle=Throttle({})
    )
    with _serve(settings, tmp_path, app) as live:
        padded = b"x" * 3000
        upload = request(
            live, "POST", "/api/v1/models/credit/versions", padded, {"Content-Type": "text/plain"}
        )
        other = request(
            live,
            "POST",
            "/api/v1/models/credit/predict",
            padded,
            {"Content-Type": "application/json"},
        )
        over = request(
            live,
            "POST",
            "/api/v1/models/credit/versions",
            b"x" * 6000,
            {"Content-Type": "text/plain"},
        )
    assert upload[0] == 401  # through the edge: the view refuses the anonymous caller
    assert other[0] == 413
    assert over[0] == 413


# --- item 10: header limit, /v2 Host ------------------------------------------------------


def test_headers_over_64_kib_are_431(server: LiveServer, key: str) -> None:
    status, _, body = predict(server, key, **{"X-Padding": "p" * (65 * 1024)})
    assert status == 431
    assert _error(body)["code"] == "headers_too_large"
    assert predict(server, key, **{"X-Padding": "p" * 1024})[0] == 200


def test_v2_refuses_a_host_outside_allowed_hosts(server: LiveServer, key: str) -> None:
    for path in ["/v2", "/v2/health/ready", "/v2/models/credit"]:
        status, _, body = request(
            server, "GET", path, headers={"Host": "evil.com", "X-API-Key": key}
        )
        assert status == 400, path
        assert _error(body)["code"] == "disallowed_host"
    assert request(server, "GET", "/v2", headers={"X-API-Key": key})[0] == 200


# --- item 8: throttles ----------------------------------------------------------------------


def _throttled_server(settings: Any, tmp_path: Path, rates: dict[str, Rate | None]) -> Any:
    throttle = Throttle(rates, clock=lambda: NOW)
    return _serve(settings, tmp_path, Edge(_inner_application(), throttle=throttle))


def test_per_ip_throttle_answers_429_with_retry_after(
    key: str, settings: Any, tmp_path: Path
) -> None:
    with _throttled_server(settings, tmp_path, {"ip": Rate(5, 60)}) as live:
        answers = [predict(live, key) for _ in range(7)]
        health = request(live, "GET", "/healthz")
    assert [status for status, _, _ in answers] == [200] * 5 + [429, 429]
    _, headers, body = answers[5]
    assert headers["retry-after"] == "30"  # the window ends 30 s after NOW
    assert _error(body)["code"] == "throttled"
    assert _error(body)["details"] == {"scope": "ip", "retry_after_s": 30}
    assert health[0] == 200  # probes are never throttled


def test_per_key_throttle_counts_each_key_apart(key: str, settings: Any, tmp_path: Path) -> None:
    other = api_key_create(name="edge-2", all_models=True)[1]
    with _throttled_server(settings, tmp_path, {"key": Rate(3, 60)}) as live:
        first = [predict(live, key)[0] for _ in range(4)]
        second = [predict(live, other)[0] for _ in range(3)]
        bearer = predict(live, None, Authorization=f"Bearer {key}")
    assert first == [200, 200, 200, 429]
    assert second == [200, 200, 200]
    assert bearer[0] == 200  # another header, another credential string: counted apart


def test_authentication_failures_lock_the_address_out_of_credentialed_requests(
    key: str, settings: Any, tmp_path: Path
) -> None:
    with _throttled_server(settings, tmp_path, {"auth_failures": Rate(3, 60)}) as live:
        bad = [predict(live, f"wrong-{i}")[0] for i in range(3)]
        after = predict(live, "wrong-again")
        good_key_after = predict(live, key)
        anonymous_page = request(live, "GET", "/accounts/login/")
    assert bad == [401, 401, 401]
    assert after[0] == 429
    assert _error(after[2])["details"]["scope"] == "auth_failures"
    # Guessing stops for this address, whatever it sends next, until the window ends.
    assert good_key_after[0] == 429
    assert anonymous_page[0] == 200


def test_throttle_counts_are_shared_through_redis(redis_url: str, settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"edge-test-{uuid.uuid4().hex}",
        }
    }

    def process() -> Throttle:
        # Two web processes: sync_s=0 runs no thread; the test syncs them by hand.
        return Throttle(
            {"key": Rate(5, 60)}, shared_add=cache_shared_add, sync_s=0, clock=lambda: NOW
        )

    one, two = process(), process()
    assert [one.hit("key", "k") for _ in range(3)] == [None] * 3
    one.sync()
    two.sync()  # nothing of its own yet: it learns nothing either
    assert [two.hit("key", "k") for _ in range(2)] == [None, None]
    two.sync()  # 3 + 2 = 5 in Redis, and two now knows it
    assert two.hit("key", "k") == 30
    # one still knows 3: it admits one more (the slack of one sync period) and learns
    # the total when it shares that count.
    assert one.hit("key", "k") is None
    one.sync()
    assert one.hit("key", "k") == 30


def test_throttle_without_a_reachable_cache_counts_locally(settings: Any) -> None:
    def broken(entries: Any) -> dict[str, int]:
        raise ConnectionError("Redis is down")

    throttle = Throttle({"ip": Rate(3, 60)}, shared_add=broken, sync_s=0, clock=lambda: NOW)
    assert [throttle.hit("ip", "1.2.3.4") for _ in range(2)] == [None, None]
    throttle.sync()
    assert throttle.hit("ip", "1.2.3.4") is None
    assert throttle.hit("ip", "1.2.3.4") == 30


def test_rates_parse_and_refuse_typos() -> None:
    assert Rate.parse("600/m") == Rate(600, 60)
    assert Rate.parse("30/10m") == Rate(30, 600)
    assert Rate.parse("5/s") == Rate(5, 1)
    assert Rate.parse("0") is None
    assert Rate.parse("") is None
    with pytest.raises(ValueError, match="A rate is"):
        Rate.parse("600 per minute")


def test_a_streamed_upload_is_cut_off_at_its_limit() -> None:
    # Django reads no body without a length, but an application that streams one (as
    # the ASGI contract allows) is stopped at the upload limit: 413 is sent at once, its
    # read raises and whatever it answers afterwards goes nowhere.
    import asyncio

    from phoenix.edge import BodyTooLarge

    read: list[int] = []
    raised: list[BaseException] = []

    async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                read.append(len(message.get("body", b"")))
                if not message.get("more_body"):
                    break
        except BodyTooLarge as exc:
            raised.append(exc)
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b"stored"})
            raise

    edge = Edge(streaming_app, max_body_bytes=100, upload_extra_bytes=900, throttle=Throttle({}))
    sent: list[dict[str, Any]] = []
    chunks = [b"x" * 400] * 5  # 2,000 bytes against a 1,000-byte upload limit

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": chunks.pop(), "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/models/credit/versions",
        "headers": [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
    }
    asyncio.run(edge(scope, receive, send))

    assert read == [400, 400]  # the third chunk passed the limit: never handed over
    assert len(raised) == 1
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert json.loads(sent[1]["body"])["error"]["details"] == {"limit_bytes": 1000}
