"""Drift reports, beat schedule, locking, alerts and the retraining loop, on the demo model."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.utils import timezone
from prometheus_client import REGISTRY

from models_registry.models import ModelAlias, ModelVersion
from monitoring.models import Alert, DriftReport, PredictionLog, RetrainingJob
from phoenix.demo import credit_risk as demo

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]

RECIPE = "demo.credit_risk"


@pytest.fixture(scope="module")
def demo_artifacts() -> dict[str, Any]:
    """A real champion trained on demo customers, its ONNX bytes and reference CSV."""
    X, y, names = demo.generate_customers(n=3000, seed=demo.DEFAULT_SEED)
    model_bytes = demo.to_onnx_bytes(demo.train_champion(X, y), names)
    return {"model": model_bytes, "reference": demo.reference_csv(X[:2000], names)}


def _register(artifacts: dict[str, Any], *, recipe: str | None = RECIPE) -> ModelVersion:
    from models_registry.services import model_version_register

    return model_version_register(
        model_name=demo.MODEL_NAME,
        file=io.BytesIO(artifacts["model"]),
        filename="champion.onnx",
        stage="production",
        alias="champion",
        reference=io.BytesIO(artifacts["reference"]),
        reference_filename="reference.csv",
        retraining_recipe=recipe or "",
    )


@pytest.fixture
def production(demo_artifacts: dict[str, Any]) -> ModelVersion:
    return _register(demo_artifacts)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def _log(
    version: ModelVersion,
    *,
    n: int,
    seed: int,
    shift: dict[str, float] | None = None,
    age: timedelta = timedelta(minutes=5),
    labelled: bool = True,
) -> None:
    from inference.prediction.table_scoring import table_predict

    X, y, names = demo.generate_customers(n=n, seed=seed, shift=shift)
    at = timezone.now() - age
    # What the model answered, as the event log holds it (prediction drift reads it).
    with version.file.open("rb") as handle:
        scored = table_predict(model_bytes=handle.read(), feature_names=names, table=X)
    PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name=version.model.name,
            version=version.version,
            routed_by="single",
            features=dict(zip(names, map(float, row), strict=True)),
            prediction=prediction,
            confidence=confidence,
            latency_ms=1.0,
            created_at=at,
            actual=int(label) if labelled else None,
            actual_at=at if labelled else None,
        )
        for row, label, prediction, confidence in zip(
            X, y, scored.predictions, scored.confidence or [None] * n, strict=True
        )
    )


# --- reports ---------------------------------------------------------------------


def test_report_of_unshifted_traffic_is_ok_with_every_feature(production: ModelVersion) -> None:
    from monitoring.services.drift_reports import drift_report_compute

    _log(production, n=600, seed=101)

    report = drift_report_compute(version=production, window=timedelta(hours=1))

    assert report.status == "ok"
    assert report.rows == 600
    assert report.reference_rows == 2000
    assert report.correction == "bh"
    assert report.alpha == 0.05
    assert set(report.features) == set(demo.FEATURE_NAMES)
    income = report.features["income"]
    assert income["test"] == "ks"
    assert set(income) >= {"statistic", "p_value", "p_adjusted", "psi", "wasserstein", "drift"}
    assert not any(f["drift"] for f in report.features.values())


def test_report_of_shifted_traffic_flags_the_shifted_feature(production: ModelVersion) -> None:
    from monitoring.services.drift_reports import drift_report_compute

    _log(production, n=600, seed=102, shift={"utilisation": 1.0})

    report = drift_report_compute(version=production, window=timedelta(hours=1))

    assert report.status == "drift"
    assert report.features["utilisation"]["drift"]
    assert report.features["utilisation"]["p_adjusted"] < 0.05
    assert (
        REGISTRY.get_sample_value(
            "phoenix_drift_detected", {"model": "credit-risk", "version": production.version}
        )
        == 1.0
    )
    assert REGISTRY.get_sample_value(
        "phoenix_drift_pvalue",
        {"model": "credit-risk", "version": production.version, "feature": "utilisation"},
    ) == pytest.approx(report.features["utilisation"]["p_adjusted"])


def test_too_few_rows_gives_insufficient_data_not_a_verdict(production: ModelVersion) -> None:
    from monitoring.services.drift_reports import drift_report_compute

    _log(production, n=150, seed=103, shift={"income": 3.0})
    # Rows outside the window do not count.
    _log(production, n=300, seed=104, shift={"income": 3.0}, age=timedelta(hours=3))

    report = drift_report_compute(version=production, window=timedelta(hours=1))

    assert report.status == "insufficient_data"
    assert report.rows == 150
    assert report.features == {}


def test_version_without_reference_data_gives_insufficient_data(
    demo_artifacts: dict[str, Any],
) -> None:
    from models_registry.services import model_version_register
    from monitoring.services.drift_reports import drift_report_compute

    version = model_version_register(
        model_name="no-reference",
        file=io.BytesIO(demo_artifacts["model"]),
        stage="production",
    )

    report = drift_report_compute(version=version, window=timedelta(hours=1))

    assert report.status == "insufficient_data"
    assert report.reference_rows == 0


# --- beat and locking ------------------------------------------------------------


def test_beat_schedule_exists_after_migrate() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="monitoring.tasks.check_drift")

    assert task.enabled
    assert task.interval is not None
    assert (task.interval.every, task.interval.period) == (5, "minutes")
    assert task.expire_seconds is not None
    assert task.expire_seconds < 5 * 60


def test_lock_held_by_another_check_prevents_a_second_run(production: ModelVersion) -> None:
    from monitoring.services.drift_reports import drift_lock
    from monitoring.tasks import check_drift_version

    _log(production, n=300, seed=105)

    with drift_lock(production.id) as first:
        assert first
        outcome = check_drift_version(production.id)
        assert outcome == {"status": "locked", "report_id": None}
        assert DriftReport.objects.count() == 0

    # Released: the next check runs.
    assert check_drift_version(production.id)["status"] == "ok"
    assert DriftReport.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_lock_lets_exactly_one_of_eight_concurrent_holders_in() -> None:
    from django.db import connection

    from monitoring.services.drift_reports import drift_lock

    barrier = threading.Barrier(8)
    results: list[bool] = []
    hold = threading.Event()

    def contend() -> None:
        try:
            barrier.wait()
            with drift_lock(424242) as acquired:
                results.append(acquired)
                if acquired:
                    hold.wait(timeout=5)
        finally:
            connection.close()  # each thread has its own database connection

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    while len(results) < 8:
        threading.Event().wait(0.01)
    hold.set()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 7 + [True]


_LOCK_SCRIPT = """
import os, sys
import django
django.setup()
from django.core.management import call_command
if os.environ.get("MIGRATE"):
    call_command("migrate", verbosity=0)
