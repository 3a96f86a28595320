"""Experiments against the real database: real predictions through the API, feedback,
the prediction log, and the routing the serving process follows."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone
from prometheus_client import start_http_server
from rest_framework.test import APIClient

from inference import api_keys
from inference import events as events_module
from inference.auth import api_key_cache_clear
from inference.events import EventPublisher, PublisherConfig
from inference.models import RoutingPolicy
from inference.routing import shadow_request_id
from inference.session_cache import session_cache
from models_registry.models import Alias, AuditEvent, ModelAlias, ModelVersion
from monitoring.models import Alert, AlertKind, Experiment, ExperimentStatus, PredictionLog
from monitoring.services import experiments as service
from monitoring.services import request_counts
from monitoring.services.prediction_log import prediction_log_write_events
from monitoring.tasks import evaluate_experiment, evaluate_experiments
from tests.conftest import free_port, service_unavailable
from tests.inference_support import FEATURES, onnx_classifier, register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("experiment-models")
    return {
        "a": onnx_classifier(folder / "a.onnx"),
        "b": onnx_classifier(folder / "b.onnx", flip=True),
    }


@pytest.fixture(autouse=True)
def publisher(tmp_path: Path) -> Iterator[EventPublisher]:
    """The embedded backend's publisher, writing PredictionLog rows (flushed on demand)."""
    session_cache.clear()
    api_key_cache_clear()
    config = PublisherConfig(
        backend="database",
        topic="inference-events",
        buffer_size=100_000,
        # Written only when the test flushes, on its own thread: an in-memory SQLite test
        # database refuses a second thread's insert while this one writes ("locked").
        batch_size=100_000,
        flush_interval_s=3600,
        journal_dir=tmp_path / "journal",
    )
    publisher = EventPublisher(config)
    previous = events_module.set_publisher(publisher)
    yield publisher
    publisher.stop()
    events_module.set_publisher(previous)
    session_cache.clear()
    api_key_cache_clear()


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    key = api_keys.api_key_create(name="t", all_models=True)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def arms(model_files: dict[str, Path]) -> tuple[ModelVersion, ModelVersion]:
    champion = register("credit", model_files["a"], alias="champion")
    challenger = register("credit", model_files["b"], stage="staging")
    return champion, challenger


def _row(i: int) -> dict[str, float]:
    return {"x1": (i % 7) / 3 - 1, "x2": (i % 5) / 2 - 1, "x3": (i % 3) / 2 - 0.5}


def traffic(
    api: APIClient, publisher: EventPublisher, n: int, *, truth: str, start: int = 0
) -> list[dict[str, Any]]:
    """``n`` single-row predictions through the API, then feedback on each. ``truth``:
    ``champion`` labels each with the champion's answer, ``challenger`` with the
    challenger's (the two models always disagree: one learned the flipped labels)."""
    bodies = []
    for i in range(start, start + n):
        response = api.post("/api/v1/models/credit/predict", {"features": _row(i)}, format="json")
        assert response.status_code == 200, response.content
        bodies.append(response.json())
    publisher.flush()
    for body in bodies:
        predicted = body["predictions"][0]
        served_by_challenger = body["routed_by"].endswith(":challenger")
        correct_is_served = (truth == "challenger") == served_by_challenger
        actual = predicted if correct_is_served else 1 - predicted
        response = api.post(
            f"/api/v1/predictions/{body['request_id']}/feedback", {"actual": actual}, format="json"
        )
        assert response.status_code == 200, response.content
    return bodies


def _routing(model: Any) -> tuple[str, float]:
    policy = RoutingPolicy.objects.get(model=model)
    return policy.strategy, policy.challenger_percent


def test_start_routes_by_the_mode_and_serving_follows_without_restart(
    api: APIClient, publisher: EventPublisher, arms: tuple[ModelVersion, ModelVersion]
) -> None:
    champion, challenger = arms
    before = api.post("/api/v1/models/credit/predict", {"features": _row(0)}, format="json")
    assert before.json()["routed_by"] == "single:champion"

    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="shadow", canary_steps=[]
    )
    service.experiment_start(experiment_id=experiment.pk)

    body = api.post("/api/v1/models/credit/predict", {"features": _row(1)}, format="json").json()
    assert body["routed_by"] == "shadow:champion"
    assert _routing(champion.model) == ("shadow", 0.0)
    assert (
        ModelAlias.objects.get(model=champion.model, alias=Alias.CHALLENGER).version == challenger
    )
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING
    assert experiment.previous_routing == {}


