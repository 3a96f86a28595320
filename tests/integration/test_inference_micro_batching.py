"""Micro-batching on the predict path: a model whose policy turns it on is served
through one MicroBatcher per version; answers, events and metrics stay per request.

The batcher's own timing rules (order, per-request errors, the delay bound) are
unit-tested in tests/unit/test_batching.py; here it is the wiring: the session
cache builds, keeps and replaces batchers with the plans, requests on worker
threads go through them, the event loop never waits in one, and the batch-size
metric counts every request.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import close_old_connections

from inference.models import RoutingPolicy
from inference.prediction.service import prediction_create, warm_execution
from inference.selectors import ApiKeyPrincipal
from inference.session_cache import session_cache
from tests.inference_support import (
    onnx_classifier,
    onnx_predict,
    prediction_events_record,
    register,
)

pytestmark = pytest.mark.usefixtures("fresh_inference_state")

PRINCIPAL = ApiKeyPrincipal(id=1, name="t", prefix="t", allowed_models=None)


@pytest.fixture(autouse=True)
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return prediction_events_record(monkeypatch)


@pytest.fixture
def champion(db: None, tmp_path: Path) -> Any:
    path = onnx_classifier(tmp_path / "batched.onnx")
    return path, register("credit", path)


def _batching(champion: Any, *, on: bool, max_rows: int = 16, delay_ms: float = 20.0) -> None:
    RoutingPolicy.objects.update_or_create(
        model=champion[1].model,
        defaults={
            "micro_batching": on,
            "micro_batch_max_rows": max_rows,
            "micro_batch_max_delay_ms": delay_ms,
        },
    )
    session_cache.refresh()


def _metric(client: Any, name: str, version: str) -> float:
    prefix = f'{name}{{model="credit",version="{version}"}} '
    for line in client.get("/metrics").content.decode().splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_without_a_policy_no_batcher_and_warm_requests_run_inline(champion: Any) -> None:
    session_cache.refresh()

    assert session_cache.batcher_for(_served(champion)) is None
    assert warm_execution(model_name="credit", version=None) == "inline"


def test_batching_model_gets_a_batcher_and_runs_on_the_pool(champion: Any, client: Any) -> None:
    _batching(champion, on=True)

    batcher = session_cache.batcher_for(_served(champion))
    assert batcher is not None
    assert batcher.batchable
    # Its requests may wait for company, which the event loop must never do.
    assert warm_execution(model_name="credit", version=None) == "pool"
    component = client.get("/readyz").json()["components"][f"model:credit:{champion[1].version}"]
    assert component["micro_batching"] is True


def test_concurrent_requests_get_their_own_answers_events_and_counts(
    champion: Any, client: Any, events: list[dict[str, Any]]
) -> None:
    path, version = champion
    _batching(champion, on=True)
    before = _metric(client, "phoenix_inference_batch_requests_count", version.version)
    rows = [[float(i) / 4 - 2, 1.0 - i / 8, (i % 5) - 2.0] for i in range(24)]
    expected, _ = onnx_predict(path, rows)
    answers: dict[int, Any] = {}
    barrier = threading.Barrier(len(rows))

    def call(i: int) -> None:
        barrier.wait()
        try:
            features = dict(zip(["x1", "x2", "x3"], rows[i], strict=True))
            answers[i] = prediction_create(
                principal=PRINCIPAL, model_name="credit", features=features
            )
        finally:
            close_old_connections()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [answers[i].predictions[0] for i in range(len(rows))] == expected
    assert len(events) == len(rows)
    assert sorted(e["request_id"] for e in events) == sorted(a.request_id for a in answers.values())
    # Every request went through the batcher: one count per request, however they grouped.
    requests = _metric(client, "phoenix_inference_batch_requests_sum", version.version)
    runs = _metric(client, "phoenix_inference_batch_requests_count", version.version) - before
    assert requests == len(rows)
    assert 1 <= runs <= len(rows)


def test_policy_change_replaces_the_batcher_and_turning_it_off_removes_it(
    champion: Any,
) -> None:
    _batching(champion, on=True, max_rows=16)
    first = session_cache.batcher_for(_served(champion))
    session_cache.refresh()
    assert session_cache.batcher_for(_served(champion)) is first  # same policy: kept

    _batching(champion, on=True, max_rows=8)
    second = session_cache.batcher_for(_served(champion))
    assert second is not None
    assert second is not first
    assert not first.batchable  # closed: a request still holding it runs alone

    _batching(champion, on=False)
    assert session_cache.batcher_for(_served(champion)) is None
    assert not second.batchable
    assert warm_execution(model_name="credit", version=None) == "inline"


def test_on_an_event_loop_the_batcher_is_bypassed(champion: Any) -> None:
    import asyncio

    _batching(champion, on=True)
    batcher = session_cache.batcher_for(_served(champion))
    assert batcher is not None
    calls: list[int] = []
    batcher._on_batch = lambda rows, requests: calls.append(requests)

    async def on_the_loop() -> Any:
        return prediction_create(
            principal=PRINCIPAL, model_name="credit", features={"x1": 0.1, "x2": 0.2, "x3": 0.3}
        )

    answer = asyncio.run(on_the_loop())

    assert answer.predictions == onnx_predict(champion[0], [[0.1, 0.2, 0.3]])[0]
    assert calls == []  # not through the batcher


def _served(champion: Any) -> Any:
    plans = session_cache.loaded_plans()
    assert plans is not None
    return plans["credit"].versions[champion[1].version]
