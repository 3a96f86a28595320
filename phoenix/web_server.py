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
import sys
from typing import Any

import uvicorn
import uvicorn.config
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


# Module level on purpose: uvicorn's worker processes are spawned, re-import this
# module as their __main__ and resolve the protocol by name there.
uvicorn.config.HTTP_PROTOCOLS["httptools"] = "phoenix.web_server:CoalescingHttpToolsProtocol"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--http" not in args:
        args += ["--http", "httptools"]
    uvicorn.main(args)


if __name__ == "__main__":
    main()