def test_shadow_rows_have_their_own_id_and_feedback_labels_both_arms(
    api: APIClient, publisher: EventPublisher, arms: tuple[ModelVersion, ModelVersion]
) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="shadow", canary_steps=[]
    )
    service.experiment_start(experiment_id=experiment.pk)

    body = api.post("/api/v1/models/credit/predict", {"features": _row(3)}, format="json").json()
    publisher.flush()
    feedback = api.post(
        f"/api/v1/predictions/{body['request_id']}/feedback", {"actual": 1}, format="json"
    )

    assert feedback.status_code == 200, feedback.content
    assert feedback.json()["rows"] == 1
    assert feedback.json()["changed"] == 2
    rows = {r.routed_by: r for r in PredictionLog.objects.all()}
    assert set(rows) == {"shadow:champion", "shadow"}
    assert rows["shadow:champion"].request_id == body["request_id"]
    assert rows["shadow"].request_id == shadow_request_id(body["request_id"])
    assert rows["shadow"].version == challenger.version
    assert rows["shadow"].actual == 1
    assert rows["shadow:champion"].actual == 1


def test_at_most_one_running_experiment_per_model(
    arms: tuple[ModelVersion, ModelVersion], model_files: dict[str, Path], tmp_path: Path
) -> None:
    champion, challenger = arms
    first = service.experiment_create(model=champion.model, challenger=challenger, mode="shadow")
    second = service.experiment_create(model=champion.model, challenger=challenger, mode="ab")
    service.experiment_start(experiment_id=first.pk)

    with pytest.raises(service.ExperimentConflict, match="running"):
        service.experiment_start(experiment_id=second.pk)
    # The database itself refuses it, whoever writes.
    with pytest.raises(IntegrityError), transaction.atomic():
        Experiment.objects.filter(pk=second.pk).update(status=ExperimentStatus.RUNNING)
    assert Experiment.objects.get(pk=second.pk).status == ExperimentStatus.DRAFT


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "blue-green"}, "Unknown mode"),
        ({"mode": "canary", "canary_steps": [50, 10]}, "increase"),
        ({"mode": "ab", "traffic_percent": 0}, "traffic_percent"),
        ({"mode": "ab", "guards": {"nonsense": 1}}, "Unknown guards"),
    ],
)
def test_bad_experiments_are_refused(
    arms: tuple[ModelVersion, ModelVersion], kwargs: dict[str, Any], message: str
) -> None:
    champion, challenger = arms
    with pytest.raises(service.InvalidInput, match=message):
        service.experiment_create(model=champion.model, challenger=challenger, **kwargs)


