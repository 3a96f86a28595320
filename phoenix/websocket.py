"""Websocket edges: the same-origin check and the answer for an unknown /ws/ path."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

CLOSE_NO_ROUTE = 4404
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """Whether a handshake's ``Origin`` is this site: the same host *and port* as the
    ``Host`` it was sent to (which ``ALLOWED_HOSTS`` must accept), or one of
    ``CSRF_TRUSTED_ORIGINS`` exactly. No Origin (not a browser) is refused too: the
    dashboards' feeds are for pages."""
    if not origin or not host:
        return False
    domain, host_port = split_domain_port(host)
    if not domain or not validate_host(domain, list(settings.ALLOWED_HOSTS)):
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parsed = urlsplit(origin)
        origin_port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme)
    except ValueError:
        return False
    if parsed.hostname is None or origin_port is None:
        return False
    port = int(host_port) if host_port.isdigit() else _DEFAULT_PORTS.get(parsed.scheme)
    return parsed.hostname.lower() == domain and origin_port == port


class SameOriginValidator:
    """ASGI middleware: a websocket handshake from another origin is refused (403)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers", ()))
            origin = headers.get(b"origin", b"").decode("latin-1") or None
            host = headers.get(b"host", b"").decode("latin-1") or None
            if not origin_allowed(origin, host):
                await send({"type": "websocket.close"})
                return
        await self.app(scope, receive, send)


class NoRouteConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Any /ws/ path no route matches: accepted, then closed with 4404 (not a 500)."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NO_ROUTE)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return