from monitoring.services.drift_reports import drift_lock
with drift_lock(424242) as acquired:
    print("held" if acquired else "refused", flush=True)
    if acquired and sys.argv[1] == "hold":
        sys.stdin.readline()
print("released", flush=True)
"""


def _lock_process(database_url: str, mode: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOCK_SCRIPT, mode],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DJANGO_SETTINGS_MODULE": "phoenix.settings.base",
            "DATABASE_URL": database_url,
            "REDIS_URL": "",
            **env,
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _lock_holds_across_processes(database_url: str, **holder_env: str) -> None:
    holder = _lock_process(database_url, "hold", **holder_env)
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"

        contender = _lock_process(database_url, "try")
        out, _ = contender.communicate(timeout=60)
        assert out.split() == ["refused", "released"]

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # Released by its holder: the next process gets it.
    after = _lock_process(database_url, "try")
    out, _ = after.communicate(timeout=60)
    assert out.split() == ["held", "released"]


@pytest.mark.django_db(transaction=True)
def test_lock_holds_across_processes_on_sqlite(tmp_path: Path) -> None:
    # A database file of its own (the suite's SQLite test database lives in memory).
    _lock_holds_across_processes(f"sqlite:///{tmp_path / 'lock.sqlite3'}", MIGRATE="1")


def test_lock_holds_across_processes_on_postgresql(postgres_db: None) -> None:
    from tests.conftest import database_url_for_servers

    _lock_holds_across_processes(database_url_for_servers())


def test_row_lock_of_a_holder_that_died_is_taken_over_after_it_expires() -> None:
    from monitoring.models import CheckLock
    from monitoring.services.locks import _row_lock

    name = "monitoring.test-lock"
    first = _row_lock(name, ttl_s=60)
    assert first.__enter__()
    with _row_lock(name, ttl_s=60) as second:
        assert not second
    # The first holder hangs past its expiry: the next one takes the lock over.
    CheckLock.objects.filter(name=name).update(expires_at=timezone.now() - timedelta(seconds=1))
    third = _row_lock(name, ttl_s=60)
    assert third.__enter__()

    first.__exit__(None, None, None)  # a late release leaves the new holder's lock alone
    with _row_lock(name, ttl_s=60) as fourth:
        assert not fourth
    third.__exit__(None, None, None)

    assert not CheckLock.objects.filter(name=name).exists()


# --- the self-healing loop ---------------------------------------------------------


def test_drift_raises_alert_and_registers_a_staging_challenger(
    production: ModelVersion,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from monitoring.tasks import check_drift

    _log(production, n=800, seed=106, shift={"income": 1.0, "debt": 1.0})

    with django_capture_on_commit_callbacks(execute=True):
        assert check_drift() == 1

    report = DriftReport.objects.get()
    assert report.status == "drift"
    assert (
        f"event=drift_detected model=credit-risk version={production.version} report={report.id}"
        in caplog.text
    )
    drift_alert = Alert.objects.get(kind="drift")
    assert drift_alert.model_version == production
    assert "income" in drift_alert.message
    job = RetrainingJob.objects.get()
    assert job.drift_report == report
    assert job.status == "succeeded", job.error
    challenger = job.new_version
    assert challenger is not None
    assert challenger.stage == "staging"
    assert ModelAlias.objects.get(model=production.model, alias="challenger").version == challenger
    assert challenger.reference_data
    assert challenger.metrics["roc_auc"] > 0.6
    assert challenger.metrics["labelled_rows"] == 800
    assert challenger.tags["retrained_from"] == production.version
    production.refresh_from_db()
    assert production.stage == "production"
    assert ModelAlias.objects.get(model=production.model, alias="champion").version == production
    assert Alert.objects.filter(kind="retraining", model_version=challenger).exists()

    # Still drifting at the next check: no second alert, no retraining within the cooldown.
    with django_capture_on_commit_callbacks(execute=True):
        check_drift()
    assert DriftReport.objects.filter(status="drift").count() == 2
    assert Alert.objects.filter(kind="drift").count() == 1
    assert RetrainingJob.objects.count() == 1


def test_no_drift_does_nothing(
    production: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    from monitoring.tasks import check_drift

    _log(production, n=600, seed=107)

    with django_capture_on_commit_callbacks(execute=True):
        check_drift()

    assert DriftReport.objects.get().status == "ok"
    assert not Alert.objects.exists()
    assert not RetrainingJob.objects.exists()
    assert production.model.versions.count() == 1


def test_model_without_recipe_gets_a_manual_retraining_alert(
    demo_artifacts: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    from monitoring.tasks import check_drift

    version = _register(demo_artifacts, recipe=None)
    _log(version, n=500, seed=108, shift={"age": 1.5})

    with django_capture_on_commit_callbacks(execute=True):
        check_drift()

    job = RetrainingJob.objects.get()
    assert job.status == "manual"
    assert Alert.objects.filter(kind="retraining", message__contains="manual").exists()
    assert version.model.versions.count() == 1


def test_failing_recipe_marks_the_job_failed_with_an_alert(
    demo_artifacts: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    from monitoring.tasks import check_drift

    version = _register(demo_artifacts, recipe="demo.no_such_recipe")
    _log(version, n=500, seed=109, shift={"age": 1.5})

    with django_capture_on_commit_callbacks(execute=True):
        check_drift()

    job = RetrainingJob.objects.get()
    assert job.status == "failed"
    assert "no_such_recipe" in job.error
    assert Alert.objects.filter(kind="retraining", message__contains="failed").exists()


# --- webhook and Kafka -------------------------------------------------------------


class _Receiver:
    """A local HTTP server (127.0.0.1) that records requests and answers scripted codes."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver([503, 200])
    yield server
    server.close()


