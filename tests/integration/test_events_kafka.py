"""Prediction events through a real Kafka-protocol broker (tansu) into PredictionLog.

Consumers read assigned partitions (still committing offsets to their group) except
in the group test: tansu's first group join takes ~20 s.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import call_command

from inference.events import EVENTS_SPILLED, EventPublisher, PublisherConfig
from monitoring.models import PredictionLog
from monitoring.services.event_consumer import ConsumerConfig, PredictionLogConsumer
from monitoring.services.prediction_log import WriteResult

TOPIC = "inference-events"
DLQ = "inference-events-dlq"

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def make_events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "request_id": uuid.uuid4().hex,
            "row_index": 0,
            "model": f"model-{i % 20}",  # 20 keys cover all 3 partitions
            "version": "1",
            "routed_by": "single",
            "features": {"x1": float(i)},
            "prediction": i % 2,
            "probabilities": [0.4, 0.6],
            "confidence": 0.6,
            "latency_ms": 0.3,
            "created_at": datetime.now(UTC).isoformat(),
        }
        for i in range(n)
    ]


def kafka_publisher(broker: Any, tmp_path: Path, **overrides: Any) -> EventPublisher:
    values: dict[str, Any] = {
        "backend": "kafka",
        "topic": TOPIC,
        "buffer_size": 1000,
        "batch_size": 100,
        "flush_interval_s": 0.05,
        "journal_dir": tmp_path / "journal",
        "bootstrap_servers": broker.bootstrap,
        "partitions": 3,
        "send_timeout_s": 2.0,
        "retry_max_s": 0.5,
    }
    values.update(overrides)
    return EventPublisher(PublisherConfig(**values))


def consumer_for(broker: Any, **overrides: Any) -> PredictionLogConsumer:
    values: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap,
        "topic": TOPIC,
        "group_id": "test-log-writer",
        "dlq_topic": DLQ,
        "batch_size": 100,
        "partitions": [0, 1, 2],
    }
    values.update(overrides)
    return PredictionLogConsumer(ConsumerConfig(**values))


def publish_all(publisher: EventPublisher, events: list[dict[str, Any]], chunk: int = 4) -> float:
    """Publish like a server would (a few rows per request); returns the slowest call."""
    slowest = 0.0
    for start in range(0, len(events), chunk):
        began = time.perf_counter()
        publisher.publish([(TOPIC, e) for e in events[start : start + chunk]])
        slowest = max(slowest, time.perf_counter() - began)
    return slowest


def produce_one_per_message(broker: Any, events: list[dict[str, Any]]) -> None:
    """One event object per message (the consumer reads these as well as arrays)."""
    from kafka import KafkaProducer

    from inference.event_sinks import topics_ensure

    topics_ensure(bootstrap_servers=broker.bootstrap, topics=[TOPIC, DLQ], partitions=3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=20)
    for event in events:
        producer.send(TOPIC, key=event["model"].encode(), value=orjson.dumps(event))
    producer.flush(10)
    producer.close()


def stored_ids() -> set[str]:
    return {str(i) for i in PredictionLog.objects.values_list("event_id", flat=True)}


@pytest.mark.timeout(60)
def test_n_events_become_exactly_n_rows(kafka_broker: Any, tmp_path: Path) -> None:
    events = make_events(300)
    publisher = kafka_publisher(kafka_broker, tmp_path)

    publish_all(publisher, events)
    publisher.stop()
    stats = consumer_for(kafka_broker).run(idle_timeout_s=2)

    assert PredictionLog.objects.count() == 300
    assert stored_ids() == {e["event_id"] for e in events}
    assert stats.inserted == 300
    assert stats.duplicates == 0


@pytest.mark.timeout(90)
def test_frozen_broker_never_blocks_publish_and_loses_nothing(
    kafka_broker: Any, tmp_path: Path
) -> None:
    events = make_events(400)
    publisher = kafka_publisher(kafka_broker, tmp_path, buffer_size=50, batch_size=20)
    spilled_before = sum(
        EVENTS_SPILLED.labels(reason=r)._value.get() for r in ("buffer_full", "backend_unavailable")
    )
    publish_all(publisher, events[:100])
    deadline = time.monotonic() + 10
    while publisher.status()["buffer_depth"] and time.monotonic() < deadline:
        time.sleep(0.05)

    kafka_broker.freeze()
    try:
        slowest = publish_all(publisher, events[100:300])
        time.sleep(3)  # long enough for in-flight sends to time out into the journal
        assert slowest < 0.25, f"publish blocked for {slowest:.3f}s with the broker frozen"
        spilled = sum(
            EVENTS_SPILLED.labels(reason=r)._value.get()
            for r in ("buffer_full", "backend_unavailable")
        )
        assert spilled - spilled_before > 0
        assert publisher.journal.size_bytes() > 0
    finally:
        kafka_broker.thaw()

    publish_all(publisher, events[300:])
    deadline = time.monotonic() + 40
    while (publisher.journal.has_pending() or publisher.status()["buffer_depth"]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not publisher.journal.has_pending(), publisher.status()
    publisher.stop()
    consumer_for(kafka_broker).run(idle_timeout_s=3)

    assert PredictionLog.objects.count() == 400
    assert stored_ids() == {e["event_id"] for e in events}


class Killed(Exception):
    pass


class DiesBeforeSecondCommit(PredictionLogConsumer):
    """Writes its second batch to the database, then dies before committing offsets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.results: list[WriteResult] = []

    def process(self, messages: list[Any]) -> WriteResult:
        result = super().process(messages)
        self.results.append(result)
        if len(self.results) == 2:
            raise Killed
        return result


