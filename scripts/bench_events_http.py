"""Predict latency over HTTP with prediction event logging off and on, as a client sees it.

Starts the ASGI server the way production runs it (uvicorn, ``phoenix.asgi``, N workers,
models preloaded) against the database named by DATABASE_URL, drives single-row REST
predicts with ``bench_predict.py``'s keep-alive load generator, and alternates server
runs ``off on off on ...``: "off" serves ``scripts/asgi_without_events.py`` (no event
record built, nothing published), "on" the real application. Each "on" run is compared
with the mean of the "off" runs either side of it. Backends (``--modes``):

  database   the embedded event backend writing to DATABASE_URL from the API process;
  kafka      a tansu broker plus ``manage.py consume_events`` as its own process (the
             whole stack co-located on this machine), running during "off" runs too.

After the runs every successful "on" request must be exactly one row in the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/phoenix_events \\
        .venv/bin/python scripts/bench_events_http.py --modes database,kafka
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")
os.environ.setdefault("PHOENIX_DATA_DIR", str(ROOT / "var" / "bench-events"))
os.environ.setdefault("PHOENIX_LOG_LEVEL", "WARNING")

from bench_events import bench_setup, paired_summary, rows_wait, tansu_broker  # noqa: E402
from bench_predict import build_request, run_level  # noqa: E402

FEATURES = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(app: str, *, port: int, workers: int, env: dict[str, str]) -> Iterator[None]:
    """uvicorn serving ``app`` until the block ends; waits for /readyz first."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", app, "--port", str(port)),
            *("--workers", str(workers), "--no-access-log", "--lifespan", "on"),
            *("--log-level", os.environ.get("BENCH_UVICORN_LOG_LEVEL", "warning")),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "PHOENIX_PRELOAD_MODELS": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"server {app} did not become ready")
            time.sleep(0.2)
        yield
    finally:
        # SIGTERM: the workers flush their event buffers on the way out (atexit).
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="database,kafka", help="database, kafka")
    parser.add_argument("--concurrency", default="1,8", help="clients per level")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per level")
    parser.add_argument("--rounds", type=int, default=4, help="'on' runs per mode")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the spread needs two pairs)")
    levels = [int(c) for c in args.concurrency.split(",")]

    name, key = bench_setup("bench-events-http")
    from django.db import connection

    from monitoring.models import PredictionLog

    connection.close()  # the servers are other processes; keep no idle session open

    def rows_logged() -> int:
        count = PredictionLog.objects.filter(model_name=name).count()
        connection.close()
        return count

    def rows_arrived(expected: int) -> int:
        return rows_wait(rows_logged, expected, timeout_s=60, poll_s=0.2, settle_s=0.5)

    def measure(app: str, port: int, env: dict[str, str]) -> tuple[dict[int, Any], int]:
        body = json.dumps({"features": FEATURES}).encode()
        raw = build_request("127.0.0.1", f"/api/v1/models/{name}/predict", key, body)
        results: dict[int, Any] = {}
        ok = 0
        with server(app, port=port, workers=args.workers, env=env):
            warm = asyncio.run(run_level("127.0.0.1", port, raw, max(levels), 1.0))
            ok += int(warm["requests"] - warm["errors"])
            for level in levels:
                result = asyncio.run(run_level("127.0.0.1", port, raw, level, args.duration))
                if result["errors"]:
                    raise SystemExit(f"{result['errors']} failed requests at c={level}")
                results[level] = result
                ok += int(result["requests"])
        return results, ok

    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        with ExitStack() as stack:
            env = {"PHOENIX_EVENT_BACKEND": "database"}
            if mode == "kafka":
                bootstrap = stack.enter_context(tansu_broker())
                env = {
                    "PHOENIX_EVENT_BACKEND": "kafka",
                    "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "PHOENIX_EVENT_JOURNAL_DIR": tempfile.mkdtemp(prefix="bench-journal-"),
                }
                consumer = subprocess.Popen(
                    [
                        *(sys.executable, str(ROOT / "manage.py"), "consume_events"),
                        *("--bootstrap-servers", bootstrap, "--group-id", "bench-http"),
                        *("--partitions", "0,1,2"),
                    ],
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                stack.callback(stop_process, consumer)
            before = rows_logged()
            port = free_port()
            runs: dict[str, list[dict[int, Any]]] = {"off": [], "on": []}
            logged = 0
            began = time.monotonic()
            for run in range(args.rounds * 2 + 1):
                pipeline = "off" if run % 2 == 0 else "on"
                app = "scripts.asgi_without_events" if pipeline == "off" else "phoenix.asgi"
                app += ":application"
                results, ok = measure(app, port, env)
                runs[pipeline].append(results)
                if pipeline == "on":
                    logged += ok
                    # Stopped servers flush on the way out: nothing may be missing now
                    # (with Kafka, once the consumer caught up).
                    got = rows_arrived(before + logged) - before
                    if got != logged:
                        print(f"[{mode}] run {run}: {got}/{logged} rows  MISMATCH")
            seconds = time.monotonic() - began
            for level in levels:
                off_p50 = [r[level]["p50_ms"] for r in runs["off"]]
                on_p50 = [r[level]["p50_ms"] for r in runs["on"]]
                median, low, high, _, _ = paired_summary(off_p50, on_p50)
                for pipeline in ("off", "on"):
                    picked = runs[pipeline]
                    print(
                        f"[{mode}] c={level} pipeline {pipeline:3}: "
                        f"{statistics.median(r[level]['rps'] for r in picked):,.0f} req/s, "
                        f"p50 {statistics.median(r[level]['p50_ms'] for r in picked):.3f} ms, "
                        f"p99 {statistics.median(r[level]['p99_ms'] for r in picked):.2f} ms "
                        f"(medians of {len(picked)} runs)"
                    )
                print(
                    f"[{mode}] c={level}: logging adds {100 * (median - 1):+.1f}% to p50 "
                    f"(median of {len(on_p50)} on runs vs the off runs either side; "
                    f"range of pairs {100 * (min(low, median) - 1):+.1f}% .. "
                    f"{100 * (max(high, median) - 1):+.1f}% interquartile)"
                )
            got = rows_arrived(before + logged) - before
            print(
                f"[{mode}] {got}/{logged} rows for the successful 'on' requests "
                f"({seconds:.0f} s, load average {os.getloadavg()[0]:.2f})"
                + ("" if got == logged else "  MISMATCH")
            )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
