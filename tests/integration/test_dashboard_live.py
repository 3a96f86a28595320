"""Live dashboard feed: snapshot contents, consumer auth, group fan-out, pushed events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers
from channels.testing.websocket import WebsocketCommunicator
from django.contrib.auth.models import Group, User
from django.test import Client, override_settings
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitoring import live_snapshot
from monitoring.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    CLOSE_UNKNOWN_MODEL,
    DashboardConsumer,
    ModelConsumer,
)
from monitoring.services import dashboard_push, live

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.05)
CONFIDENCE_BUCKETS = (0.5, 0.75, 0.9, 1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def inference_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """The inference path's metrics (same names, labels and kinds), in a private registry."""
    return {
        "requests": Counter(
            "phoenix_inference_requests_total",
            "requests",
            ["model", "version", "route", "status"],
            registry=registry,
        ),
        "latency": Histogram(
            "phoenix_inference_latency_seconds",
            "latency",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        "confidence": Histogram(
            "phoenix_prediction_confidence",
            "confidence",
            ["model", "version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        ),
        "loaded": Gauge(
            "phoenix_model_loaded", "loaded", ["model", "version", "provider"], registry=registry
        ),
        "buffer": Gauge("phoenix_events_buffer_depth", "buffer", registry=registry),
    }


# --- snapshot contents ------------------------------------------------------------------------


def test_snapshot_reports_rates_quantiles_errors_routes_and_providers() -> None:
    registry = CollectorRegistry()
    m = inference_metrics(registry)
    clock = FakeClock()
    sampler = live_snapshot.MetricsSampler(registry=registry, window_s=10, clock=clock)
    m["loaded"].labels("credit", "3", "CUDAExecutionProvider").set(1)
    m["loaded"].labels("credit", "4", "CPUExecutionProvider").set(1)
    m["requests"].labels("credit", "3", "champion", "200").inc(5)  # before the window

    first = sampler.sample()
    assert first["models"]["credit"]["requests_total"] == 5
    assert first["models"]["credit"]["rps"] == 0.0  # one reading has no rate yet

    # Within 2 s: 90 champion answers of 1-2 ms, 10 challenger answers of 20-50 ms,
    # 2 challenger failures (500) and 3 client errors (422).
    for _ in range(90):
        m["requests"].labels("credit", "3", "champion", "200").inc()
        m["latency"].labels("credit", "3").observe(0.0015)
        m["confidence"].labels("credit", "3").observe(0.95)
    for _ in range(10):
        m["requests"].labels("credit", "4", "challenger", "200").inc()
        m["latency"].labels("credit", "4").observe(0.03)
        m["confidence"].labels("credit", "4").observe(0.6)
    m["requests"].labels("credit", "4", "challenger", "500").inc(2)
    m["requests"].labels("credit", "3", "champion", "422").inc(3)
    m["buffer"].set(7)
    clock.now += 2.0

    snap = sampler.sample()
    credit = snap["models"]["credit"]
    assert snap["window_s"] == 2.0
    assert credit["requests_total"] == 5 + 90 + 10 + 2 + 3
    assert credit["rps"] == pytest.approx(105 / 2.0)
    # Errors are the server's (5xx): 2 of 105 in the window.
    assert credit["error_rate"] == pytest.approx(2 / 105, abs=1e-4)
    assert credit["routes"]["champion"] == pytest.approx(93 / 105, abs=1e-4)
    assert credit["routes"]["challenger"] == pytest.approx(12 / 105, abs=1e-4)
    # 90 of 100 latencies are in (1, 2] ms: p50 is there, p95/p99 in (10, 50] ms.
    assert 1.0 < credit["latency_ms"]["p50"] <= 2.0
    assert 10.0 < credit["latency_ms"]["p99"] <= 50.0
    champion, challenger = credit["versions"]["3"], credit["versions"]["4"]
    assert champion["provider"] == "CUDAExecutionProvider"
    assert challenger["provider"] == "CPUExecutionProvider"
    assert champion["error_rate"] == 0.0
    assert challenger["error_rate"] == pytest.approx(2 / 12, abs=1e-4)
    assert 10.0 < challenger["latency_ms"]["p50"] <= 50.0
    assert credit["providers"] == ["CPUExecutionProvider", "CUDAExecutionProvider"]
    # Confidence: 10 rows at 0.6 (bucket <= 0.75), 90 at 0.95 (bucket <= 1.0).
    assert credit["confidence"]["bounds"] == [*CONFIDENCE_BUCKETS, None]  # None: +Inf
    assert credit["confidence"]["counts"][:4] == [0.0, 10.0, 0.0, 90.0]
    assert snap["totals"]["requests_total"] == credit["requests_total"]
    assert snap["pipeline"]["phoenix_events_buffer_depth"] == 7.0
    # Browsers' JSON.parse refuses Infinity and NaN: the snapshot must be strict JSON.
    json.dumps(snap, allow_nan=False)


def test_snapshot_rate_covers_the_window_not_the_whole_history() -> None:
    registry = CollectorRegistry()
    m = inference_metrics(registry)
    clock = FakeClock()
    sampler = live_snapshot.MetricsSampler(registry=registry, window_s=3, clock=clock)
    requests = m["requests"].labels("credit", "3", "champion", "200")
    requests.inc(1000)  # long ago
    for _ in range(6):
        sampler.sample()
        clock.now += 1.0
        requests.inc(10)  # 10 per second from now on
    snap = sampler.sample()
    assert snap["window_s"] == pytest.approx(3.0)
    assert snap["models"]["credit"]["rps"] == pytest.approx(10.0)
    # No traffic in the window: the rate falls to zero and quantiles are unknown.
    for _ in range(4):
        clock.now += 1.0
        snap = sampler.sample()
    assert snap["models"]["credit"]["rps"] == 0.0
    assert snap["models"]["credit"]["latency_ms"]["p99"] is None


# --- consumers ----------------------------------------------------------------------------------


@pytest.fixture
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> Iterator[live.SnapshotBroadcaster]:
    """The process broadcaster ticking every 50 ms over a private registry."""
    registry = CollectorRegistry()
    sampler = live_snapshot.MetricsSampler(registry=registry, window_s=1)
    monkeypatch.setattr(live.broadcaster, "sampler", sampler)
    monkeypatch.setattr(live.broadcaster, "interval_s", 0.05)
    monkeypatch.setattr(live.broadcaster, "latest", None)
    live.broadcaster.metrics = inference_metrics(registry)  # type: ignore[attr-defined]
    yield live.broadcaster
    assert live.broadcaster.clients == 0, "a test left a client connected"


@pytest.fixture
def operator(transactional_db: None) -> User:
    # Committed, not inside the test's transaction: consumers read users from other
    # threads, and database_sync_to_async closes connections around each call.
    user = User.objects.create_user("olivia", password="pw-olivia-1")
    group, _ = Group.objects.get_or_create(name="Operators")  # flushed by earlier tests
    user.groups.add(group)
    return user


def communicator(consumer: Any, path: str, user: Any, **route: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(consumer.as_asgi(), path)
    comm.scope["user"] = user
    comm.scope["url_route"] = {"args": (), "kwargs": route}
    return comm


async def receive_until(comm: WebsocketCommunicator, kind: str, timeout: float = 3.0) -> Any:
    """The next message of type ``kind`` (snapshots keep arriving in between)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await comm.receive_json_from(timeout=max(0.01, deadline - loop.time()))
        if message["type"] == kind:
            return message["data"]


async def drain(comm: WebsocketCommunicator, settle: float = 0.3) -> list[Any]:
    """Everything the socket has received after ``settle`` seconds, without waiting on more.

    (A timed-out receive would cancel the consumer, so absence is checked this way.)
    """
    await asyncio.sleep(settle)
    messages = []
    while not await comm.receive_nothing(timeout=0.01):
        messages.append(await comm.receive_json_from())
    return messages


def test_operators_group_migration_grants_watching_not_staging(db: None) -> None:
    import importlib

    from django.apps import apps

    # Run the data migration's function itself: with --reuse-db, a flush by an earlier
    # transactional test may have removed what the migration created.
    migration = importlib.import_module("monitoring.migrations.0003_operators_group")
    Group.objects.filter(name="Operators").delete()
    migration.create_group(apps, None)
    migration.create_group(apps, None)  # idempotent
    group = Group.objects.get(name="Operators")
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert {"view_driftreport", "view_modelversion", "change_routingpolicy"} <= codenames
    assert "change_modelversion" not in codenames  # stage moves stay with data scientists


def test_anonymous_socket_is_closed_with_4401(fast_ticks: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    async def scenario() -> None:
        comm = communicator(DashboardConsumer, "/ws/dashboard/", AnonymousUser())
        connected, _ = await comm.connect()
        assert connected
        closed = await comm.receive_output(timeout=1)
        assert closed == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}
        assert live.broadcaster.clients == 0

    async_to_sync(scenario)()


def test_signed_in_user_outside_the_groups_is_refused(
    fast_ticks: Any, transactional_db: None
) -> None:
    stranger = User.objects.create_user("sam", password="pw-sam-1")

    async def scenario() -> None:
        comm = communicator(DashboardConsumer, "/ws/dashboard/", stranger)
        await comm.connect()
        closed = await comm.receive_output(timeout=1)
        assert closed["code"] == CLOSE_FORBIDDEN

    async_to_sync(scenario)()


def test_model_socket_refuses_a_name_no_group_can_carry(fast_ticks: Any, operator: User) -> None:
    async def scenario() -> None:
        comm = communicator(ModelConsumer, "/ws/models/x/", operator, name="bad name!")
        await comm.connect()
        closed = await comm.receive_output(timeout=1)
        assert closed["code"] == CLOSE_UNKNOWN_MODEL

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_session_cookie_authenticates_through_the_asgi_stack(fast_ticks: Any) -> None:
    from phoenix.asgi import application

    user = User.objects.create_user("ops", password="pw-ops-1", is_staff=True)
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario() -> None:
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
        anonymous = WebsocketCommunicator(application, "/ws/dashboard/", headers=headers)
        await anonymous.connect()
        assert (await anonymous.receive_output(timeout=2))["code"] == CLOSE_UNAUTHENTICATED

        signed_in = WebsocketCommunicator(
            application, "/ws/dashboard/", headers=[*headers, (b"cookie", cookie)]
        )
        connected, _ = await signed_in.connect()
        assert connected
        snapshot = await receive_until(signed_in, "snapshot")
        assert "totals" in snapshot
        await signed_in.disconnect()

        # A page from another site may not open the socket with the user's cookie.
        foreign = WebsocketCommunicator(
            application,
            "/ws/dashboard/",
            headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie)],
        )
        connected, _ = await foreign.connect()
        assert not connected

    async_to_sync(scenario)()


def test_snapshot_is_computed_once_per_tick_for_all_clients(
    fast_ticks: live.SnapshotBroadcaster, operator: User
) -> None:
    calls = []
    sample = fast_ticks.sampler.sample

    def counting_sample() -> dict[str, Any]:
        calls.append(1)
        return sample()

    fast_ticks.sampler.sample = counting_sample  # type: ignore[method-assign]
    requests = fast_ticks.metrics["requests"]  # type: ignore[attr-defined]

    async def scenario() -> None:
        clients = [communicator(DashboardConsumer, "/ws/dashboard/", operator) for _ in range(4)]
        for comm in clients:
            assert (await comm.connect())[0]
        requests.labels("credit", "1", "champion", "200").inc(42)
        received = []
        for comm in clients:
            snapshot: dict[str, Any] = {}
            while snapshot.get("totals", {}).get("requests_total") != 42:
                snapshot = await receive_until(comm, "snapshot")
            received.append(snapshot)
        ticks = len(calls)
        # Every client got the same snapshot object's numbers...
        assert {s["models"]["credit"]["requests_total"] for s in received} == {42}
        # ...and the registry was read once per tick, not once per client per tick.
        await asyncio.sleep(0.3)
        elapsed_ticks = len(calls) - ticks
        assert 2 <= elapsed_ticks <= 8  # ~6 ticks of 50 ms, never 4 clients x 6
        for comm in clients:
            await comm.disconnect()
        assert fast_ticks.clients == 0
        await asyncio.sleep(0.15)
        assert not fast_ticks.running  # no clients: the task stops

    async_to_sync(scenario)()


def test_events_fan_out_to_the_dashboard_and_only_the_models_page(
    fast_ticks: Any, operator: User
) -> None:
    async def scenario() -> None:
        dashboards = [communicator(DashboardConsumer, "/ws/dashboard/", operator) for _ in range(2)]
        credit_page = communicator(ModelConsumer, "/ws/models/credit/", operator, name="credit")
        other_page = communicator(ModelConsumer, "/ws/models/churn/", operator, name="churn")
        for comm in [*dashboards, credit_page, other_page]:
            assert (await comm.connect())[0]

        # Pushed from a worker thread, as a Celery task or a sync service would.
        pusher = threading.Thread(
            target=dashboard_push.dashboard_event_push,
            args=("drift", {"model": "credit", "version": "3", "status": "drift"}),
        )
        pusher.start()
        await asyncio.get_running_loop().run_in_executor(None, pusher.join)

        for comm in [*dashboards, credit_page]:
            event = await receive_until(comm, "event")
            assert event["kind"] == "drift"
            assert event["model"] == "credit"
            assert event["status"] == "drift"
        # Exactly once on the model page, never on another model's page.
        assert [m for m in await drain(credit_page) if m["type"] == "event"] == []
        assert [m for m in await drain(other_page, settle=0) if m["type"] == "event"] == []
        for comm in [*dashboards, credit_page, other_page]:
            await comm.disconnect()

    async_to_sync(scenario)()


def test_event_push_never_raises_into_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_layer() -> Any:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(dashboard_push, "get_channel_layer", broken_layer)
    dashboard_push.dashboard_event_push("drift", {"model": "credit"})  # logged, not raised


@pytest.mark.django_db(transaction=True)
def test_stage_move_is_pushed_to_the_model_page(
    fast_ticks: Any, tmp_path: Any, settings: Any
) -> None:
    from models_registry.services import model_version_set_stage
    from tests.inference_support import onnx_classifier, register

    settings.MEDIA_ROOT = tmp_path / "media"
    version = register("credit", onnx_classifier(tmp_path / "m.onnx"), stage="staging")
    user = User.objects.create_superuser("root", password="pw-root-1")

    async def scenario() -> None:
        page = communicator(ModelConsumer, "/ws/models/credit/", user, name="credit")
        assert (await page.connect())[0]
        await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: model_version_set_stage(version=version, stage="production", actor=user),
        )
        event = await receive_until(page, "event")
        assert event["kind"] == "stage"
        assert event["version"] == version.version
        assert (event["from_value"], event["to_value"]) == ("staging", "production")
        assert event["actor"] == "root"
        await page.disconnect()

    async_to_sync(scenario)()


def test_redis_channel_layer_fans_out_events(redis_url: str, operator: User) -> None:
    layers = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": "phoenix-test-dashboards"},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        channel_layers.backends.clear()
        try:

            async def scenario() -> None:
                first = communicator(DashboardConsumer, "/ws/dashboard/", operator)
                second = communicator(ModelConsumer, "/ws/models/credit/", operator, name="credit")
                for comm in (first, second):
                    assert (await comm.connect())[0]
                # Through Redis, from another thread: the path a Celery worker takes.
                await asyncio.get_running_loop().run_in_executor(
                    None, dashboard_push.dashboard_event_push, "rollback", {"model": "credit"}
                )
                for comm in (first, second):
                    event = await receive_until(comm, "event")
                    assert event["kind"] == "rollback"
                for comm in (first, second):
                    await comm.disconnect()

            async_to_sync(scenario)()
        finally:
            channel_layers.backends.clear()


def drift_report(version: Any) -> Any:
    from django.utils import timezone

    from monitoring.models import DriftReport

    now = timezone.now()
    return DriftReport.objects.create(
        model_version=version,
        window_start=now,
        window_end=now,
        rows=300,
        status="drift",
        alpha=0.05,
        correction="bh",
        features={"x1": {"test": "ks", "p_value": 1e-6, "p_adjusted": 3e-6, "drift": True}},
    )


@pytest.fixture
def in_memory_layer(settings: Any) -> Iterator[None]:
    """The embedded default's channel layer, whatever REDIS_URL says."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.mark.django_db(transaction=True)
def test_reports_stored_by_another_process_reach_in_memory_dashboards_once(
    in_memory_layer: None, fast_ticks: Any, tmp_path: Any, settings: Any
) -> None:
    """Embedded default: the drift job runs in the Celery worker process, whose push
    cannot reach this process's sockets; the stored report is found and shown once."""
    from tests.inference_support import onnx_classifier, register

    settings.MEDIA_ROOT = tmp_path / "media"
    version = register("credit", onnx_classifier(tmp_path / "m.onnx"))
    user = User.objects.create_superuser("root", password="pw-root-1")
    drift_report(version)  # before anyone watched: not an event

    async def scenario() -> None:
        page = communicator(DashboardConsumer, "/ws/dashboard/", user)
        assert (await page.connect())[0]
        await asyncio.sleep(0.2)  # the poller takes its bearings
        # Written by "another process": no push reaches this process.
        report = await asyncio.get_running_loop().run_in_executor(None, drift_report, version)
        event = await receive_until(page, "event")
        assert event["kind"] == "drift"
        assert event["report_id"] == report.id
        assert event["drifted_features"] == ["x1"]
        # Pushed too (the drift job ran in this process): still shown once.
        await asyncio.get_running_loop().run_in_executor(
            None,
            dashboard_push.dashboard_event_push,
            "drift",
            {"model": "credit", "report_id": report.id, "status": "drift"},
        )
        assert [m for m in await drain(page) if m["type"] == "event"] == []
        await page.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_experiment_moves_stored_by_another_process_reach_in_memory_dashboards(
    in_memory_layer: None, fast_ticks: Any, tmp_path: Any, settings: Any
) -> None:
    """Embedded default: the worker evaluates experiments, and its pushes cannot reach
    this process's sockets; the page hears of each status change (once) and each look."""
    from django.utils import timezone

    from monitoring.models import Experiment, ExperimentStatus
    from tests.inference_support import onnx_classifier, register

    settings.MEDIA_ROOT = tmp_path / "media"
    champion = register("credit", onnx_classifier(tmp_path / "a.onnx"), alias="champion")
    challenger = register(
        "credit", onnx_classifier(tmp_path / "b.onnx", flip=True), stage="staging"
    )
    experiment = Experiment.objects.create(
        model=champion.model, champion=champion, challenger=challenger, mode="canary"
    )  # a draft before anyone watched: not an event
    user = User.objects.create_superuser("root", password="pw-root-1")

    def stored(**fields: Any) -> None:  # as the worker writes it: no push here
        Experiment.objects.filter(pk=experiment.pk).update(**fields)

    async def scenario() -> None:
        page = communicator(DashboardConsumer, "/ws/dashboard/", user)
        assert (await page.connect())[0]
        await asyncio.sleep(0.2)  # the poller takes its bearings
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: stored(status=ExperimentStatus.RUNNING))
        event = await receive_until(page, "event")
        assert (event["kind"], event["experiment"], event["status"]) == (
            "experiment",
            experiment.pk,
            "running",
        )
        await loop.run_in_executor(None, lambda: stored(evaluated_at=timezone.now()))
        look = await receive_until(page, "event")
        assert (look["kind"], look["experiment"]) == ("experiment_look", experiment.pk)
        # The same move pushed too (the look ran in this process): still shown once.
        await loop.run_in_executor(
            None,
            dashboard_push.dashboard_event_push,
            "experiment",
            {"model": "credit", "experiment": experiment.pk, "status": "running", "canary_step": 0},
        )
        assert [m for m in await drain(page) if m["type"] == "event"] == []
        await page.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_performance_reports_stored_by_another_process_reach_in_memory_model_pages(
    in_memory_layer: None, fast_ticks: Any, tmp_path: Any, settings: Any
) -> None:
    """Embedded default: the performance check runs in the Celery worker; the model page
    hears of the stored report (its chart's next point) once."""
    from datetime import timedelta
    from unittest import mock

    from monitoring.consumers import ModelConsumer
    from monitoring.services.performance import performance_report_compute
    from tests.inference_support import onnx_classifier, register

    settings.MEDIA_ROOT = tmp_path / "media"
    version = register("credit", onnx_classifier(tmp_path / "m.onnx"))
    user = User.objects.create_superuser("root", password="pw-root-1")

    def check() -> Any:  # as the worker computes it: no push reaches this process
        with mock.patch("monitoring.services.performance.dashboard_event_push"):
            return performance_report_compute(version=version, window=timedelta(hours=1))

    async def scenario() -> None:
        page = communicator(ModelConsumer, "/ws/models/credit/", user, name="credit")
        assert (await page.connect())[0]
        await asyncio.sleep(0.2)  # the poller takes its bearings
        report = await asyncio.get_running_loop().run_in_executor(None, check)
        event = await receive_until(page, "event")
        assert (event["kind"], event["report_id"], event["model"]) == (
            "performance",
            report.id,
            "credit",
        )
        assert event["status"] == "insufficient_data"
        assert "window_end" in event
        assert [m for m in await drain(page) if m["type"] == "event"] == []
        await page.disconnect()

    async_to_sync(scenario)()