@pytest.mark.timeout(60)
def test_consumer_killed_mid_batch_restarts_with_no_duplicate_and_no_gap(
    kafka_broker: Any, tmp_path: Path
) -> None:
    events = make_events(300)
    produce_one_per_message(kafka_broker, events)

    first = DiesBeforeSecondCommit(
        ConsumerConfig(
            bootstrap_servers=kafka_broker.bootstrap,
            topic=TOPIC,
            group_id="test-restart",
            dlq_topic=DLQ,
            batch_size=60,
            partitions=[0, 1, 2],
        )
    )
    with pytest.raises(Killed):
        first.run()
    written_uncommitted = first.results[1].inserted
    assert written_uncommitted > 0

    second = consumer_for(kafka_broker, group_id="test-restart", batch_size=60)
    stats = second.run(idle_timeout_s=2)

    assert PredictionLog.objects.count() == 300
    assert stored_ids() == {e["event_id"] for e in events}
    # Only the uncommitted batch was read again: the first batch's commit held.
    assert stats.duplicates == written_uncommitted


@pytest.mark.timeout(60)
def test_poison_messages_go_to_the_dlq_with_the_reason(kafka_broker: Any) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from inference.event_sinks import topics_ensure

    topics_ensure(bootstrap_servers=kafka_broker.bootstrap, topics=[TOPIC, DLQ], partitions=1)
    good = make_events(5)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    producer.send(TOPIC, value=orjson.dumps(good[0]))
    producer.send(TOPIC, value=b"\x00 this is not json")
    producer.send(TOPIC, value=orjson.dumps({"event_id": str(uuid.uuid4()), "model": "m"}))
    # An array (as the publisher sends): the bad event goes alone, the good ones are kept.
    producer.send(TOPIC, value=orjson.dumps([good[1], {**good[2], "created_at": "soon"}]))
    for event in good[3:]:
        producer.send(TOPIC, value=orjson.dumps(event))
    producer.flush(10)
    producer.close()

    stats = consumer_for(kafka_broker, partitions=[0]).run(idle_timeout_s=2)

    assert stored_ids() == {e["event_id"] for e in good if e is not good[2]}
    assert stats.dead_lettered == 3
    reader = KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    reader.assign([TopicPartition(DLQ, 0)])
    dead: list[Any] = []
    deadline = time.monotonic() + 15
    while len(dead) < 3 and time.monotonic() < deadline:
        for batch in reader.poll(timeout_ms=500).values():
            dead.extend(batch)
    reader.close()
    bodies = [orjson.loads(m.value) for m in dead]
    assert [b["kind"] for b in bodies] == ["not_json", "missing_fields", "invalid_field"]
    assert "not JSON" in bodies[0]["reason"]
    assert "request_id" in bodies[1]["reason"]
    assert "ISO 8601" in bodies[2]["reason"]
    assert [(b["offset"], b["index"]) for b in bodies] == [(1, None), (2, None), (3, 1)]
    assert orjson.loads(bodies[2]["payload"])["event_id"] == good[2]["event_id"]
    assert dict(dead[1].headers)["reason"] == bodies[1]["reason"].encode()