def test_alert_webhook_is_signed_and_retried_until_delivered(
    receiver: _Receiver,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery import current_app

    from monitoring.services.alerts import alert_create

    settings.PHOENIX_ALERT_WEBHOOK_URL = receiver.url
    settings.PHOENIX_ALERT_WEBHOOK_SECRET = "s3cret"
    # Test settings make eager tasks raise, Retry included; a worker would re-run the
    # task, and so does eager mode when it does not propagate.
    monkeypatch.setitem(current_app.conf, "task_eager_propagates", False)

    with django_capture_on_commit_callbacks(execute=True):
        alert = alert_create(kind="drift", message="Drift in m v1", payload={"model": "m"})

    # The first attempt got 503; the retry was delivered.
    assert len(receiver.requests) == 2
    headers, body = receiver.requests[-1]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Phoenix-Signature"] == f"sha256={expected}"
    document = json.loads(body)
    assert document["id"] == alert.id
    assert document["message"] == "Drift in m v1"
    alert.refresh_from_db()
    assert alert.webhook_delivered_at is not None


def test_webhook_refused_with_4xx_is_not_retried(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from monitoring.services.alerts import alert_create

    server = _Receiver([400])
    try:
        settings.PHOENIX_ALERT_WEBHOOK_URL = server.url
        with django_capture_on_commit_callbacks(execute=True):
            alert = alert_create(kind="drift", message="x")
        assert len(server.requests) == 1
        alert.refresh_from_db()
        assert alert.webhook_delivered_at is None
    finally:
        server.close()


def test_drift_event_goes_to_the_drift_events_topic(kafka_broker: Any, settings: Any) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from monitoring.services.alerts import drift_event_publish

    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap

    assert drift_event_publish({"type": "drift", "model": "credit-risk", "version": "1"})

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, consumer_timeout_ms=10_000)
    try:
        partition = TopicPartition("drift-events", 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        message = next(iter(consumer))
    finally:
        consumer.close()
    assert json.loads(message.value) == {"type": "drift", "model": "credit-risk", "version": "1"}
    assert message.key == b"credit-risk"


def test_drift_event_without_kafka_is_skipped(settings: Any) -> None:
    from monitoring.services.alerts import drift_event_publish

    settings.KAFKA_BOOTSTRAP_SERVERS = ""

    assert drift_event_publish({"type": "drift"}) is False


# --- command and API -----------------------------------------------------------------


def test_check_drift_command_prints_the_table(production: ModelVersion) -> None:
    _log(production, n=400, seed=110, shift={"utilisation": 1.0})
    out = io.StringIO()

    call_command("check_drift", "--model", "credit-risk", "--window", "1h", stdout=out)

    text = out.getvalue()
    assert "credit-risk v1: DRIFT" in text
    assert "utilisation" in text
    assert "YES" in text
    assert DriftReport.objects.get().status == "drift"


def test_check_drift_command_rejects_bad_arguments(production: ModelVersion) -> None:
    with pytest.raises(CommandError, match="duration"):
        call_command("check_drift", "--window", "soon")
    with pytest.raises(CommandError, match="No production version"):
        call_command("check_drift", "--model", "nope")


def test_drift_api_lists_the_latest_reports(
    production: ModelVersion, client: Any, django_user_model: Any
) -> None:
    from monitoring.services.drift_reports import drift_report_compute

    _log(production, n=300, seed=111, shift={"age": 2.0})
    drift_report_compute(version=production, window=timedelta(minutes=1))
    newest = drift_report_compute(version=production, window=timedelta(hours=1))
    client.force_login(django_user_model.objects.create_user("ops", password="x"))

    response = client.get("/api/v1/models/credit-risk/drift?limit=1")

    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "credit-risk"
    [report] = body["reports"]
    assert report["id"] == newest.id
    assert report["status"] == "drift"
    assert report["version"] == production.version
    assert "age" in report["drifted_features"]
    assert report["features"]["age"]["test"] == "ks"


def test_drift_api_errors_are_json(
    production: ModelVersion, client: Any, django_user_model: Any
) -> None:
    assert client.get("/api/v1/models/credit-risk/drift").status_code in (401, 403)
    client.force_login(django_user_model.objects.create_user("ops", password="x"))

    missing = client.get("/api/v1/models/nope/drift")
    bad = client.get("/api/v1/models/credit-risk/drift?limit=0")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_input"


def test_recipe_output_is_a_servable_model_with_a_reference_set() -> None:
    from phoenix.demo.recipes import retrain

    X, y, names = demo.generate_customers(n=600, seed=5, shift={"income": 1.0})
    order = list(reversed(names))

    result = retrain(X=X[:, ::-1], y=y, model_name="credit-risk", feature_names=order)

    assert result.reference.shape[1] == len(names)
    assert result.tags["holdout"] == "recent"
    # Served as ONNX with the caller's feature order.
    metrics = demo.evaluate_onnx(result.model_bytes, X[:, ::-1], y)
    assert metrics["roc_auc"] > 0.6
    assert np.isfinite(result.metrics["log_loss"])


def _register_other_model() -> None:
    from models_registry.services import model_version_register

    X, y, names = demo.generate_customers(n=300, seed=1)
    model_version_register(
        model_name="fraud", file=io.BytesIO(demo.to_onnx_bytes(demo.train_champion(X, y), names))
    )


def test_drift_api_accepts_api_keys_scoped_to_the_model(production: ModelVersion) -> None:
    from rest_framework.test import APIClient

    from inference.api_keys import api_key_create
    from inference.auth import api_key_cache_clear

    api_key_cache_clear()
    _register_other_model()
    allowed = api_key_create(name="ops", model_names=["credit-risk"])[1]
    other = api_key_create(name="other", model_names=["fraud"])[1]
    client = APIClient()

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {allowed}")
    ok = client.get("/api/v1/models/credit-risk/drift")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")
    refused = client.get("/api/v1/models/credit-risk/drift")

    assert ok.status_code == 200
    assert ok.json() == {"model": "credit-risk", "reports": []}
    assert refused.status_code == 403


def test_tasks_ack_late_and_retry_transient_errors_with_backoff() -> None:
    from django.db import OperationalError

    from monitoring.exceptions import WebhookDeliveryFailed
    from monitoring.tasks import check_drift_version, deliver_alert_webhook, retrain_model

    for task in (check_drift_version, deliver_alert_webhook, retrain_model):
        assert task.acks_late
        assert task.retry_backoff
        assert task.max_retries
    assert OperationalError in check_drift_version.autoretry_for
    assert WebhookDeliveryFailed in deliver_alert_webhook.autoretry_for


def test_insufficient_data_check_raises_nothing_and_left_production_is_gone(
    production: ModelVersion, django_capture_on_commit_callbacks: Any
) -> None:
    from models_registry.services import model_version_set_stage
    from monitoring.tasks import check_drift_version

    _log(production, n=20, seed=112, shift={"income": 3.0})

    with django_capture_on_commit_callbacks(execute=True):
        outcome = check_drift_version(production.id)

    assert outcome["status"] == "insufficient_data"
    assert not Alert.objects.exists()
    assert not RetrainingJob.objects.exists()

    model_version_set_stage(version=production, stage="archived")
    assert check_drift_version(production.id) == {"status": "gone", "report_id": None}
    assert DriftReport.objects.count() == 1


# --- guards on the loop (issue 16 item 3) ------------------------------------------


def _label_only(version: ModelVersion, keep: int) -> None:
    """Leave ground truth on the newest ``keep`` logged rows of ``version`` only."""
    rows = PredictionLog.objects.filter(model_name=version.model.name, version=version.version)
    kept = list(rows.order_by("-id").values_list("id", flat=True)[:keep])
    rows.exclude(id__in=kept).update(actual=None, actual_at=None)


@pytest.mark.parametrize(
    ("min_rows", "keep", "reason", "words"),
    [
        (200, 150, "too_few_labelled_rows", "150 labelled rows, fewer than the 200 needed"),
        # 30 of 800 rows: 3.75 %, under the 5 % coverage needed.
        (20, 30, "label_coverage_too_low", "30 of 800 rows labelled (3.8%), under the 5.0%"),
    ],
)
def test_drift_with_too_little_ground_truth_alerts_the_reason_and_retrains_nothing(
    production: ModelVersion,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
    min_rows: int,
    keep: int,
    reason: str,
    words: str,
) -> None:
    from monitoring.tasks import check_drift

    settings.PHOENIX_RETRAINING_MIN_LABELLED_ROWS = min_rows
    settings.PHOENIX_RETRAINING_MIN_LABEL_COVERAGE = 0.05
    _log(production, n=800, seed=106, shift={"income": 1.0, "debt": 1.0})
    _label_only(production, keep=keep)

    with django_capture_on_commit_callbacks(execute=True):
        check_drift()
        check_drift()  # still drifting, still too few: no second alert

    assert DriftReport.objects.filter(status="drift").count() == 2
    assert not RetrainingJob.objects.exists()
    assert production.model.versions.count() == 1
    alert = Alert.objects.get(kind="retraining")
    assert words in alert.message
    assert alert.payload["reason"] == reason
    assert (alert.payload["labelled_rows"], alert.payload["logged_rows"]) == (keep, 800)


def test_enough_labels_after_a_shortfall_retrains(
    production: ModelVersion, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    from monitoring.tasks import check_drift

    settings.PHOENIX_RETRAINING_MIN_LABELLED_ROWS = 200
    _log(production, n=800, seed=106, shift={"income": 1.0, "debt": 1.0})
    _label_only(production, keep=100)
    with django_capture_on_commit_callbacks(execute=True):
        check_drift()
    assert not RetrainingJob.objects.exists()

    _log(production, n=300, seed=109, shift={"income": 1.0, "debt": 1.0})  # 300 more labels
    with django_capture_on_commit_callbacks(execute=True):
        check_drift()

    job = RetrainingJob.objects.get()
    assert job.status == "succeeded", job.error
    assert job.new_version is not None
    assert job.new_version.metrics["labelled_rows"] == 400


def _flood(version: ModelVersion, *, n: int, api_key_id: int, labelled: int) -> None:
    """``n`` identical predictions from one key, ``labelled`` of them with ground truth."""
    X, _, names = demo.generate_customers(n=1, seed=3, shift={"income": 3.0})
    features = dict(zip(names, map(float, X[0]), strict=True))
    at = timezone.now() - timedelta(minutes=5)
    PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name=version.model.name,
            version=version.version,
            routed_by="single",
            features=features,
            prediction=0,
            latency_ms=1.0,
            created_at=at,
            api_key_id=api_key_id,
            actual=1 if i < labelled else None,
            actual_at=at if i < labelled else None,
        )
        for i in range(n)
    )


def test_a_window_of_identical_predictions_is_reported_as_duplicates_not_drift(
    production: ModelVersion,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from monitoring.tasks import check_drift

    # The attack: 2,000 identical predictions from one key, one of them labelled.
    _flood(production, n=2000, api_key_id=41, labelled=1)

    with django_capture_on_commit_callbacks(execute=True):
        check_drift()
        check_drift()

    reports = list(DriftReport.objects.order_by("id"))
    assert [r.status for r in reports] == ["duplicates", "duplicates"]
    assert reports[0].duplicate_share == pytest.approx(1999 / 2000)
    assert reports[0].duplicate_api_key_id == 41
    assert reports[0].features  # the statistics are kept for a look, with no verdict
    assert not RetrainingJob.objects.exists()
    assert production.model.versions.count() == 1
    alert = Alert.objects.get()  # one per episode
    assert alert.kind == "drift"
    assert "100% of the window's 2000 rows repeat other rows" in alert.message
    assert "API key id 41" in alert.message
    assert "event=drift_duplicates" in caplog.text
    assert "event=drift_detected" not in caplog.text
    out = io.StringIO()
    call_command("check_drift", "--model", demo.MODEL_NAME, stdout=out)
    assert "100% of the rows repeat other rows (most from API key id 41)" in out.getvalue()


def test_a_few_duplicates_under_the_threshold_still_get_a_verdict(
    production: ModelVersion, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    from monitoring.tasks import check_drift

    settings.PHOENIX_DRIFT_DUPLICATE_SHARE = 0.5
    _log(production, n=600, seed=107)
    _flood(production, n=200, api_key_id=41, labelled=0)  # 199 of 800 rows repeat

    with django_capture_on_commit_callbacks(execute=True):
        check_drift()

    report = DriftReport.objects.get()
    assert report.status in ("ok", "drift")
    assert report.duplicate_share == pytest.approx(199 / 800)
