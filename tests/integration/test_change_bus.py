"""The change bus ("what serving reads changed") reaches listeners here and in other processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from phoenix import change_bus
from phoenix.change_bus import Change, ChangeReason

ROOT = Path(__file__).resolve().parents[2]

PUBLISH = (
    "import django; django.setup(); "
    "from phoenix.change_bus import change_publish as p; "
    "p(model_name='risk', reason='stage')"
)


def _publish_from_another_process(**env: str) -> None:
    subprocess.run(
        [sys.executable, "-c", PUBLISH],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # base settings read the env; test settings would pick their own DATA_DIR.
            "DJANGO_SETTINGS_MODULE": "phoenix.settings.base",
            "DATABASE_URL": "sqlite:///:memory:",
            "REDIS_URL": "",
            **env,
        },
        check=True,
        timeout=60,
    )


def _wait_for(heard: list[Change], count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(heard) < count and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture
def heard(monkeypatch) -> Iterator[list[Change]]:
    monkeypatch.setattr(change_bus, "POLL_INTERVAL_S", 0.05)
    change_bus.stop_listener()
    received: list[Change] = []
    change_bus.subscribe(received.append)
    yield received
    change_bus.unsubscribe(received.append)
    change_bus.stop_listener()


def test_local_listeners_hear_at_once_and_failures_never_reach_the_caller(
    heard, settings, tmp_path
) -> None:
    def broken(change: Change) -> None:
        raise RuntimeError("listener bug")

    settings.DATA_DIR = tmp_path / "not-a-dir"
    (tmp_path / "not-a-dir").write_text("a file where the folder should be")
    change_bus.subscribe(broken)
    try:
        change_bus.change_publish(model_name="risk", reason="upload")
    finally:
        change_bus.unsubscribe(broken)

    assert heard == [Change("risk", "upload", change_bus.origin())]


def test_file_transport_reaches_another_process_and_skips_its_own(
    heard, settings, tmp_path
) -> None:
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    change_bus.start_listener()

    change_bus.change_publish(model_name="own", reason="upload")
    _publish_from_another_process(PHOENIX_DATA_DIR=str(tmp_path))
    _wait_for(heard, 2)
    time.sleep(0.2)  # our own line, read back by the listener, must not arrive twice

    assert [(c.model_name, c.reason) for c in heard] == [("own", "upload"), ("risk", "stage")]
    assert heard[1].origin != change_bus.origin()


def test_file_transport_asks_for_a_resync_when_the_log_rotates(
    heard, settings, tmp_path, monkeypatch
) -> None:
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    change_bus.start_listener()
    elsewhere = [Change(f"m{i}", "stage", "another-process") for i in range(3)]
    change_bus._log_append(elsewhere[0])
    _wait_for(heard, 1)

    # Every write now finds the log over the limit and starts a new one.
    monkeypatch.setattr(change_bus, "LOG_ROTATE_BYTES", 10)
    change_bus._log_append(elsewhere[1])
    change_bus._log_append(elsewhere[2])
    deadline = time.monotonic() + 10
    while elsewhere[2] not in heard and time.monotonic() < deadline:
        time.sleep(0.02)

    resync = Change("", ChangeReason.RESYNC, "listener")
    assert heard[0] == elsewhere[0]
    assert heard[-1] == elsewhere[2]
    # Unless the listener read m1 in between, m1's log was replaced unread: resync.
    assert heard[-2] == resync
    assert set(heard) <= {*elsewhere, resync}


@pytest.mark.redis
def test_redis_transport_reaches_another_process(heard, settings, redis_url) -> None:
    channel = f"phoenix.registry.test.{uuid.uuid4().hex}"
    settings.REDIS_URL = redis_url
    settings.PHOENIX_REGISTRY_CHANNEL = channel
    change_bus.start_listener()

    change_bus.change_publish(model_name="own", reason="alias")
    _publish_from_another_process(REDIS_URL=redis_url, PHOENIX_REGISTRY_CHANNEL=channel)
    _wait_for(heard, 2)
    time.sleep(0.2)

    assert [(c.model_name, c.reason) for c in heard] == [("own", "alias"), ("risk", "stage")]


def test_start_listener_is_idempotent(heard, settings, tmp_path) -> None:
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""

    change_bus.start_listener()
    change_bus.start_listener()

    listeners = [t for t in threading.enumerate() if t.name == "registry-listener"]
    assert len(listeners) == 1
    assert listeners[0].daemon


def test_broadcast_uses_the_configured_data_dir() -> None:
    assert change_bus._log_path().parent == Path(django_settings.DATA_DIR)


def test_a_change_with_an_unknown_reason_is_ignored_as_malformed(heard, settings, tmp_path) -> None:
    settings.DATA_DIR = tmp_path
    settings.REDIS_URL = ""
    change_bus.start_listener()
    known = Change("m", ChangeReason.STAGE, "another-process")
    path = change_bus._log_path()
    change_bus._log_append(known)  # creates the log; the listener reads from its end on
    _wait_for(heard, 1)

    with path.open("ab") as log:
        log.write(b'{"model_name": "m", "reason": "from-the-future", "origin": "x"}\n')
    change_bus._log_append(Change("n", ChangeReason.ALIAS, "another-process"))
    _wait_for(heard, 2)

    assert [(c.model_name, c.reason) for c in heard] == [("m", "stage"), ("n", "alias")]
    assert all(isinstance(c.reason, ChangeReason) for c in heard)