@pytest.mark.timeout(60)
def test_consume_events_command_writes_the_rows(kafka_broker: Any, tmp_path: Path) -> None:
    events = make_events(50)
    publisher = kafka_publisher(kafka_broker, tmp_path)
    publish_all(publisher, events)
    publisher.stop()

    call_command(
        "consume_events",
        "--bootstrap-servers",
        kafka_broker.bootstrap,
        "--partitions",
        "0,1,2",
        "--idle-timeout",
        "2",
    )

    assert PredictionLog.objects.count() == 50


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_two_consumers_in_a_group_share_the_partitions(
    kafka_broker: Any, tmp_path: Path, postgres_db: None
) -> None:
    # Two writers at once: PostgreSQL's job (SQLite's in-memory test database locks tables).
    events = make_events(600)
    publisher = kafka_publisher(kafka_broker, tmp_path)
    publish_all(publisher, events)
    publisher.stop()
    consumers = [
        consumer_for(kafka_broker, group_id="test-group", partitions=None, batch_size=50)
        for _ in range(2)
    ]
    # tansu's first join can take ~20 s: wait for the rows, then stop both members.
    threads = [threading.Thread(target=c.run) for c in consumers]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 100
    try:
        while time.monotonic() < deadline:
            if PredictionLog.objects.count() == 600 and all(c.stats.assigned for c in consumers):
                break
            time.sleep(0.5)
    finally:
        for consumer in consumers:
            consumer.stop()
        for thread in threads:
            thread.join(30)

    assert PredictionLog.objects.count() == 600
    first, second = (c.stats.assigned for c in consumers)
    assert first, (first, second)
    assert second, (first, second)
    assert not first & second
    assert first | second == {0, 1, 2}
    assert sum(c.stats.inserted for c in consumers) == 600


@pytest.mark.timeout(60)
def test_consumer_lag_is_exported_and_falls_to_zero(kafka_broker: Any, tmp_path: Path) -> None:
    from monitoring.services.event_consumer import CONSUMER_LAG

    def lag() -> float:
        return sum(
            CONSUMER_LAG.labels(topic=TOPIC, partition=str(p))._value.get() for p in range(3)
        )

    produce_one_per_message(kafka_broker, make_events(300))

    consumer_for(kafka_broker, group_id="test-lag", batch_size=50).run(max_batches=2)
    # After one batch of 50: the rest is behind (for the partitions fetched from so far).
    assert 0 < lag() <= 250

    consumer_for(kafka_broker, group_id="test-lag", batch_size=50).run(idle_timeout_s=2)
    assert lag() == 0
    assert PredictionLog.objects.count() == 300


