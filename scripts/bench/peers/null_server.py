"""The null server: a fixed tiny HTTP 200 JSON answer to every request, at minimal cost.

Its requests/s is the load generator's ceiling on this machine: no server can be
measured faster than this. A raw ``asyncio.Protocol`` that finds the end of each
request head and skips its ``Content-Length`` body; standard library only (uvloop
when installed).

    python scripts/bench/peers/null_server.py --port 8900
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
from typing import cast

BODY = b'{"predictions":[0]}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class NullProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            match = _CONTENT_LENGTH.search(self.buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                break
            del self.buffer[:total]
            answers += 1
        if answers and self.transport is not None:
            self.transport.write(ANSWER * answers)


async def serve(host: str, port: int) -> asyncio.Server:
    """A listening null server (already serving); close it to stop."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(NullProtocol, host, port, reuse_address=True)


async def _main(host: str, port: int) -> None:
    server = await serve(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"null server on http://{host}:{port}/", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_main(args.host, args.port))
    else:
        uvloop.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
