"""Closed-loop keep-alive HTTP/1.1 load generator on raw asyncio sockets.

One connection per simulated client; each sends a request, waits for the whole answer,
and sends the next (closed loop). The client is a hand-rolled ``asyncio.Protocol`` with
an incremental response parser, because it shares the cores with the server it
measures: streams, httpx or aiohttp cost several times more CPU per request.

Standard library only (uvloop when installed), so it runs as its own process in any
interpreter: the orchestrator starts it with a JSON spec and reads one JSON line back,
which lets it measure the load generator's own CPU time per level.

    python scripts/bench/loadgen.py --spec spec.json

The spec: ``{"host", "port", "request_file", "levels": [1, 8, 64], "duration_s",
"warmup_s", "max_requests"?, "time_limit_s"?, "loop": "auto|uvloop|asyncio"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

# A client still waiting this long after the level's deadline counts as timed out.
GRACE_S = 10.0
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    close: bool


class ResponseParser:
    """Incremental HTTP/1.1 response parser: Content-Length, chunked, or read-to-close.

    ``feed`` returns every response completed by the new bytes; ``eof`` the one that
    ends with the connection (a body without length). Raises ValueError on a head
    that is not HTTP/1.x.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Response]:
        self._buffer += data
        responses: list[Response] = []
        while True:
            response = self._parse_one(at_eof=False)
            if response is None:
                return responses
            responses.append(response)

    def eof(self) -> Response | None:
        return self._parse_one(at_eof=True) if self._buffer else None

    def _parse_one(self, *, at_eof: bool) -> Response | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        version, _, rest = head[0].partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x response: {head[0][:80]!r}")
        status = int(rest[:3])
        length: int | None = None
        chunked = False
        close = version == "HTTP/1.0"
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                tokens = value.lower()
                close = "close" in tokens or (close and "keep-alive" not in tokens)
        start = end + 4
        if status < 200 or status in NO_BODY_STATUSES:
            if status < 200:  # 1xx interim answers: skip, the real one follows
                del buffer[:start]
                return self._parse_one(at_eof=at_eof)
            del buffer[:start]
            return Response(status, b"", close)
        if chunked:
            return self._parse_chunked(start, status, close)
        if length is not None:
            if len(buffer) < start + length:
                return None
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            return Response(status, body, close)
        if not at_eof:
            return None
        body = bytes(buffer[start:])
        buffer.clear()
        return Response(status, body, True)

    def _parse_chunked(self, position: int, status: int, close: bool) -> Response | None:
        buffer = self._buffer
        parts: list[bytes] = []
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
            position = line_end + 2
            if size == 0:
                break
            if len(buffer) < position + size + 2:
                return None
            parts.append(bytes(buffer[position : position + size]))
            position += size + 2
        # Trailers, if any, end with an empty line.
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            empty = line_end == position
            position = line_end + 2
            if empty:
                break
        del buffer[:position]
        return Response(status, b"".join(parts), close)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except ValueError as exc:
            self._fail(exc)
            return
        for response in responses:
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(response)

    def eof_received(self) -> bool | None:
        response = self.parser.eof()
        waiter, self.waiter = self.waiter, None
        if response is not None and waiter is not None and not waiter.done():
            waiter.set_result(response)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class Connection:
    """One keep-alive connection; reconnects lazily after the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._protocol: _ClientProtocol | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send ``raw`` (a whole request) and return the answer's status and body.

        Raises OSError (or ValueError for an unreadable answer) when the exchange fails.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_ClientProtocol, self.host, self.port)
            self._protocol = protocol
        assert protocol.transport is not None
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        protocol.transport.write(raw)
        response = await waiter
        if response.close:
            self.close()
        return response.status, response.body

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


def build_request(
    host: str,
    path: str,
    key: str,
    body: bytes,
    *,
    port: int | None = None,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A whole HTTP/1.1 request (JSON body; ``X-API-Key`` when ``key`` is set)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}" + (f":{port}" if port else "")]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if key:
        lines.append(f"X-API-Key: {key}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _percentile_ms(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def run_level(
    host: str,
    port: int,
    raw: bytes,
    concurrency: int,
    duration_s: float,
    *,
    max_requests: int | None = None,
) -> dict[str, Any]:
    """Drive ``concurrency`` closed-loop clients for ``duration_s`` (or ``max_requests``).

    Returns requests (answers received, any status), ok (200s), errors (non-200 answers,
    failed exchanges, clients timed out), rps (200s per second), p50/p95/p99 in ms over
    every answer, statuses (count per status code), wall_s, cpu_s (this process's
    user+system seconds) and, when there was one, the first non-200 answer's start.
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    issued = 0
    first_error: str | None = None
    deadline = time.perf_counter() + duration_s
    clock = time.perf_counter

    async def client() -> None:
        nonlocal failures, issued, first_error
        connection = Connection(host, port)
        try:
            while clock() < deadline and (max_requests is None or issued < max_requests):
                issued += 1
                started = clock()
                try:
                    status, body = await connection.request(raw)
                except (OSError, ValueError) as exc:
                    failures += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"
                    connection.close()
                    connection = Connection(host, port)
                    await asyncio.sleep(0.01)  # a server that refuses must not spin us
                    continue
                latencies.append(clock() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200 and first_error is None:
                    first_error = f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
        finally:
            connection.close()

    cpu_before = os.times()
    started = clock()
    tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=duration_s + GRACE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall_s = clock() - started
    cpu_after = os.times()
    latencies.sort()
    ok = statuses.get(200, 0)
    answered = len(latencies)
    return {
        "concurrency": concurrency,
        "requests": answered,
        "ok": ok,
        "errors": answered - ok + failures + len(pending),
        "timed_out_clients": len(pending),
        "rps": ok / wall_s if wall_s else 0.0,
        "p50_ms": _percentile_ms(latencies, 0.50),
        "p95_ms": _percentile_ms(latencies, 0.95),
        "p99_ms": _percentile_ms(latencies, 0.99),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "wall_s": wall_s,
        "cpu_s": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
        "first_error": first_error,
    }


async def run_spec(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every level of ``spec`` in turn, each after its own unmeasured warm-up."""
    raw = Path(spec["request_file"]).read_bytes()
    host, port = spec["host"], int(spec["port"])
    results = []
    for concurrency in spec["levels"]:
        if spec.get("warmup_s", 0) > 0:
            await run_level(host, port, raw, concurrency, float(spec["warmup_s"]))
        if spec.get("max_requests"):
            result = await run_level(
                host,
                port,
                raw,
                concurrency,
                float(spec.get("time_limit_s", 600)),
                max_requests=int(spec["max_requests"]),
            )
        else:
            result = await run_level(host, port, raw, concurrency, float(spec["duration_s"]))
        result["cpu_cores"] = result["cpu_s"] / result["wall_s"] if result["wall_s"] else 0.0
        results.append(result)
    return results


def new_event_loop(kind: str) -> tuple[asyncio.AbstractEventLoop, str]:
    """An event loop of ``kind`` (auto: uvloop when installed) and the name of what it is."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop(), f"uvloop {getattr(uvloop, '__version__', '')}".strip()
    return asyncio.new_event_loop(), "asyncio"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="JSON file describing the run")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    loop, loop_name = new_event_loop(spec.get("loop", "auto"))
    try:
        levels = loop.run_until_complete(run_spec(spec))
    finally:
        loop.close()
    sys.stdout.write(json.dumps({"loop": loop_name, "levels": levels}) + "\n")


if __name__ == "__main__":
    main()
