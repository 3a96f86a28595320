"""The self-healing loop against a live server, driven by ``simulate_traffic``: drifting
traffic with feedback -> drift -> retraining -> challenger -> shadow -> canary -> promoted."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from django.core.management import call_command

from inference.api_keys import api_key_create
from inference.auth import api_key_cache_clear
from inference.events import get_publisher
from inference.models import RoutingPolicy
from inference.session_cache import session_cache
from monitoring.models import Experiment, ExperimentStatus, PredictionLog
from phoenix.demo import credit_risk as demo

pytestmark = pytest.mark.slow

# The test server answers a prediction and its feedback in tens of milliseconds: keep the
# rate where every request is sent within the command's deadline.
RPS = 25


@pytest.fixture
def served(live_server: Any, settings: Any) -> Any:
    from models_registry.services import model_version_register

    settings.PHOENIX_EXPERIMENT_AUTOSTART = [demo.MODEL_NAME]
    settings.PHOENIX_EXPERIMENT_CANARY_STEPS = [50.0, 100.0]
    settings.PHOENIX_EXPERIMENT_STEP_INTERVAL_S = 0
    settings.PHOENIX_EXPERIMENT_STEP_MIN_SAMPLES = 10
    settings.PHOENIX_EXPERIMENT_MIN_SAMPLES = 100
    settings.PHOENIX_RETRAINING_COOLDOWN_S = 0
    session_cache.clear()
    api_key_cache_clear()
    X, y, names = demo.generate_customers(n=3000, seed=demo.DEFAULT_SEED)
    version = model_version_register(
        model_name=demo.MODEL_NAME,
        file=io.BytesIO(demo.to_onnx_bytes(demo.train_champion(X, y), names)),
        stage="production",
        alias="champion",
        reference=io.BytesIO(demo.reference_csv(X[:2000], names)),
        reference_filename="reference.csv",
        retraining_recipe="demo.credit_risk",
    )
    key = api_key_create(name="traffic", model_names=[demo.MODEL_NAME])[1]
    session_cache.refresh(reason="test start")
    yield {"url": live_server.url, "key": key, "version": version}
    session_cache.clear()


def simulate(served: dict[str, Any], *, requests: int, seed: int) -> str:
    """``requests`` drifted customers at RPS, every one labelled, with flipped labels
    (the meaning of a default changed), then wait until the log holds them all."""
    answered = PredictionLog.objects.exclude(routed_by="shadow")  # one row per request
    before = answered.count()
    out = io.StringIO()
    call_command(
        "simulate_traffic", "--url", served["url"], "--api-key", served["key"],
        "--rps", str(RPS), "--duration", str(requests / RPS), "--drift", "income:1.0",
        "--drift", "debt:1.0", "--feedback-share", "1", "--flip-labels", "--seed", str(seed),
        "--concurrency", "4", stdout=out,
    )  # fmt: skip
    # On SQLite the event writer may meet a locked table and journal a batch; it replays
    # after a backoff: wait until every request's row is in the log.
    deadline = time.monotonic() + 60
    while answered.count() < before + requests and time.monotonic() < deadline:
        get_publisher().flush()
        time.sleep(0.2)
    assert answered.count() == before + requests
    assert f"sent {requests} predictions" in out.getvalue()
    return out.getvalue()


def test_simulated_traffic_heals_the_model_shadow_canary_promoted(
    served: dict[str, Any],
) -> None:
    from monitoring.tasks import check_drift, evaluate_experiments

    timings: dict[str, float] = {}
    started = time.perf_counter()
    simulate(served, requests=400, seed=11)
    assert check_drift() == 1  # eager Celery: drift -> retraining -> challenger -> shadow
    timings["drift -> shadow running"] = time.perf_counter() - started
    experiment = Experiment.objects.get(status=ExperimentStatus.RUNNING)
    assert experiment.mode == "shadow"

    simulate(served, requests=200, seed=12)
    evaluate_experiments()
    experiment.refresh_from_db()
    assert experiment.mode == "canary", experiment.statistics
    timings["shadow verdict"] = time.perf_counter() - started

    simulate(served, requests=60, seed=13)
    evaluate_experiments()
    experiment.refresh_from_db()
    assert experiment.canary_step == 1, experiment.statistics
    assert RoutingPolicy.objects.get(model=experiment.model).challenger_percent == 100.0

    summary = simulate(served, requests=40, seed=14)
    evaluate_experiments()
    experiment.refresh_from_db()
    timings["promoted"] = time.perf_counter() - started

    assert experiment.status == ExperimentStatus.PROMOTED, experiment.statistics
    assert "40 ok" in summary
    experiment.challenger.refresh_from_db()
    assert experiment.challenger.stage == "production"
    print("loop timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
