"""``python -m phoenix.web_server`` as make run starts it: spawned uvicorn workers that
each listen on a socket of their own (SO_REUSEPORT) and write a response in one piece."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port

APP = """
import os

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def _listening_sockets(port: int) -> int:
    """LISTEN entries for ``port`` in /proc/net/tcp (state 0A)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def _server(tmp_path: Path, *, workers: int, env: dict[str, str] | None = None) -> Iterator[int]:
    (tmp_path / "pid_app.py").write_text(APP)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phoenix.web_server",
            "pid_app:app",
            *("--app-dir", str(tmp_path), "--port", str(port), "--workers", str(workers)),
            "--no-access-log",
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if not wait_for_port(port, timeout_s=60):
            process.kill()
            pytest.fail(f"server did not start: {process.communicate()[1].decode()}")
        # Every worker listening (each starts in its own time).
        deadline = time.monotonic() + 60
        while _listening_sockets(port) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[int]:
    yield from _server(tmp_path, workers=2)


def test_each_worker_listens_on_its_own_socket_and_connections_reach_both(two_workers: int) -> None:
    port = two_workers

    assert _listening_sockets(port) == 2  # the parent's socket holds the port, unlistened

    pids = set()
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(24)]
    for connection in connections:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        pids.add(response.read())
    for connection in connections:
        connection.close()
    # Hashed across two sockets: 24 connections all on one has odds of 2 in 16 million.
    assert len(pids) == 2


def test_reuse_port_can_be_switched_off(tmp_path: Path) -> None:
    for port in _server(tmp_path, workers=2, env={"PHOENIX_WEB_REUSE_PORT": "0"}):
        time.sleep(0.5)
        assert _listening_sockets(port) == 1  # uvicorn's own: one socket shared
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
