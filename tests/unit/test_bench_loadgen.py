"""The benchmark's load generator reads HTTP/1.1 answers right: against the null server,
servers that answer errors, close, or chunk, and byte by byte. No timing assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from scripts.bench.loadgen import Connection, Response, ResponseParser, build_request, run_level
from scripts.bench.peers import null_server

REQUEST = build_request("127.0.0.1", "/predict", "k", b'{"features": [[1.0, 2.0]]}')


def _serve_and(
    check: Callable[[int], Awaitable[None]],
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None = None,
) -> None:
    async def main() -> None:
        if handler is None:
            server = await null_server.serve("127.0.0.1", 0)
        else:
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await check(port)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


async def _read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return True


def test_null_server_answers_every_request_with_its_body() -> None:
    async def check(port: int) -> None:
        connection = Connection("127.0.0.1", port)
        answers = [await connection.request(REQUEST) for _ in range(3)]
        connection.close()
        assert answers == [(200, null_server.BODY)] * 3

    _serve_and(check)


def test_run_level_against_null_server_counts_only_200s_and_no_errors() -> None:
    async def check(port: int) -> None:
        result = await run_level("127.0.0.1", port, REQUEST, 4, 0.3)
        assert result["requests"] > 0
        assert result["ok"] == result["requests"]
        assert result["errors"] == 0
        assert result["statuses"] == {"200": result["requests"]}
        assert result["first_error"] is None
        assert result["p50_ms"] <= result["p99_ms"]

    _serve_and(check)


def test_pipelined_requests_in_one_write_get_one_answer_each() -> None:
    async def check(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST * 3)
        parser = ResponseParser()
        answers: list[Response] = []
        while len(answers) < 3:
            answers += parser.feed(await reader.read(65536))
        writer.close()
        assert answers == [Response(200, null_server.BODY, False)] * 3

    _serve_and(check)


def test_non_200_answers_are_errors_with_the_first_reported() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await _read_request(reader):
            body = b'{"error": "nope"}'
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            writer.write(body)
            await writer.drain()
        writer.close()

    async def check(port: int) -> None:
        result = await run_level("127.0.0.1", port, REQUEST, 2, 0.2)
        assert result["ok"] == 0
        assert result["errors"] == result["requests"] > 0
        assert set(result["statuses"]) == {"503"}
        assert result["first_error"].startswith("HTTP 503")
        assert result["rps"] == 0

    _serve_and(check, handler)


def test_connection_close_answers_reconnect_and_chunked_bodies_are_joined() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _read_request(reader):
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                b'4\r\n{"a"\r\n3;ext=1\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n'
            )
            await writer.drain()
        writer.close()

    async def check(port: int) -> None:
        connection = Connection("127.0.0.1", port)
        first = await connection.request(REQUEST)
        second = await connection.request(REQUEST)  # a new connection: the last one closed
        connection.close()
        assert first == second == (200, b'{"a": 1}')

    _serve_and(check, handler)


def test_refused_connections_count_as_errors_and_the_loop_ends() -> None:
    async def main() -> None:
        server = await null_server.serve("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        result = await run_level("127.0.0.1", port, REQUEST, 2, 0.1)
        assert result["requests"] == 0
        assert result["errors"] > 0
        assert "Error" in result["first_error"]

    asyncio.run(main())


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhe\r\n3\r\nllo\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ],
)
def test_parser_gives_the_same_answer_fed_byte_by_byte(raw: bytes) -> None:
    parser = ResponseParser()
    answers = [a for i in range(len(raw)) for a in parser.feed(raw[i : i + 1])]
    assert [(a.status, a.body, a.close) for a in answers] == [(200, b"hello", False)]


def test_parser_reads_a_lengthless_body_to_the_end_and_204_has_none() -> None:
    parser = ResponseParser()
    answers = parser.feed(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.0 200 OK\r\n\r\npart")
    answers += parser.feed(b" two")
    assert answers == [Response(204, b"", False)]
    assert parser.eof() == Response(200, b"part two", True)


def test_parser_refuses_what_is_not_http() -> None:
    with pytest.raises(ValueError, match="not an HTTP"):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
