"""/readyz means "this process can serve predictions".

Shared dependencies (PostgreSQL, Redis, the Kafka broker) going away leave every
replica ready and degraded, since the service keeps answering without them; what
makes a process unready is its own state: models not warm, start-up unfinished,
events that can be kept nowhere. The outage cases run a real server process whose
PostgreSQL and Redis connections pass through a proxy the test cuts (the services
themselves stay up for the test process), and a real broker the test freezes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from inference import events
from inference.events import EventPublisher, PublisherConfig
from tests.conftest import database_url_for_servers, free_port, wait_for_port
from tests.fault_proxy import FaultProxy
from tests.inference_support import onnx_classifier, register

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


# --- in this process ----------------------------------------------------------------


@pytest.mark.django_db
def test_cache_down_is_degraded_not_unready(client: Any, settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    }

    answer = client.get("/readyz")

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["status"] == "ready"
    assert body["degraded"] is True
    assert body["components"]["cache"]["status"] == "degraded"
    assert "error" in body["components"]["cache"]
    assert body["components"]["database"]["status"] == "ok"
    metrics = client.get("/metrics").content.decode()
    assert 'phoenix_component_up{component="cache"} 0.5' in metrics


@pytest.mark.django_db
def test_buffer_full_with_the_journal_unwritable_is_unready(client: Any, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "journal"
    not_a_folder.write_text("a file where the journal's folder should be")
    config = PublisherConfig(
        backend="database",
        topic="prediction-events",
        buffer_size=3,
        batch_size=100,  # never reached: nothing ships during the test
        flush_interval_s=3600,
        journal_dir=not_a_folder,
    )
    publisher = EventPublisher(config)
    previous = events.set_publisher(publisher)
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        for i in range(4):  # three fill the buffer, the fourth must be journalled
            publisher.publish([("prediction-events", {"event_id": f"e{i}"})])

        answer = client.get("/readyz")
    finally:
        events.set_publisher(previous)
        publisher.stop(timeout_s=1)

    assert answer.status_code == 503, answer.content
    component = answer.json()["components"]["event_bus"]
    assert component["status"] == "fail"
    assert component["buffer_depth"] == 3
    assert component["journal_error"]


# --- a server process losing its shared dependencies --------------------------------


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _predict(base: str, key: str) -> int:
    request = urllib.request.Request(
        f"{base}/api/v1/models/credit/predict",
        data=json.dumps({"features": ROW}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _readyz_until(
    base: str, done: Callable[[int, dict[str, Any]], bool], *, timeout_s: float = 60.0
) -> list[tuple[int, dict[str, Any]]]:
    """Every /readyz answer until ``done`` holds for one (the last); fails at the deadline."""
    seen: list[tuple[int, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.append(_get(f"{base}/readyz"))
        if done(*seen[-1]):
            return seen
        time.sleep(0.25)
    pytest.fail(f"/readyz never reached the expected state; last answer: {seen[-1]}")


def _component(name: str, state: str) -> Callable[[int, dict[str, Any]], bool]:
    return lambda status, body: body["components"].get(name, {}).get("status") == state


class Server:
    def __init__(self, base: str, key: str, version: str, log: Path) -> None:
        self.base, self.key, self.version, self.log = base, key, version, log


@pytest.fixture
def outage_rig(
    postgres_db: None,
    transactional_db: None,
    redis_url: str,
    kafka_broker: Any,
    settings: Any,
    tmp_path: Path,
) -> Iterator[Callable[..., Any]]:
    """Starts a server whose PostgreSQL and Redis go through cuttable proxies."""
    from inference.api_keys import api_key_create

    version = register("credit", onnx_classifier(tmp_path / "m.onnx"))
    key = api_key_create(name="readiness", all_models=True)[1]
    db = connection.settings_dict
    db_host, db_port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
    redis_host, redis_port = "127.0.0.1", int(redis_url.rsplit(":", 1)[1].split("/", 1)[0])
    proxies = {
        "postgres": FaultProxy(db_host, db_port),
        "redis": FaultProxy(redis_host, redis_port),
    }
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        *, cut_before_start: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> Server:
        for name in cut_before_start:
            proxies[name].cut()
        port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "phoenix.settings",
            "DATABASE_URL": proxies["postgres"].url_for(
                database_url_for_servers(), host=db_host, port=db_port
            ),
            "REDIS_URL": proxies["redis"].url_for(redis_url, host=redis_host, port=redis_port),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "PHOENIX_EVENT_SEND_TIMEOUT_S": "1",
            "PHOENIX_PRELOAD_MODELS": "1",
            "PHOENIX_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PHOENIX_DATA_DIR": str(tmp_path / "server"),
            **(env or {}),
        }
        log = tmp_path / f"server-{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "phoenix.asgi:application", "--port", str(port)],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        if not wait_for_port(port, timeout_s=90):
            pytest.fail(f"server did not start: {log.read_text()}")
        return Server(f"http://127.0.0.1:{port}", key, version.version, log)

    start.proxies = proxies  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        for proxy in proxies.values():
            proxy.close()


def test_shared_dependencies_down_leave_the_process_ready_and_serving(
    outage_rig: Any, kafka_broker: Any
) -> None:
    server = outage_rig()
    proxies = outage_rig.proxies
    _readyz_until(server.base, lambda status, body: status == 200)
    assert _predict(server.base, server.key) == 200

    for name, component in (("redis", "cache"), ("postgres", "database")):
        proxies[name].cut()
        status, body = _get(f"{server.base}/readyz")
        assert status == 200, body
        assert body["status"] == "ready"
        assert body["degraded"] is True
        assert body["components"][component]["status"] == "degraded"
        assert body["components"][f"model:credit:{server.version}"]["status"] == "ok"
        assert _predict(server.base, server.key) == 200
        proxies[name].restore()
        _readyz_until(server.base, _component(component, "ok"))

    kafka_broker.freeze()
    try:
        # The broker's loss shows once a send times out; every answer meanwhile is ready.
        def event_bus_degraded(status: int, body: dict[str, Any]) -> bool:
            assert _predict(server.base, server.key) == 200
            return _component("event_bus", "degraded")(status, body)

        seen = _readyz_until(server.base, event_bus_degraded)
        assert {status for status, _ in seen} == {200}
    finally:
        kafka_broker.thaw()
    _readyz_until(server.base, _component("event_bus", "ok"))


def test_hung_dependencies_are_degraded_within_the_deadline(outage_rig: Any) -> None:
    """A PostgreSQL or Redis that accepts and never answers (frozen, partitioned) must
    not stall the probe past PHOENIX_READINESS_TIMEOUT_S (1 s here): degraded, ready."""
    server = outage_rig(env={"PHOENIX_READINESS_TIMEOUT_S": "1"})
    proxies = outage_rig.proxies
    _readyz_until(server.base, lambda status, body: status == 200)
    assert _predict(server.base, server.key) == 200  # the key is known from here on

    for name, component in (("postgres", "database"), ("redis", "cache")):
        proxies[name].freeze()
        try:
            # Unbounded, the database check would never return (the client gives up
            # after 15 s); the second probe finds the first check still hung.
            for _ in range(2):
                status, body = _get(f"{server.base}/readyz")
                assert status == 200, body
                assert body["status"] == "ready"
                assert body["components"][component]["status"] == "degraded", body
                assert "no answer" in body["components"][component]["error"], body
            assert _predict(server.base, server.key) == 200
        finally:
            proxies[name].thaw()
        _readyz_until(server.base, _component(component, "ok"))


def test_start_up_without_the_registry_is_unready_until_it_is_back(outage_rig: Any) -> None:
    server = outage_rig(cut_before_start=("postgres",))

    status, body = _get(f"{server.base}/readyz")
    assert status == 503, body
    assert body["components"]["models"]["status"] == "fail"
    assert "start-up not finished" in body["components"]["models"]["error"]
    assert body["components"]["database"]["status"] == "degraded"

    outage_rig.proxies["postgres"].restore()
    # No request arrives at an unready process: it finishes start-up on its own.
    _readyz_until(server.base, lambda status, body: status == 200)
    assert _predict(server.base, server.key) == 200
