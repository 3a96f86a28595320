"""Paired rounds: REST predict on stock uvicorn against ``phoenix.web_server``.

Three variants of the same web process (2 workers, SQLite events, API key, metrics on),
each started fresh in turn within every round so that they share the machine's moods:

  uvicorn             ``python -m uvicorn`` (one shared socket, head and body written apart)
  coalesce            ``python -m phoenix.web_server`` with PHOENIX_WEB_REUSE_PORT=0
  coalesce+reuseport  ``python -m phoenix.web_server`` (as make run starts it)

Each is driven by scripts/bench/loadgen.py at every concurrency level; reported per
variant and level: median requests/s, p50 and p99 over the rounds, the worst p99, and
the server processes' CPU per request (user + sys of the whole process tree).

    .venv/bin/python scripts/bench_web_server.py --rounds 6 --levels 8,64
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "uvicorn": ("uvicorn", {}),
    "coalesce": ("phoenix.web_server", {"PHOENIX_WEB_REUSE_PORT": "0"}),
    "coalesce+reuseport": ("phoenix.web_server", {}),
}
BODY = (
    b'{"features": {"f0": -0.341, "f1": 2.4209, "f2": 1.2503, "f3": 4.3093, '
    b'"f4": 0.0751, "f5": 0.1261, "f6": -2.2679, "f7": -1.3068}}'
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in _tree(int(child)))]


def _cpu_s(pid: int) -> float:
    total = 0.0
    for process in _tree(pid):
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--levels", default="8,64", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per level")
    parser.add_argument(
        "--model",
        default=str(ROOT / "var/bench/work/gbm100.onnx"),
        help="ONNX model with inputs f0..f7 (make bench builds this one)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    python = sys.executable
    data = Path(tempfile.mkdtemp(prefix="bench-web-"))
    base_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    base_env.update(PHOENIX_DATA_DIR=str(data), PHOENIX_PRELOAD_MODELS="1")

    def manage(*argv: str) -> str:
        return subprocess.run(
            [python, "manage.py", *argv],
            cwd=ROOT, env=base_env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    manage("migrate", "--noinput", "--verbosity", "0")
    manage("register_model", args.model, "--name", "bench", "--stage", "production",
           "--alias", "champion")  # fmt: skip
    key = manage("create_api_key", "bench", "--model", "bench").strip().splitlines()[-1]

    results: dict[tuple[str, int], list[dict[str, float]]] = {
        (variant, level): [] for variant in VARIANTS for level in levels
    }
    for round_number in range(args.rounds):
        for variant, (module, extra) in VARIANTS.items():
            port = _free_port()
            metrics_dir = data / f"prometheus-{variant}-{round_number}"
            metrics_dir.mkdir()
            server = subprocess.Popen(
                [python, "-m", module, "phoenix.asgi:application", "--port", str(port),
                 "--workers", "2", "--no-access-log", "--lifespan", "on", "--http", "httptools"],
                cwd=ROOT,
                env={**base_env, **extra, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                for _ in range(300):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                        break
                    except OSError:
                        time.sleep(0.1)
                time.sleep(3.0)  # both workers warm
                request = data / "request.http"
                request.write_bytes(
                    b"POST /api/v1/models/bench/predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\nX-API-Key: %s\r\n\r\n"
                    % (port, len(BODY), key.encode())
                    + BODY
                )
                for level in levels:
                    spec = data / "spec.json"
                    spec.write_text(json.dumps({
                        "host": "127.0.0.1", "port": port, "request_file": str(request),
                        "levels": [level], "duration_s": args.duration, "warmup_s": 1.0,
                        "loop": "auto",
                    }))  # fmt: skip
                    before = _cpu_s(server.pid)
                    answer = subprocess.run(
                        [python, str(ROOT / "scripts/bench/loadgen.py"), "--spec", str(spec)],
                        capture_output=True, text=True, check=True,
                    ).stdout  # fmt: skip
                    cpu = _cpu_s(server.pid) - before
                    measured = json.loads(answer)["levels"][0]
                    # The warm-up second's requests ran at the same rate and cost CPU too.
                    served = measured["requests"] * (args.duration + 1.0) / args.duration
                    row = {
                        "rps": measured["rps"],
                        "p50_ms": measured["p50_ms"],
                        "p99_ms": measured["p99_ms"],
                        "cpu_us": cpu / max(served, 1) * 1e6,
                        "errors": measured.get("errors", 0),
                    }
                    results[(variant, level)].append(row)
                    print(round_number, variant, level, {k: round(v, 2) for k, v in row.items()},
                          flush=True)  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=60)

    print("\n| variant | clients | req/s (median, min) | p50 ms | p99 ms (median, worst) "
          "| server CPU us/request | errors |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for (variant, level), rows in results.items():

        def median(name: str, rows: list[dict[str, float]] = rows) -> float:
            return statistics.median(r[name] for r in rows)

        print(
            f"| {variant} | {level} | {median('rps'):,.0f} ({min(r['rps'] for r in rows):,.0f})"
            f" | {median('p50_ms'):.2f} | {median('p99_ms'):.1f} "
            f"({max(r['p99_ms'] for r in rows):.1f}) | {median('cpu_us'):.0f} "
            f"| {sum(int(r['errors']) for r in rows)} |"
        )


if __name__ == "__main__":
    main()