def test_better_challenger_goes_shadow_then_canary_steps_then_is_promoted(
    api: APIClient, publisher: EventPublisher, arms: tuple[ModelVersion, ModelVersion]
) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model,
        challenger=challenger,
        mode="shadow",
        canary_steps=[50, 100],
        step_interval_s=0,
        step_min_samples=5,
        min_samples=40,
        auto_promote=True,
    )
    service.experiment_start(experiment_id=experiment.pk)

    traffic(api, publisher, 60, truth="challenger")
    shadow_look = service.experiment_evaluate(experiment_id=experiment.pk)

    assert shadow_look.decision.action == "advance"
    stats = shadow_look.experiment.statistics
    assert stats["primary"]["test"] == "mcnemar_sequential"
    assert stats["primary"]["verdict"] == "better"
    assert stats["primary"]["samples"]["paired"] == 60
    assert stats["primary"]["effect"] == pytest.approx(1.0)
    assert _routing(champion.model) == ("canary", 50.0)

    bodies = traffic(api, publisher, 40, truth="challenger", start=60)
    assert {b["routed_by"] for b in bodies} == {"canary:champion", "canary:challenger"}
    step_look = service.experiment_evaluate(experiment_id=experiment.pk)
    assert step_look.decision.action == "advance"
    assert _routing(champion.model) == ("canary", 100.0)

    traffic(api, publisher, 10, truth="challenger", start=100)
    final = service.experiment_evaluate(experiment_id=experiment.pk)

    assert final.decision.action == "promote"
    experiment.refresh_from_db()
    challenger.refresh_from_db()
    champion.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    assert experiment.decision == "promote"
    assert challenger.stage == "production"
    assert ModelAlias.objects.get(model=champion.model, alias=Alias.CHAMPION).version == challenger
    assert champion.stage == "archived"
    assert _routing(champion.model) == ("single", 0.0)
    body = api.post("/api/v1/models/credit/predict", {"features": _row(0)}, format="json").json()
    assert body["version"] == challenger.version
    assert body["routed_by"] == "single:champion"
    trail = AuditEvent.objects.filter(action="experiment", details__experiment=experiment.pk)
    assert {e.to_value for e in trail} >= {"running", "promoted"}


def test_worse_challenger_in_shadow_is_rolled_back_with_an_alert(
    api: APIClient, publisher: EventPublisher, arms: tuple[ModelVersion, ModelVersion]
) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="shadow", min_samples=40
    )
    service.experiment_start(experiment_id=experiment.pk)

    traffic(api, publisher, 60, truth="champion")
    look = service.experiment_evaluate(experiment_id=experiment.pk)

    assert look.decision.action == "rollback"
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.ROLLED_BACK
    assert "worse" in experiment.reason
    assert experiment.statistics["primary"]["verdict"] == "worse"
    alert = Alert.objects.get(kind=AlertKind.ROLLBACK)
    assert alert.model_version == challenger
    assert alert.payload["experiment"] == experiment.pk
    assert _routing(champion.model) == ("single", 0.0)
    # The champion kept serving throughout and still does.
    body = api.post("/api/v1/models/credit/predict", {"features": _row(1)}, format="json").json()
    assert body["version"] == champion.version


def _events(
    *, request_id: str, version: str, routed_by: str, latency_ms: float, at: datetime
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "request_id": request_id,
        "row_index": 0,
        "model": "credit",
        "version": version,
        "routed_by": routed_by,
        "features": dict.fromkeys(FEATURES, 0.0),
        "prediction": 1,
        "probabilities": [0.2, 0.8],
        "confidence": 0.8,
        "latency_ms": latency_ms,
        "created_at": at.isoformat(),
    }


def test_guard_task_rolls_back_a_shadow_challenger_that_fails_to_answer(
    arms: tuple[ModelVersion, ModelVersion],
) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="shadow", primary_metric="guards_only"
    )
    service.experiment_start(experiment_id=experiment.pk)
    at = datetime.now(UTC) + timedelta(seconds=1)
    rows = []
    for i in range(200):
        rid = uuid.uuid4().hex
        rows.append(
            _events(
                request_id=rid,
                version=champion.version,
                routed_by="shadow:champion",
                latency_ms=1.0,
                at=at,
            )
        )
        if i % 3 == 0:  # two of three shadow scorings failed: no row
            rows.append(
                _events(
                    request_id=shadow_request_id(rid),
                    version=challenger.version,
                    routed_by="shadow",
                    latency_ms=1.0,
                    at=at,
                )
            )
    prediction_log_write_events(events=rows)

    early = service.experiment_evaluate(experiment_id=experiment.pk, now=at)
    assert early.decision.action == "continue"  # within the grace period: not missing yet
    late = service.experiment_evaluate(
        experiment_id=experiment.pk, now=at + timedelta(seconds=service.SHADOW_GRACE_S + 1)
    )

    assert late.decision.action == "rollback"
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.ROLLED_BACK
    assert experiment.reason.startswith("error_rate:")
    guard = next(g for g in experiment.statistics["guards"] if g["name"] == "error_rate")
    assert guard["state"] == "broken"
    assert Alert.objects.filter(kind=AlertKind.ROLLBACK).count() == 1


