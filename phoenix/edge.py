"""The ASGI edge: what every HTTP request meets before any application code.

It wraps the whole ASGI application (phoenix/asgi.py), the data plane included, and
for each HTTP request, in this order:

1. headers larger than ``PHOENIX_MAX_HEADER_BYTES`` in all (names and values) are
   answered 431;
2. ``/v2`` with a ``Host`` that ``ALLOWED_HOSTS`` refuses is answered 400 (Django
   checks its own routes; the Open Inference Protocol consumer is not Django);
3. throttles (phoenix/throttling.py): a client IP over its authentication-failure
   limit gets 429 for any request carrying credentials; then the request is counted
   per client IP and per credential (``Authorization`` or ``X-API-Key``) and 429 past
   either limit, with ``Retry-After``. Each 401 answered is an authentication failure
   of the client IP. Health probes are never throttled;
4. the body limit: a declared ``Content-Length`` over the route's limit is answered
   413 before anything reads it; a body without one (chunked) is counted as it is
   received and, the moment it passes the limit, answered 413 and the application's
   read fails (``BodyTooLarge``), so nothing past the limit is buffered or parsed.
   The limit is ``PHOENIX_MAX_BODY_BYTES``; model uploads may be as large as
   ``PHOENIX_MODEL_MAX_BYTES`` more.

Errors are the project's JSON error shape. Websocket handshakes get the header limit
and the throttles too (refused before the handshake completes: the server answers it
403); the lifespan scope passes straight on.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http.request import split_domain_port, validate_host

from phoenix.exceptions import error_body
from phoenix.throttling import Rate, Throttle, cache_shared_add

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# Routes that take a model file (REST upload, admin add/change of a version).
UPLOAD_PATHS = re.compile(
    r"^/(?:api/v1/models/[^/]+/versions|admin/models_registry/modelversion/(?:add|[^/]+/change))/?$"
)
UNTHROTTLED_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})


class BodyTooLarge(RequestDataTooBig):
    """Raised to the application reading a body that went past its limit (413 sent)."""


def throttle_from_settings() -> Throttle:
    return Throttle(
        {
            "ip": Rate.parse(settings.PHOENIX_THROTTLE_IP_RATE),
            "key": Rate.parse(settings.PHOENIX_THROTTLE_KEY_RATE),
            "auth_failures": Rate.parse(settings.PHOENIX_THROTTLE_AUTH_FAILURE_RATE),
        },
        shared_add=cache_shared_add,
        sync_s=settings.PHOENIX_THROTTLE_SYNC_S,
    )


def client_ip(scope: dict[str, Any], forwarded: str | None) -> str:
    """The client address: the last entry of the proxy's header when one is configured
    and sent (what the nearest proxy saw), else the socket peer."""
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()
    client = scope.get("client")
    return str(client[0]) if client else ""


def _json(status: int, code: str, message: str, details: Any = None) -> tuple[int, bytes]:
    return status, orjson.dumps(error_body(code, message, details))


def _too_large(limit: int) -> tuple[int, bytes]:
    return _json(
        413, "too_large", f"The request body is larger than {limit} bytes.", {"limit_bytes": limit}
    )


async def _read_at_most(receive: Any, limit: int) -> bytes | None:
    """The body, or its first ``limit`` + 1 bytes or more once it passes ``limit``;
    None when the client went away."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(parts)


def _with_length(scope: dict[str, Any], length: int) -> dict[str, Any]:
    headers = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
    headers.append((b"content-length", b"%d" % length))
    return {**scope, "headers": headers}


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands ``body`` over, then listens to the client again."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replayed


