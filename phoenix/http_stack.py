"""Django's request stack twice: the full one, and a slim one for the inference URLs.

Predict requests authenticate with an API key inside DRF; they use no session,
CSRF token, message, login or frame option. So the inference URLs
(``INFERENCE_PATHS``) get a Django handler built from
``settings.PHOENIX_INFERENCE_MIDDLEWARE`` (Prometheus, security headers,
CommonMiddleware), everything else (pages, admin, the other APIs, and feedback,
which also accepts a browser session) the handler built from ``settings.MIDDLEWARE``.
Both are ordinary Django WSGI handlers over the same URLconf: views, error
responses (the JSON error shape, 404s) and Prometheus metrics are the same; only
the middleware differs.

- Under WSGI, ``HTTPApplication`` picks the handler by path.
- Under ASGI (phoenix/asgi.py), ``OneHopWSGI`` runs the slim handler: the body is
  read on the event loop, the whole Django call runs in one pool thread and the
  response is sent from the loop. a2wsgi, which the other URLs keep because it
  streams, crosses between loop and thread four more times per request (body
  read, response start, body, end); on this small-request path those hops cost
  more than Django itself (docs/BENCHMARKS.md).

Django's test client always uses the full stack; tests of these call the
applications directly.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from a2wsgi.wsgi import build_environ
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django_prometheus import middleware as prometheus

# API-key endpoints whose views need nothing from the skipped middleware. Under
# ASGI, /v2 never reaches Django (phoenix/asgi.py sends it to a Channels consumer).
INFERENCE_ROUTE = r"api/v1/models/[^/]+/predict|v2(?:/.*)?"
INFERENCE_PATHS = re.compile(rf"^/(?:{INFERENCE_ROUTE})$")

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class SlimWSGIHandler(WSGIHandler):
    """Django's WSGI handler with ``middleware`` instead of settings.MIDDLEWARE."""

    def __init__(self, middleware: list[str]) -> None:
        self._middleware_paths = middleware
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE and nothing else: lend it
        # our list for this one call, made once when the application is built.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = self._middleware_paths
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


class HTTPApplication:
    """WSGI: inference paths to the slim handler, everything else to the full one."""

    def __init__(self) -> None:
        self.full = WSGIHandler()
        self.slim = SlimWSGIHandler(list(settings.PHOENIX_INFERENCE_MIDDLEWARE))

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        handler = self.slim if INFERENCE_PATHS.match(environ.get("PATH_INFO", "")) else self.full
        return handler(environ, start_response)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class OneHopWSGI:
    """ASGI over a WSGI app in one thread hop per request, for small bodies and answers.

    A request without a Content-Length (chunked) or with a body larger than
    ``max_buffered`` goes to ``fallback`` (a2wsgi over the same app, which streams), so
    nothing is read into memory that Django would not read anyway. The response is
    collected in the thread: meant for views that answer a small, complete body.
    """

    def __init__(
        self, app: WSGIApp, *, executor: Executor, fallback: ASGIApp, max_buffered: int
    ) -> None:
        self.app, self.executor, self.fallback = app, executor, fallback
        self.max_buffered = max_buffered

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: list[Any] = []
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            started[:] = [status, headers]
            return chunks.append  # WSGI's write(), which Django does not use

        iterable = self.app(environ, start_response)
        try:
            chunks.extend(iterable)
        finally:
            # Fires request_finished (database connections, caches), as any WSGI server does.
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        status, headers = started
        encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        return int(status.split(" ", 1)[0]), encoded, b"".join(chunks)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        length = _content_length(scope) if scope["method"] not in ("GET", "HEAD") else 0
        if length is None or length > self.max_buffered:
            await self.fallback(scope, receive, send)
            return
        parts = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        environ: dict[str, Any] = build_environ(scope, io.BytesIO(b"".join(parts)))  # type: ignore[arg-type,assignment]
        loop = asyncio.get_running_loop()
        status, headers, body = await loop.run_in_executor(self.executor, self._call, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# --- django-prometheus, with label children cached ---------------------------------------
#
# PrometheusAfterMiddleware looks up about eight labelled children per request
# through ``metric.labels(**labels)`` (argument checks and a lock each).
# ``label_metric`` is django-prometheus's hook for that lookup; remembering the
# children gives the same series for less. Label values are bounded (methods,
# statuses, view names, transports), as they already are for the library.

_children: dict[tuple[int, tuple[tuple[str, str], ...]], Any] = {}


class PrometheusAfterMiddleware(prometheus.PrometheusAfterMiddleware):  # type: ignore[misc]
    def label_metric(self, metric: Any, request: Any, response: Any = None, **labels: str) -> Any:
        if not labels:
            return metric
        key = (id(metric), tuple(labels.items()))
        child = _children.get(key)
        if child is None:
            child = _children[key] = metric.labels(**labels)
        return child