def test_beat_task_rolls_back_a_slow_canary_challenger(
    arms: tuple[ModelVersion, ModelVersion],
) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model,
        challenger=challenger,
        mode="canary",
        canary_steps=[25, 100],
        guards={"latency_p99_ceiling_ms": 20.0},
        step_interval_s=3600,
    )
    service.experiment_start(experiment_id=experiment.pk)
    assert _routing(champion.model) == ("canary", 25.0)
    at = datetime.now(UTC) + timedelta(seconds=1)
    rows = [
        _events(
            request_id=uuid.uuid4().hex,
            version=v,
            routed_by=f"canary:{arm}",
            latency_ms=latency,
            at=at,
        )
        for v, arm, latency, n in (
            (champion.version, "champion", 1.5, 300),
            (challenger.version, "challenger", 45.0, 120),
        )
        for _ in range(n)
    ]
    prediction_log_write_events(events=rows)

    queued = evaluate_experiments()  # beat entry; the eager worker runs the look at once

    assert queued == 1
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.ROLLED_BACK
    assert experiment.reason.startswith("latency:")
    assert "ceiling" in experiment.reason
    assert _routing(champion.model) == ("single", 0.0)
    assert evaluate_experiment(experiment.pk) == "continue"  # ended: nothing more to do


def test_stop_restores_the_routing_in_place_before_the_start(
    arms: tuple[ModelVersion, ModelVersion],
) -> None:
    champion, challenger = arms
    RoutingPolicy.objects.create(model=champion.model, strategy="single", seed="kept")
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="ab", traffic_percent=20, seed="exp"
    )
    service.experiment_start(experiment_id=experiment.pk)
    assert _routing(champion.model) == ("ab", 20.0)

    service.experiment_stop(experiment_id=experiment.pk, reason="enough")

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED
    assert experiment.reason == "enough"
    assert _routing(champion.model) == ("single", 0.0)
    assert RoutingPolicy.objects.get(model=champion.model).seed == "kept"
    with pytest.raises(service.ExperimentConflict):
        service.experiment_stop(experiment_id=experiment.pk)


def test_promote_by_hand_is_audited_with_who_and_why(
    arms: tuple[ModelVersion, ModelVersion], django_user_model: Any
) -> None:
    champion, challenger = arms
    manager = django_user_model.objects.create_user("rm", password="pw")
    experiment = service.experiment_create(model=champion.model, challenger=challenger, mode="ab")
    service.experiment_start(experiment_id=experiment.pk, actor=manager)

    service.experiment_promote(experiment_id=experiment.pk, actor=manager, reason="looks good")

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    assert experiment.decided_by == manager
    event = AuditEvent.objects.get(action="experiment", to_value="promoted")
    assert event.actor_name == "rm"
    assert event.details["reason"] == "looks good"
    stage = AuditEvent.objects.get(action="stage", to_value="production")
    assert stage.actor_name == "rm"
    assert stage.version == challenger.version


def test_run_experiment_command_starts_evaluates_and_reports(
    arms: tuple[ModelVersion, ModelVersion],
) -> None:
    champion, challenger = arms
    out = io.StringIO()
    call_command(
        "run_experiment", "start", "credit", "--challenger", challenger.version, "--mode",
        "canary", "--steps", "10,100", stdout=out,
    )  # fmt: skip
    started = json.loads(out.getvalue())
    assert started["status"] == "running"
    assert _routing(champion.model) == ("canary", 10.0)

    out = io.StringIO()
    call_command("run_experiment", "evaluate", str(started["id"]), stdout=out)
    looked = json.loads(out.getvalue())
    assert looked["statistics"]["primary"]["verdict"] == "insufficient_data"
    assert looked["statistics"]["canary"]["plan"] == [10.0, 100.0]

    out = io.StringIO()
    call_command("run_experiment", "stop", str(started["id"]), stdout=out)
    assert json.loads(out.getvalue())["status"] == "stopped"
    out = io.StringIO()
    call_command("run_experiment", "status", stdout=out)
    assert json.loads(out.getvalue()) == []


