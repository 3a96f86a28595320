"""What the ASGI edge (phoenix/edge.py) and its throttles add to a predict request.

In one process, no socket: warm single-row REST predicts are sent as ASGI calls to the
data plane (``phoenix.asgi.data_plane``: API-key auth, routing, metrics, ONNX Runtime,
event publishing to the embedded database backend) in alternating blocks:

  bare       the data plane alone (no edge);
  limits     the edge with its header and body limits, throttles off;
  throttled  the edge with the default throttles (per IP, per key, auth failures), the
             counts synced to the cache every PHOENIX_THROTTLE_SYNC_S by its thread.

Each "throttled" block's p50 is compared with the mean of the "bare" blocks either side
(the same paired method as bench_events.py). A second measurement times the edge alone
around an ASGI app that answers at once, for the edge's own cost in microseconds.

With ``--http``, also as a client sees it: uvicorn (one worker, models preloaded) serving
``phoenix.asgi`` (edge, default throttles) and ``scripts/asgi_without_edge.py`` in
alternating runs ``bare edge bare edge ... bare``, single-row predicts from
``bench_predict.py``'s keep-alive load generator at one client, and each edge run's p50
against the mean of the bare runs either side.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/phoenix_bench \\
        .venv/bin/python scripts/bench_edge.py --blocks 20 --http 6
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")
os.environ.setdefault("PHOENIX_DATA_DIR", str(ROOT / "var" / "bench-edge"))
os.environ.setdefault("PHOENIX_LOG_LEVEL", "WARNING")

from bench_events import bench_setup, paired_summary, percentile  # noqa: E402

BODY = b'{"features": {"x1": 0.5, "x2": -1.0, "x3": 2.0}}'


def scope(path: str, key: str) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-api-key", key.encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def one(app: Any, request: dict[str, Any]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(request, receive, send)
    return int(sent[0]["status"])


async def block(app: Any, request: dict[str, Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter_ns()
        status = await one(app, request)
        times.append((time.perf_counter_ns() - started) / 1000)
        assert status == 200, status
    return times


async def edge_alone(edge: Any, bare: Any, request: dict[str, Any], n: int) -> tuple[float, float]:
    """Median µs per call of ``edge`` and ``bare`` (an app that answers at once)."""
    rounds_edge: list[float] = []
    rounds_bare: list[float] = []
    for _ in range(15):
        for app, out in ((bare, rounds_bare), (edge, rounds_edge)):
            started = time.perf_counter_ns()
            for _ in range(n):
                await one(app, request)
            out.append((time.perf_counter_ns() - started) / 1000 / n)
    return statistics.median(rounds_edge), statistics.median(rounds_bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--http", type=int, default=0, help="edge runs over HTTP (0: none)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per HTTP run")
    args = parser.parse_args()

    name, key = bench_setup("bench-edge")
    from phoenix.asgi import data_plane
    from phoenix.edge import Edge
    from phoenix.throttling import Throttle

    request = scope(f"/api/v1/models/{name}/predict", key)
    throttled = Edge(data_plane)  # the settings' defaults: every throttle on
    limits = Edge(data_plane, throttle=Throttle({}))
    print(f"throttle rates: {throttled.throttle.rates}, sync {throttled.throttle.sync_s} s")

    async def run() -> None:
        await block(data_plane, request, 200)  # warm: key cached, session loaded
        await block(throttled, request, 200)
        bare_p50s: list[float] = []
        throttled_p50s: list[float] = []
        limits_p50s: list[float] = []
        samples: dict[str, list[float]] = {"bare": [], "throttled": [], "limits": []}
        bare_p50s.append(statistics.median(await block(data_plane, request, args.requests)))
        for _ in range(args.blocks):
            for label, app, p50s in (
                ("throttled", throttled, throttled_p50s),
                ("limits", limits, limits_p50s),
                ("bare", data_plane, bare_p50s),
            ):
                times = await block(app, request, args.requests)
                samples[label] += times
                p50s.append(statistics.median(times))
        for label, times in samples.items():
            p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
            print(f"{label:9s} p50 {p50:7.1f} us  p99 {p99:7.1f} us")
        for label, p50s in (("throttled", throttled_p50s), ("limits", limits_p50s)):
            median, q1, q3, low, high = paired_summary(bare_p50s, p50s)
            print(
                f"{label} vs bare, p50: {100 * (median - 1):+.2f} % "
                f"(IQR {100 * (q1 - 1):+.2f} .. {100 * (q3 - 1):+.2f}; "
                f"95 % CI {100 * (low - 1):+.2f} .. {100 * (high - 1):+.2f})"
            )

        async def instant(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        for label, edge in (
            ("throttled", Edge(instant)),
            ("limits", Edge(instant, throttle=Throttle({}))),
        ):
            edge_us, bare_us = await edge_alone(edge, instant, request, 20_000)
            print(f"edge alone ({label}): {edge_us - bare_us:.2f} us per request")
        p50 = statistics.median(samples["bare"])
        print(f"predict p50 without the edge: {p50:.1f} us")

    asyncio.run(run())
    if args.http:
        http_runs(name, key, args.http, args.duration)


def http_runs(name: str, key: str, rounds: int, duration: float) -> None:
    from bench_events_http import free_port, server
    from bench_predict import build_request, run_level
    from django.db import connection

    connection.close()
    raw = build_request("127.0.0.1", f"/api/v1/models/{name}/predict", key, BODY)

    def p50(app: str) -> float:
        port = free_port()
        with server(app, port=port, workers=1, env={}):
            asyncio.run(run_level("127.0.0.1", port, raw, 1, 1.0))  # warm
            result = asyncio.run(run_level("127.0.0.1", port, raw, 1, duration))
        assert not result["errors"], result
        return float(result["p50_ms"]) * 1000

    bare = [p50("scripts.asgi_without_edge:application")]
    edge: list[float] = []
    for _ in range(rounds):
        edge.append(p50("phoenix.asgi:application"))
        bare.append(p50("scripts.asgi_without_edge:application"))
    print(f"HTTP c=1 p50, bare runs (us): {', '.join(f'{v:.0f}' for v in bare)}")
    print(f"HTTP c=1 p50, edge runs (us): {', '.join(f'{v:.0f}' for v in edge)}")
    median, q1, q3, low, high = paired_summary(bare, edge)
    print(
        f"edge (default throttles) vs bare over HTTP, p50: {100 * (median - 1):+.2f} % "
        f"(IQR {100 * (q1 - 1):+.2f} .. {100 * (q3 - 1):+.2f}; "
        f"95 % CI {100 * (low - 1):+.2f} .. {100 * (high - 1):+.2f})"
    )


if __name__ == "__main__":
    main()
