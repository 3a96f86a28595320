"""Load-test a running Phoenix server's predict endpoints and compare with raw onnxruntime.

Drives keep-alive HTTP/1.1 connections with the load generator of ``scripts/bench/``
(``bench/loadgen.py``: one connection per simulated client, a raw asyncio protocol so
it costs little of the cores it shares with the server) and prints requests/s and
p50/p95/p99 per concurrency. For the side-by-side comparison with the peer servers,
which starts every server itself, use ``python -m scripts.bench`` instead.

    python scripts/bench_predict.py --url http://127.0.0.1:8000 --model credit \\
        --key phx_... --onnx var/media/models/credit/<sha>/model.onnx --features x1,x2,x3

The floor is an in-process onnxruntime loop on the same file: what the model costs
with no server at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from urllib.parse import urlsplit

import numpy as np
from bench.loadgen import build_request, run_level

__all__ = ["build_request", "run_level"]  # also used by bench_events_http.py


def onnx_floor(path: str, width: int, rows: int, duration_s: float) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)}
    for _ in range(100):
        session.run(None, feed)
    timings: list[float] = []
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        session.run(None, feed)
        timings.append(time.perf_counter() - t0)
    median = statistics.median(timings)
    return {"calls_per_s": 1 / median, "rows_per_s": rows / median, "p50_us": median * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="credit-risk")
    parser.add_argument("--key", default=os.environ.get("PHOENIX_API_KEY", ""))
    parser.add_argument("--features", required=True, help="comma-separated feature names")
    parser.add_argument("--onnx", help="model file for the raw onnxruntime floor")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per level")
    parser.add_argument("--batch", type=int, default=256, help="rows in the batch run (0: skip)")
    parser.add_argument(
        "--endpoints", default="predict,v2", help="predict (REST v1), v2 (Open Inference)"
    )
    args = parser.parse_args()

    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    names = [n.strip() for n in args.features.split(",") if n.strip()]
    rng = np.random.default_rng(1)
    row = rng.normal(size=len(names)).round(4).tolist()
    bodies = {
        "predict": (
            f"/api/v1/models/{args.model}/predict",
            json.dumps({"features": dict(zip(names, row, strict=True))}).encode(),
        ),
        "v2": (
            f"/v2/models/{args.model}/infer",
            json.dumps(
                {
                    "inputs": [
                        {"name": "X", "datatype": "FP32", "shape": [1, len(names)], "data": row}
                    ]
                }
            ).encode(),
        ),
    }
    print(f"cores: {os.cpu_count()}  server: {args.url}  model: {args.model}")
    if args.onnx:
        floor = onnx_floor(args.onnx, len(names), 1, 1.0)
        print(
            f"raw onnxruntime, 1 row: {floor['calls_per_s']:,.0f} calls/s "
            f"(p50 {floor['p50_us']:.1f} us)"
        )
        if args.batch:
            floor = onnx_floor(args.onnx, len(names), args.batch, 1.0)
            print(f"raw onnxruntime, {args.batch} rows: {floor['rows_per_s']:,.0f} rows/s")
    levels = [int(c) for c in args.concurrency.split(",")]
    for endpoint in [e.strip() for e in args.endpoints.split(",") if e.strip()]:
        path, body = bodies[endpoint]
        raw = build_request(host, path, args.key, body)
        for concurrency in levels:
            r = asyncio.run(run_level(host, port, raw, concurrency, args.duration))
            print(
                f"{endpoint:8} c={concurrency:<3} {r['rps']:8,.0f} req/s  p50 {r['p50_ms']:6.2f} ms"
                f"  p95 {r['p95_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}"
            )
    if args.batch:
        batch = rng.normal(size=(args.batch, len(names))).round(4).tolist()
        raw = build_request(
            host,
            f"/api/v1/models/{args.model}/predict",
            args.key,
            json.dumps({"features": batch}).encode(),
        )
        r = asyncio.run(run_level(host, port, raw, 8, args.duration))
        print(
            f"predict batch of {args.batch}, c=8: {r['rps'] * args.batch:,.0f} rows/s "
            f"({r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, errors {r['errors']})"
        )


if __name__ == "__main__":
    main()