def test_evaluate_of_a_running_experiment_stores_arms_and_time_to_next_step(
    arms: tuple[ModelVersion, ModelVersion],
) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="canary", step_interval_s=600
    )
    service.experiment_start(experiment_id=experiment.pk)

    look = service.experiment_evaluate(
        experiment_id=experiment.pk, now=timezone.now() + timedelta(seconds=100)
    )

    stats = look.experiment.statistics
    assert look.decision.action == "continue"
    assert stats["arms"]["champion"]["requests"] == 0
    assert 490 < stats["canary"]["next_step_in_s"] <= 500
    assert {g["name"] for g in stats["guards"]} == {"error_rate", "latency", "prediction_shift"}


def test_promotion_under_concurrent_load_drops_no_request(
    publisher: EventPublisher,
    arms: tuple[ModelVersion, ModelVersion],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from django.db import connection

    from tests.inference_support import prediction_events_record

    # The events stay in memory: the switch is under test, not the log writer (whose
    # concurrent inserts an in-memory SQLite test database would refuse as "locked").
    prediction_events_record(monkeypatch)
    champion, challenger = arms
    key = api_keys.api_key_create(name="load", all_models=True)[1]
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="canary", canary_steps=[10, 100]
    )
    service.experiment_start(experiment_id=experiment.pk)
    stop = threading.Event()
    promoted = threading.Event()
    results: list[tuple[bool, int, str]] = []  # (started after the switch, status, version)

    def client_loop() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        try:
            i = 0
            while not stop.is_set():
                after = promoted.is_set()
                response = client.post(
                    "/api/v1/models/credit/predict", {"features": _row(i)}, format="json"
                )
                version = response.json().get("version", "") if response.status_code == 200 else ""
                results.append((after, response.status_code, version))
                i += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(results) < 200:
        time.sleep(0.01)
    service.experiment_promote(experiment_id=experiment.pk, reason="load test")
    promoted.set()  # the commit's broadcast has refreshed this process's plan by now
    started = len(results)
    while len(results) < started + 200:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    statuses = {status for _, status, _ in results}
    assert statuses == {200}, statuses
    before = {version for after, _, version in results if not after}
    after = {version for after, _, version in results if after}
    assert before >= {champion.version}
    assert after == {challenger.version}