class Edge:
    """ASGI middleware holding the limits above; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int | None = None,
        max_header_bytes: int | None = None,
        upload_extra_bytes: int | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.app = app
        self.max_body = (
            max_body_bytes if max_body_bytes is not None else settings.PHOENIX_MAX_BODY_BYTES
        )
        self.max_header = (
            max_header_bytes if max_header_bytes is not None else settings.PHOENIX_MAX_HEADER_BYTES
        )
        extra = (
            upload_extra_bytes
            if upload_extra_bytes is not None
            else settings.PHOENIX_MODEL_MAX_BYTES
        )
        self.max_upload = self.max_body + extra
        self.throttle = throttle if throttle is not None else throttle_from_settings()
        self._throttling = self.throttle.active
        header = settings.PHOENIX_CLIENT_IP_HEADER
        self._ip_header = header.lower().encode("latin-1") if header else None
        self.allowed_hosts = list(settings.ALLOWED_HOSTS)
        self._hosts: dict[bytes, bool] = {}

    def _host_allowed(self, host: bytes) -> bool:
        known = self._hosts.get(host)
        if known is None:
            domain, _ = split_domain_port(host.decode("latin-1"))
            known = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self._hosts) < 1024:  # a client inventing hosts must not grow this
                self._hosts[host] = known
        return known

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        size = 0
        length: bytes | None = None
        credential: bytes | None = None
        forwarded: bytes | None = None
        host = b""
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            if name == b"content-length":
                length = value
            elif name == b"authorization" or name == b"x-api-key":
                credential = value
            elif name == b"host":
                host = value
            elif name == self._ip_header:
                forwarded = value
        refusal: tuple[int, bytes] | None = None
        retry_after: int | None = None
        path: str = scope["path"]
        if size > self.max_header:
            refusal = _json(
                431,
                "headers_too_large",
                f"The request headers are larger than {self.max_header} bytes.",
                {"limit_bytes": self.max_header},
            )
        elif path.startswith("/v2") and kind == "http" and not self._host_allowed(host):
            refusal = _json(400, "disallowed_host", "Invalid Host header.", {})
        elif self._throttling and path not in UNTHROTTLED_PATHS:
            ip = client_ip(scope, forwarded.decode("latin-1") if forwarded else None)
            refused = self.throttle.admit(ip, credential.decode("latin-1") if credential else None)
            if refused is None:
                send = self._counting_failures(send, ip)
            else:
                retry_after = refused[1]
                refusal = self._too_many(*refused)
        if refusal is None and kind == "http" and scope["method"] not in ("GET", "HEAD"):
            limit = self.max_upload if UPLOAD_PATHS.match(path) else self.max_body
            if length is None and limit == self.max_body:
                # Chunked: read here, at most the limit, and hand the application a
                # body with a length (Django's WSGI request would otherwise read none).
                body = await _read_at_most(receive, limit)
                if body is None:
                    return  # the client went away
                if len(body) > limit:
                    refusal = _too_large(limit)
                else:
                    scope = _with_length(scope, len(body))
                    receive = _replay(body, receive)
            elif length is None:
                # An upload may be far larger: counted as the application reads it.
                receive, send = self._limited(receive, send, limit)
            elif not length.isdigit() or int(length) > limit:
                refusal = _too_large(limit)
        if refusal is None:
            # try/except costs nothing until it catches; contextlib.suppress costs a
            # context manager per request.
            try:  # noqa: SIM105
                await self.app(scope, receive, send)
            except BodyTooLarge:
                pass  # answered 413 already, when the read went past the limit
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 4000 + refusal[0]})
            return
        status, body = refusal
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % retry_after))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- throttles -------------------------------------------------------------------

    def _too_many(self, scope: str, wait: int) -> tuple[int, bytes]:
        what = {
            "ip": "requests from this address",
            "key": "requests with this credential",
            "auth_failures": "failed authentications from this address",
        }[scope]
        return _json(
            429,
            "throttled",
            f"Too many {what}; retry in {wait} s.",
            {"scope": scope, "retry_after_s": wait},
        )

    def _counting_failures(self, send: Any, ip: str) -> Any:
        throttle = self.throttle

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                throttle.add("auth_failures", ip)
            await send(message)

        return counted

    # --- streamed body limit ---------------------------------------------------------

    def _limited(self, receive: Any, send: Any, limit: int) -> tuple[Any, Any]:
        """(receive, send) for the application: receive counts the body and, past
        ``limit``, answers 413 and raises BodyTooLarge; send then drops its answer."""
        received = 0
        refused = False

        async def limited() -> dict[str, Any]:
            nonlocal received, refused
            if refused:
                raise BodyTooLarge("The request body is too large.")
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    status, body = _too_large(limit)
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", b"%d" % len(body)),
                                (b"connection", b"close"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    raise BodyTooLarge(f"The request body is larger than {limit} bytes.")
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if not refused:  # after the 413 the application's answer goes nowhere
                await send(message)

        return limited, guarded_send
