"""phoenix.web_server: uvicorn's httptools protocol writing each response head with its
body. Driven through the real protocol class with a transport that records writes."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from phoenix.web_server import CoalescingHttpToolsProtocol, _HeadWithBody

BODY = b'{"predictions":[1]}'


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers JSON; ``/stream`` answers in three chunks."""
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a", b"b"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"c"})
        return
    if scope["path"] == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def served(*chunks: bytes) -> RecordingTransport:
    """Feed ``chunks`` to a fresh connection (one event-loop turn apart); its writes."""
    config = uvicorn.Config(answer, lifespan="off", http=CoalescingHttpToolsProtocol)
    config.load()
    protocol = CoalescingHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
        for _ in range(20):
            await asyncio.sleep(0)
    return transport


def run(*chunks: bytes) -> list[bytes]:
    return asyncio.run(served(*chunks)).writes


def test_a_response_goes_out_in_one_write_head_and_body_together() -> None:
    writes = run(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")

    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n" + BODY)


def test_keep_alive_requests_each_get_one_write() -> None:
    request = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"

    writes = run(request, request, request)

    assert len(writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200") and w.endswith(BODY) for w in writes)


def test_100_continue_is_written_at_once_and_the_answer_after_it() -> None:
    head = b"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"

    writes = run(head, b"{}")

    # The client waits for the interim answer before sending its body: never held.
    assert writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(writes) == 2
    assert writes[1].endswith(BODY)


def test_a_streamed_response_sends_its_head_with_the_first_chunk() -> None:
    writes = run(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")

    assert writes[0].startswith(b"HTTP/1.1 200")
    assert writes[0].endswith(b"\r\n\r\n1\r\na\r\n")
    assert writes[1:] == [b"1\r\nb\r\n", b"1\r\nc\r\n0\r\n\r\n"]


def test_a_head_request_gets_its_head_alone() -> None:
    writes = run(b"HEAD /p HTTP/1.1\r\nHost: x\r\n\r\n")

    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200")
    assert writes[0].endswith(b"\r\n\r\n")


def test_a_response_without_a_body_still_goes_out() -> None:
    writes = run(b"DELETE /empty HTTP/1.1\r\nHost: x\r\n\r\n")

    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 204")


def test_a_held_head_is_written_before_the_transport_closes() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport)

    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
    assert transport.writes == []
    wrapped.close()

    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"]
    assert transport.closed


def test_switching_protocols_and_other_bytes_pass_straight_through() -> None:
    transport = RecordingTransport()
    wrapped = _HeadWithBody(transport)

    wrapped.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    wrapped.write(b"\x81\x05hello")

    assert len(transport.writes) == 2
