"""The web server: uvicorn's command line, with one change to how responses are written.

uvicorn writes a response's head as soon as the application sends
``http.response.start`` and its body at ``http.response.body``: two ``send`` system
calls, two TCP segments and, for a client waiting on the answer, two wake-ups per
response; for a predict answer of a few hundred bytes the head is half the segments.
Here the head is held until the first body bytes arrive and both go out in one write
(measured in docs/BENCHMARKS.md).

What is not held: interim responses (``100 Continue``, ``101 Switching Protocols``,
which the client waits for before it sends more), the answer to a ``HEAD`` request
(uvicorn writes nothing after it) and anything that is not a response head. A held
head is written before the transport closes, so a response cut short still reaches
the client as far as it got.

    python -m phoenix.web_server phoenix.asgi:application --host 0.0.0.0 --port 8000

takes every option of ``python -m uvicorn``; ``--http`` defaults to httptools, the
protocol changed here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from typing import Any

import uvicorn
import uvicorn.config
import uvicorn.server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_END = b"\r\n\r\n"


class _HeadWithBody:
    """A transport that writes a final response head together with what follows it."""

    __slots__ = ("_head", "_protocol", "_transport")

    def __init__(
        self, transport: asyncio.Transport, protocol: HttpToolsProtocol | None = None
    ) -> None:
        self._transport = transport
        self._head: bytes | None = None
        # uvicorn writes nothing after the head of a HEAD response: that one goes at once.
        self._protocol = protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + bytes(data))
        elif _is_final_head(data) and not self._answering_head():
            self._head = bytes(data)
        else:
            self._transport.write(data)

    def _answering_head(self) -> bool:
        cycle = getattr(self._protocol, "cycle", None)
        return cycle is not None and cycle.scope.get("method") == "HEAD"

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _is_final_head(data: bytes | bytearray | memoryview) -> bool:
    """A response head alone (status line to blank line), status 200 or above."""
    view = bytes(data[:12])
    return (
        view.startswith(b"HTTP/1.")
        and view[9:10] not in (b"1", b"")
        and bytes(data[-4:]) == _HEAD_END
    )


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing each response's head with its body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        # The request/response cycles and flow control read self.transport from here on.
        self.transport = _HeadWithBody(self.transport, self)  # type: ignore[assignment]

    def handle_websocket_upgrade(self) -> None:
        # The websocket protocol takes the socket over: give it the real transport.
        wrapped = self.transport
        if isinstance(wrapped, _HeadWithBody):
            wrapped._flush()
            self.transport = wrapped._transport
        super().handle_websocket_upgrade()


# --- one listening socket per worker ---------------------------------------------------
#
# uvicorn's workers share the one socket their parent bound, and the kernel hands a new
# connection to whichever worker wakes first: with keep-alive clients one worker often
# ends up with most of them while the other idles. With SO_REUSEPORT each worker listens
# on a socket of its own on the same port and the kernel spreads connections across them
# evenly. The parent's socket is bound (holding the port, with SO_REUSEPORT so the
# workers may join) but never listens, so no connection waits on it.

_REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and os.environ.get(
    "PHOENIX_WEB_REUSE_PORT", "1"
).lower() not in ("0", "false", "no", "off")

_bind_socket = uvicorn.config.Config.bind_socket
_startup = uvicorn.server.Server.startup


def _bind_socket_reusable(self: uvicorn.Config) -> socket.socket:
    if self.uds is not None or self.fd is not None or self.workers <= 1:
        return _bind_socket(self)
    sock = _tcp_socket(self.host, self.port)
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d, one listening socket per worker (SO_REUSEPORT)",
        self.host,
        sock.getsockname()[1],
    )
    sock.set_inheritable(True)
    return sock


def _tcp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def _startup_own_listener(
    self: uvicorn.Server, sockets: list[socket.socket] | None = None
) -> None:
    """A worker: listen on a socket of its own, bound where the parent's is."""
    if sockets is not None and self.config.workers > 1:
        own = []
        for shared in sockets:
            reusable = shared.family in (socket.AF_INET, socket.AF_INET6) and shared.getsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEPORT
            )
            own.append(_tcp_socket(*shared.getsockname()[:2]) if reusable else shared)
        sockets = own
    await _startup(self, sockets)


# Module level on purpose: uvicorn's worker processes are spawned, re-import this
# module as their __main__, and resolve the protocol by name there.
uvicorn.config.HTTP_PROTOCOLS["httptools"] = "phoenix.web_server:CoalescingHttpToolsProtocol"
if _REUSE_PORT:
    uvicorn.config.Config.bind_socket = _bind_socket_reusable  # type: ignore[method-assign]
    uvicorn.server.Server.startup = _startup_own_listener  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--http" not in args:
        args += ["--http", "httptools"]
    uvicorn.main(args)


if __name__ == "__main__":
    main()