@pytest.mark.timeout(90)
def test_consume_events_process_stops_cleanly_on_sigterm(
    kafka_broker: Any, tmp_path: Path, postgres_db: None
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from django.conf import settings
    from django.db import connection

    publisher = kafka_publisher(kafka_broker, tmp_path)
    publish_all(publisher, make_events(100))
    publisher.stop()
    from urllib.parse import urlsplit, urlunsplit

    # The process writes where this test reads: the same server, the test database.
    url = urlsplit(os.environ["DATABASE_URL"])
    test_db_url = urlunsplit(url._replace(path=f"/{connection.settings_dict['NAME']}"))
    env = {
        **os.environ,
        "DATABASE_URL": test_db_url,
        "DJANGO_SETTINGS_MODULE": "phoenix.settings.test",
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "manage.py", "consume_events"),
            *("--bootstrap-servers", kafka_broker.bootstrap, "--partitions", "0,1,2"),
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 40
        while PredictionLog.objects.count() < 100 and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, output.decode()
    assert "100 inserted" in output.decode()
    assert PredictionLog.objects.count() == 100


@pytest.mark.timeout(60)
def test_an_event_the_database_refuses_goes_to_the_dlq_and_the_rest_is_written(
    kafka_broker: Any, postgres_db: None
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    events = make_events(6)
    events[2]["features"] = {"note": "nul \u0000 inside"}  # PostgreSQL jsonb refuses U+0000
    produce_one_per_message(kafka_broker, events)

    stats = consumer_for(kafka_broker).run(idle_timeout_s=2)

    assert stats.inserted == 5
    assert stats.dead_lettered == 1
    assert stored_ids() == {e["event_id"] for e in events} - {events[2]["event_id"]}
    reader = KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest", group_id=None
    )
    reader.assign([TopicPartition(DLQ, p) for p in range(3)])
    dead: list[Any] = []
    deadline = time.monotonic() + 15
    while not dead and time.monotonic() < deadline:
        for batch in reader.poll(timeout_ms=500).values():
            dead.extend(batch)
    reader.close()
    body = orjson.loads(dead[0].value)
    assert body["kind"] == "rejected"
    assert orjson.loads(body["payload"])["event_id"] == events[2]["event_id"]


@pytest.mark.timeout(60)
def test_feedback_through_kafka_is_pending_until_consumed_and_unknown_ids_are_404(
    kafka_broker: Any, tmp_path: Path, settings: Any
) -> None:
    from django.test import Client

    import inference.events as events_module
    from inference.api_keys import api_key_create
    from inference.auth import api_key_cache_clear
    from inference.session_cache import session_cache
    from monitoring.models import PendingFeedback
    from tests.inference_support import onnx_classifier, register

    settings.PHOENIX_EVENT_BACKEND = "kafka"
    session_cache.clear()
    api_key_cache_clear()
    register("credit", onnx_classifier(tmp_path / "credit.onnx"))
    api_key, key = api_key_create(name="feedback", all_models=True)
    publisher = kafka_publisher(kafka_broker, tmp_path)
    previous = events_module.set_publisher(publisher)
    try:
        predicted = Client().post(
            "/api/v1/models/credit/predict",
            {"features": {"x1": 0.5, "x2": -1.0, "x3": 2.0}},
            content_type="application/json",
            headers={"X-API-Key": key},
        )
        request_id = predicted.json()["request_id"]

        def feedback(rid: str) -> Any:
            # The key that made the prediction: its id travels in the event, and the
            # pending feedback is checked against the row when the consumer writes it.
            return Client().post(
                f"/api/v1/predictions/{rid}/feedback",
                {"actual": 1},
                "application/json",
                headers={"X-API-Key": key},
            )

        early = feedback(request_id)  # published, not consumed: no row yet
        never_issued = feedback(uuid.uuid4().hex)
        forged = feedback(request_id[:33] + ("0" * 16 if request_id[33:] != "0" * 16 else "1" * 16))
        publisher.flush()
        stats = consumer_for(kafka_broker).run(idle_timeout_s=2)
    finally:
        publisher.stop()
        events_module.set_publisher(previous)
        session_cache.clear()

    assert early.status_code == 202
    assert (never_issued.status_code, forged.status_code) == (404, 404)
    assert stats.inserted == 1
    row = PredictionLog.objects.get(request_id=request_id)
    assert (row.actual, row.api_key_id) == (1, api_key.pk)
    assert not PendingFeedback.objects.exists()


@pytest.mark.timeout(60)
def test_a_batch_over_the_message_limit_is_split_and_an_oversize_event_dropped(
    kafka_broker: Any, tmp_path: Path
) -> None:
    from inference.event_schema import MAX_MESSAGE_BYTES
    from inference.event_sinks import EVENTS_DROPPED

    events = make_events(200)
    for event in events:
        event["model"] = "wide"  # one (topic, model) group, ~2 MB: several messages
        event["features"] = {f"f{i}": float(i) for i in range(500)}
    oversize = make_events(1)[0]
    oversize["model"] = "wide"
    oversize["features"] = {"blob": "x" * (MAX_MESSAGE_BYTES + 1)}
    dropped_before = EVENTS_DROPPED.labels(reason="too_large")._value.get()
    publisher = kafka_publisher(kafka_broker, tmp_path, batch_size=500, buffer_size=1000)

    publisher.publish([(TOPIC, e) for e in [*events[:100], oversize, *events[100:]]])
    publisher.stop()
    stats = consumer_for(kafka_broker).run(idle_timeout_s=2)

    assert stored_ids() == {e["event_id"] for e in events}
    assert EVENTS_DROPPED.labels(reason="too_large")._value.get() == dropped_before + 1
    assert stats.dead_lettered == 0
    assert len(stats.partitions) == 1  # one model key: one partition, order kept
