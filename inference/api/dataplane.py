"""The data plane: the two hot routes answered straight from ASGI, in front of Django.

``POST /api/v1/models/{name}/predict`` and ``POST /v2/models/{name}[/versions/{v}]/infer``
are what clients call thousands of times a second. Through Django they pay its request
handler, middleware chain and DRF's dispatch, which together cost more than a whole
peer server (docs/BENCHMARKS.md). Here a warm request (its API key cached, the serving
plan read, every session it may touch loaded) is parsed with orjson, answered by the
same prediction service the DRF view and the v2 protocol call, and sent back with the
same status, body and headers, without a thread hop when the model is cheaper than one.

Anything else goes to Django unchanged, with the body it sent: a cold process, a key
this process has not seen, a body that is not plain JSON (or too large, or chunked),
a Host Django would refuse, an HTTPS redirect, any other route or method. Django then
answers exactly as it always has, so the rare and the malformed need no second
implementation. The DRF ``PredictView`` remains the REST API's definition (OpenAPI
schema, browsable form, validation rules) and a parity test
(tests/integration/test_inference_dataplane.py) holds the two paths to identical
answers, errors and logged events.

What this path does not do: django-prometheus's per-view HTTP counters (the
``phoenix_inference_*`` metrics, counted by the service, cover these requests), and
sessions, CSRF or messages, which API-key requests never used.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

import orjson
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host

from phoenix.exceptions import ApplicationError, error_body, status_for
from phoenix.renderers import ORJSONRenderer

from ..auth import api_key_cached, api_key_from_headers
from ..prediction import prediction_create, warm_execution
from ..selectors import ApiKeyPrincipal
from . import v2
from .views import predict_input, prediction_body

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

PREDICT_PATH = re.compile(r"^/api/v1/models/(?P<name>[^/]+)/predict$")

_JSON = ORJSONRenderer()


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively (``headers.get("X-API-Key")``).

    ASGI servers hand header names over lower-cased, so one dict of them is the whole
    mapping; Django's CaseInsensitiveMapping costs several times more to build.
    """

    __slots__ = ("_values",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._values = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._values.get(name.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _security_headers(*, secure: bool) -> list[tuple[bytes, bytes]]:
    """What django.middleware.security.SecurityMiddleware adds to a response."""
    headers: list[tuple[str, str]] = []
    if settings.SECURE_HSTS_SECONDS and secure:
        value = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            value += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            value += "; preload"
        headers.append(("strict-transport-security", value))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("x-content-type-options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        parts = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        headers.append(("referrer-policy", ",".join(parts)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return [(k.encode(), v.encode()) for k, v in headers]


class DataPlane:
    """ASGI application: warm predict and infer calls here, everything else to ``app``.

    ``django_rest`` answers the REST route when this path declines (the slim Django
    stack); ``app`` is the rest of the site (Django, the v2 consumer, websockets).
    ``executor`` runs requests that must not run on the event loop: models heavier than
    a thread hop, and feature-store lookups.
    """

    def __init__(self, app: ASGIApp, *, django_rest: ASGIApp, executor: Executor) -> None:
        self.app, self.django_rest, self.executor = app, django_rest, executor
        self.max_body = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440
        self.allowed_hosts = list(settings.ALLOWED_HOSTS)
        self._hosts: dict[str, bool] = {}
        self._proxy_ssl = settings.SECURE_PROXY_SSL_HEADER
        self._plain = _security_headers(secure=False)
        self._secure = _security_headers(secure=True)
        # DRF's APIView adds Allow; the view answers JSON only.
        self._rest_headers = [(b"content-type", b"application/json"), (b"allow", b"POST, OPTIONS")]

    # --- what may be answered here ---------------------------------------------

    def _host_allowed(self, headers: Headers) -> bool:
        host = headers.get("host") or ""
        known = self._hosts.get(host)
        if known is None:
            domain, _ = split_domain_port(host)
            known = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self._hosts) < 1024:  # a client inventing hosts must not grow this
                self._hosts[host] = known
        return known

    def _is_secure(self, scope: dict[str, Any], headers: Headers) -> bool:
        if self._proxy_ssl:
            name, value = self._proxy_ssl
            sent = headers.get(name.removeprefix("HTTP_").replace("_", "-"))
            if sent is not None:
                return sent.split(",")[0].strip() == value
        return bool(scope.get("scheme") == "https")

    def _body_length(self, headers: Headers) -> int | None:
        """The declared body length when it may be buffered here, else None."""
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            return None  # chunked or odd: Django (through a2wsgi) streams it
        size = int(length)
        return size if 0 < size <= self.max_body else None

    # --- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        rest = PREDICT_PATH.match(path)
        infer = None if rest is not None else v2.infer_route(path)
        if rest is None and infer is None:
            await self.app(scope, receive, send)
            return
        fallback = self.django_rest if rest is not None else self.app
        headers = Headers(scope["headers"])
        principal = api_key_cached(api_key_from_headers(headers))
        secure = self._is_secure(scope, headers)
        length = self._body_length(headers)
        name, version = (rest["name"], None) if rest is not None else infer  # type: ignore[misc]
        execution = (
            warm_execution(model_name=name, version=version) if principal is not None else None
        )
        if (
            execution is None
            or length is None
            or not self._host_allowed(headers)
            or (settings.SECURE_SSL_REDIRECT and not secure)
        ):
            await fallback(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        security = self._secure if secure else self._plain
        if rest is not None:
            answer = await self._rest(principal, name, headers, body, execution)  # type: ignore[arg-type]
            if answer is None:
                await fallback(scope, _replay(body), send)
                return
            status, content = answer
            response_headers = [*self._rest_headers, *security]
        else:
            result = await self._infer(path, headers, body)
            if result is None:
                await fallback(scope, _replay(body), send)
                return
            status, content = result.status, result.body
            response_headers = [
                (b"content-type", result.content_type.encode()),
                *((k.lower().encode(), v.encode()) for k, v in result.headers.items()),
                *security,
            ]
        response_headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": content})

    # --- the two routes --------------------------------------------------------

    async def _rest(
        self,
        principal: ApiKeyPrincipal,
        name: str,
        headers: Headers,
        body: bytes,
        execution: str,
    ) -> tuple[int, bytes] | None:
        """(status, body) of a predict call, or None to let Django answer it."""
        content_type = headers.get("content-type") or ""
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return None  # DRF's parsers and negotiation decide (415, form data...)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None  # DRF's parser words the 400
        pinned = data.get("version") if isinstance(data, dict) else None
        if pinned is not None:
            # A version the client pins may be one no request here has loaded yet.
            pinned_execution = warm_execution(model_name=name, version=str(pinned))
            if pinned_execution is None:
                return None
            execution = pinned_execution
        if isinstance(data, dict) and data.get("entity_id") is not None:
            # The feature store is a network call (Redis) or a query (embedded).
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, _with_connections, _rest_answer, principal, name, data
            )
        if execution == "inline":
            return _rest_answer(principal, name, data)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, _rest_answer, principal, name, data
        )

    async def _infer(self, path: str, headers: Headers, body: bytes) -> v2.ProtocolResponse | None:
        """The protocol's answer, or None to let the consumer answer it."""
        # Decided again with the body in hand: an entity's feature-store lookup must not
        # run on the loop.
        execution = v2.infer_execution("POST", path, headers, body)
        if execution is None:
            return None
        if execution == "inline":
            return v2.handle("POST", path, headers, body)
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, _with_connections, v2.handle, "POST", path, headers, body
        )


def _rest_answer(principal: ApiKeyPrincipal, name: str, data: Any) -> tuple[int, bytes]:
    """What PredictView and DRF's exception handler answer for ``data``."""
    try:
        prediction = prediction_create(principal=principal, model_name=name, **predict_input(data))
    except ApplicationError as error:
        return status_for(error), _JSON.render(error_body(error.code, error.message, error.details))
    return 200, _JSON.render(prediction_body(prediction))


def _with_connections(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function`` on a pool thread as Django would serve a request: stale
    database connections closed before and after (request_started/finished)."""
    close_old_connections()
    try:
        return function(*args)
    finally:
        close_old_connections()


async def _read_body(receive: Any) -> bytes | None:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A ``receive`` that hands ``body`` over again, then waits as a live one would."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: the request is complete
        return {"type": "http.disconnect"}

    return receive