@pytest.mark.kafka
def test_experiment_events_go_to_the_experiments_topic(
    arms: tuple[ModelVersion, ModelVersion], kafka_broker: Any, settings: Any
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap
    champion, challenger = arms
    experiment = service.experiment_create(model=champion.model, challenger=challenger, mode="ab")
    service.experiment_start(experiment_id=experiment.pk)
    service.experiment_rollback(experiment_id=experiment.pk, reason="p99 too high")

    consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, consumer_timeout_ms=10_000)
    try:
        partition = TopicPartition("experiment-events", 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records = [json.loads(m.value) for _, m in zip(range(2), consumer, strict=False)]
    finally:
        consumer.close()
    assert [(r["action"], r["status"]) for r in records] == [
        ("start", "running"),
        ("rollback", "rolled_back"),
    ]
    assert records[1]["reason"] == "p99 too high"
    assert records[1]["model"] == "credit"
    assert records[1]["challenger"] == challenger.version


def test_each_look_and_action_is_pushed_to_the_dashboards(
    arms: tuple[ModelVersion, ModelVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitoring.services import dashboard_push

    pushed: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        dashboard_push, "dashboard_event_push", lambda kind, p: pushed.append((kind, p))
    )
    champion, challenger = arms
    experiment = service.experiment_create(
        model=champion.model, challenger=challenger, mode="canary", canary_steps=[20, 100]
    )
    service.experiment_start(experiment_id=experiment.pk)
    service.experiment_evaluate(experiment_id=experiment.pk)

    kinds = [kind for kind, _ in pushed]
    assert kinds == ["experiment", "experiment_look"]
    start, look = pushed[0][1], pushed[1][1]
    assert (start["action"], start["model"], start["status"]) == ("start", "credit", "running")
    assert look["experiment"] == experiment.pk
    assert look["verdict"] == "insufficient_data"
    assert set(look["guards"].values()) == {"insufficient_data"}
    assert set(look["guards"]) == {"error_rate", "latency", "prediction_shift"}
    assert look["arms"] == {"champion": 0, "challenger": 0}


def test_early_feedback_for_a_shadowed_request_labels_both_arms_when_rows_arrive(
    arms: tuple[ModelVersion, ModelVersion],
) -> None:
    from inference.request_ids import request_id_new
    from monitoring.services.feedback import prediction_feedback_record

    champion, challenger = arms
    rid = request_id_new()
    pending = prediction_feedback_record(request_id=rid, actual=0, accept_pending=True)
    at = datetime.now(UTC)

    result = prediction_log_write_events(
        events=[
            _events(request_id=rid, version=champion.version, routed_by="shadow:champion",
                    latency_ms=1.0, at=at),
            _events(request_id=shadow_request_id(rid), version=challenger.version,
                    routed_by="shadow", latency_ms=1.0, at=at),
        ]
    )  # fmt: skip

    assert pending.status == "pending"
    assert result.feedback_applied == 2
    assert sorted(PredictionLog.objects.values_list("routed_by", "actual")) == [
        ("shadow", 0),
        ("shadow:champion", 0),
    ]


def _failing_model(path: Path) -> Path:
    """Takes x1..x3 like the champion, but every run fails inside ONNX Runtime (a Gather
    past the end of the row): a challenger that cannot answer the contract."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["X", "idx"], ["label"], axis=1)],
        "broken",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("label", TensorProto.FLOAT, [None, 1])],
        initializer=[helper.make_tensor("idx", TensorProto.INT64, [1], [7])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = model.metadata_props.add()
    meta.key, meta.value = "feature_names", ",".join(FEATURES)
    path.write_bytes(model.SerializeToString())
    return path


def test_guard_rolls_back_a_canary_challenger_that_fails_its_requests(
    api: APIClient, publisher: EventPublisher, model_files: dict[str, Path], tmp_path: Path
) -> None:
    champion = register("credit", model_files["a"], alias="champion")
    broken = register("credit", _failing_model(tmp_path / "broken.onnx"), stage="staging")
    experiment = service.experiment_create(
        model=champion.model, challenger=broken, mode="canary", canary_steps=[50, 100]
    )
    service.experiment_start(experiment_id=experiment.pk)
    statuses = []
    for i in range(240):
        response = api.post("/api/v1/models/credit/predict", {"features": _row(i)}, format="json")
        statuses.append((response.status_code, response.json().get("routed_by")))
    publisher.flush()

    look = service.experiment_evaluate(experiment_id=experiment.pk)

    failed = [s for s, _ in statuses if s != 200]
    assert len(failed) > 50  # the challenger's share (it cannot even be warmed up: 503)
    assert {route for s, route in statuses if s == 200} == {"canary:champion"}
    assert look.decision.action == "rollback"
    experiment.refresh_from_db()
    assert experiment.reason.startswith("error_rate:")
    assert experiment.statistics["arms"]["challenger"]["errors"] > 50
    assert experiment.statistics["arms"]["champion"]["errors"] == 0
    after = [
        api.post("/api/v1/models/credit/predict", {"features": _row(i)}, format="json")
        for i in range(20)
    ]
    assert {r.status_code for r in after} == {200}  # champion only from now on


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping this test process's metrics every second; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        service_unavailable("prometheus not installed (apt-get install -y prometheus)")
        raise AssertionError  # unreachable: service_unavailable skips or fails
    metrics_port, port = free_port(), free_port()
    exporter, _ = start_http_server(metrics_port, addr="127.0.0.1")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: test\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _http_ok(f"{url}/-/ready"), timeout_s=60, what="Prometheus ready")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        exporter.shutdown()


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _scraped_total(url: str, route: str) -> float:
    """The raw counter of ``route``'s requests to ``credit`` in Prometheus's last scrape."""
    query = urllib.parse.urlencode(
        {"query": f'sum(phoenix_inference_requests_total{{model="credit",route="{route}"}})'}
    )
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


_counters_here = request_counts.request_counters_local


def _local_total(route: str) -> float:
    counts = _counters_here("credit")
    return sum(total for key, (total, _) in counts.items() if key.endswith(f"|{route}"))


def test_error_guard_counts_failed_requests_from_prometheus(
    api: APIClient,
    publisher: EventPublisher,
    model_files: dict[str, Path],
    tmp_path: Path,
    prometheus: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As in compose and Kubernetes: the guard's process shares no metrics files with the
    serving ones, and reads every process's counters from Prometheus instead."""
    settings.PHOENIX_PROMETHEUS_URL = prometheus
    champion = register("credit", model_files["a"], alias="champion")
    broken = register("credit", _failing_model(tmp_path / "broken.onnx"), stage="staging")
    experiment = service.experiment_create(
        model=champion.model, challenger=broken, mode="canary", canary_steps=[50, 100]
    )
    service.experiment_start(experiment_id=experiment.pk)

    def predict(n: int, start: int) -> list[int]:
        return [
            api.post(
                "/api/v1/models/credit/predict", {"features": _row(i)}, format="json"
            ).status_code
            for i in range(start, start + n)
        ]

    # A first round, scraped, so both arms' series exist before the counted round (an
    # increase() cannot see what a series held at its first scrape).
    def scraped() -> bool:
        return all(
            _scraped_total(prometheus, route) == _local_total(route)
            for route in ("canary:champion", "canary:challenger")
        )

    predict(40, 0)
    wait_until(scraped, timeout_s=60, what="Prometheus to scrape both arms")
    statuses = predict(240, 40)
    wait_until(scraped, timeout_s=60, what="Prometheus to scrape both arms again")
    publisher.flush()

    def no_shared_files(model_name: str) -> request_counts.Counts:
        raise AssertionError("the guard's process shares no metrics files with the API's")

    monkeypatch.setattr(request_counts, "request_counters_local", no_shared_files)
    look = service.experiment_evaluate(experiment_id=experiment.pk)

    assert sum(s != 200 for s in statuses) > 50
    assert look.decision.action == "rollback"
    experiment.refresh_from_db()
    assert experiment.statistics["request_counts"] == {"source": "prometheus"}
    assert experiment.reason.startswith("error_rate:")
    assert experiment.statistics["arms"]["challenger"]["errors"] > 50
    assert experiment.statistics["arms"]["champion"]["errors"] == 0


def test_error_guard_waits_and_says_why_when_prometheus_is_unreachable(
    api: APIClient,
    publisher: EventPublisher,
    model_files: dict[str, Path],
    tmp_path: Path,
    settings: Any,
) -> None:
    settings.PHOENIX_PROMETHEUS_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens
    champion = register("credit", model_files["a"], alias="champion")
    broken = register("credit", _failing_model(tmp_path / "broken.onnx"), stage="staging")
    experiment = service.experiment_create(
        model=champion.model, challenger=broken, mode="canary", canary_steps=[50, 100]
    )
    service.experiment_start(experiment_id=experiment.pk)
    for i in range(120):
        api.post("/api/v1/models/credit/predict", {"features": _row(i)}, format="json")
    publisher.flush()

    look = service.experiment_evaluate(experiment_id=experiment.pk)

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.RUNNING
    assert look.decision.action == "continue"
    counts = experiment.statistics["request_counts"]
    assert counts["source"] == "prometheus"
    assert "Connection refused" in counts["error"]
    guard = next(g for g in experiment.statistics["guards"] if g["name"] == "error_rate")
    assert guard["state"] == "insufficient_data"


def test_experiment_command_is_the_same_command(arms: tuple[ModelVersion, ModelVersion]) -> None:
    champion, challenger = arms
    experiment = service.experiment_create(model=champion.model, challenger=challenger, mode="ab")
    service.experiment_start(experiment_id=experiment.pk)
    out = io.StringIO()

    call_command("experiment", "promote", str(experiment.pk), "--reason", "runbook", stdout=out)

    assert json.loads(out.getvalue())["status"] == "promoted"
    assert json.loads(out.getvalue())["reason"] == "runbook"
