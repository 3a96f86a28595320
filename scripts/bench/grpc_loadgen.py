"""Closed-loop gRPC load generator for ``inference.GRPCInferenceService/ModelInfer``.

The gRPC counterpart of ``loadgen.py``, with the same spec and the same JSON line of
results, so the orchestrator treats both alike. Each simulated client owns a
channel (as one client process would) and sends the same pre-serialised
``ModelInferRequest`` bytes in a closed loop over grpc.aio, with no (de)serialiser:
the answer's bytes are only checked for a status, not decoded, so the client's CPU
stays low and the same for every server.

    python scripts/bench/grpc_loadgen.py --spec spec.json

The spec: ``{"host", "port", "request_file", "metadata": [[k, v], ...], "levels",
"duration_s", "warmup_s"}`` (``request_file`` holds the serialised request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from loadgen import _percentile_ms  # same folder: the script's own path

METHOD = "/inference.GRPCInferenceService/ModelInfer"
GRACE_S = 10.0


async def run_level(
    target: str,
    request: bytes,
    metadata: tuple[tuple[str, str], ...],
    concurrency: int,
    duration_s: float,
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients for ``duration_s``; loadgen.run_level's keys
    (statuses are gRPC status names; "ok" counts OK answers)."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    first_error: str | None = None
    deadline = time.perf_counter() + duration_s
    clock = time.perf_counter

    async def client() -> None:
        nonlocal first_error
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.unary_unary(METHOD)
            while clock() < deadline:
                started = clock()
                try:
                    await call(request, metadata=metadata, timeout=30)
                    status = "OK"
                except grpc.aio.AioRpcError as error:
                    status = error.code().name
                    first_error = first_error or f"{status}: {error.details()}"
                latencies.append(clock() - started)
                statuses[status] = statuses.get(status, 0) + 1

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
    ok = statuses.get("OK", 0)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "ok": ok,
        "errors": len(latencies) - ok + len(pending),
        "timed_out_clients": len(pending),
        "rps": ok / wall_s if wall_s else 0.0,
        "p50_ms": _percentile_ms(latencies, 0.50),
        "p95_ms": _percentile_ms(latencies, 0.95),
        "p99_ms": _percentile_ms(latencies, 0.99),
        "statuses": dict(sorted(statuses.items())),
        "wall_s": wall_s,
        "cpu_s": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
        "first_error": first_error,
    }


async def run_spec(spec: dict[str, Any]) -> list[dict[str, Any]]:
    request = Path(spec["request_file"]).read_bytes()
    target = f"{spec['host']}:{spec['port']}"
    metadata = tuple((str(k), str(v)) for k, v in spec.get("metadata", []))
    results = []
    for concurrency in spec["levels"]:
        if spec.get("warmup_s", 0) > 0:
            await run_level(target, request, metadata, concurrency, float(spec["warmup_s"]))
        result = await run_level(target, request, metadata, concurrency, float(spec["duration_s"]))
        result["cpu_cores"] = result["cpu_s"] / result["wall_s"] if result["wall_s"] else 0.0
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="JSON file describing the run")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    levels = asyncio.run(run_spec(spec))
    sys.stdout.write(json.dumps({"loop": "asyncio (grpc.aio)", "levels": levels}) + "\n")


if __name__ == "__main__":
    main()
