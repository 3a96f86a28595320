"""The self-healing loop end to end on the demo model, against the real database:
predictions through the API and feedback -> drift -> retraining -> challenger ->
shadow experiment -> canary steps -> promoted, or -> rolled back with an alert."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from inference import api_keys
from inference import events as events_module
from inference.auth import api_key_cache_clear
from inference.events import EventPublisher, PublisherConfig
from inference.models import RoutingPolicy
from inference.session_cache import session_cache
from models_registry.models import Alias, AuditEvent, ModelAlias, ModelVersion
from monitoring.models import Alert, AlertKind, Experiment, ExperimentStatus, RetrainingJob
from monitoring.tasks import check_drift, evaluate_experiments
from phoenix.demo import credit_risk as demo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECIPE = "demo.credit_risk"
SHIFT = {"income": 1.0, "debt": 1.0}


@pytest.fixture(scope="module")
def demo_artifacts() -> dict[str, Any]:
    X, y, names = demo.generate_customers(n=3000, seed=demo.DEFAULT_SEED)
    model_bytes = demo.to_onnx_bytes(demo.train_champion(X, y), names)
    return {"model": model_bytes, "reference": demo.reference_csv(X[:2000], names)}


@pytest.fixture(autouse=True)
def loop_settings(settings: Any, tmp_path: Path) -> Iterator[EventPublisher]:
    settings.PHOENIX_EXPERIMENT_AUTOSTART = [demo.MODEL_NAME]
    settings.PHOENIX_EXPERIMENT_CANARY_STEPS = [50.0, 100.0]
    settings.PHOENIX_EXPERIMENT_STEP_INTERVAL_S = 0
    settings.PHOENIX_EXPERIMENT_STEP_MIN_SAMPLES = 10
    settings.PHOENIX_EXPERIMENT_MIN_SAMPLES = 100
    settings.PHOENIX_RETRAINING_COOLDOWN_S = 0
    cache.clear()
    session_cache.clear()
    api_key_cache_clear()
    publisher = EventPublisher(
        PublisherConfig(
            backend="database",
            topic="inference-events",
            buffer_size=100_000,
            # Written only when the test flushes, on its own thread (see test_experiments).
            batch_size=100_000,
            flush_interval_s=3600,
            journal_dir=tmp_path / "journal",
        )
    )
    previous = events_module.set_publisher(publisher)
    yield publisher
    publisher.stop()
    events_module.set_publisher(previous)
    session_cache.clear()
    api_key_cache_clear()
    cache.clear()


@pytest.fixture
def champion(demo_artifacts: dict[str, Any]) -> ModelVersion:
    from models_registry.services import model_version_register

    return model_version_register(
        model_name=demo.MODEL_NAME,
        file=io.BytesIO(demo_artifacts["model"]),
        filename="champion.onnx",
        stage="production",
        alias="champion",
        reference=io.BytesIO(demo_artifacts["reference"]),
        reference_filename="reference.csv",
        retraining_recipe=RECIPE,
    )


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    key = api_keys.api_key_create(name="loop", all_models=True)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def traffic(
    api: APIClient, publisher: EventPublisher, *, n: int, seed: int, flip_labels: bool
) -> list[str]:
    """``n`` shifted customers scored through the API, then their ground truth as
    feedback (``flip_labels``: the opposite of what the demo generator says)."""
    X, y, names = demo.generate_customers(n=n, seed=seed, shift=SHIFT)
    routes, labels = [], []
    for row, label in zip(X, y, strict=True):
        body = {"features": dict(zip(names, map(float, row), strict=True))}
        response = api.post(f"/api/v1/models/{demo.MODEL_NAME}/predict", body, format="json")
        assert response.status_code == 200, response.content
        routes.append(response.json()["routed_by"])
        labels.append((response.json()["request_id"], int(1 - label if flip_labels else label)))
    publisher.flush()
    for request_id, actual in labels:
        response = api.post(
            f"/api/v1/predictions/{request_id}/feedback", {"actual": actual}, format="json"
        )
        assert response.status_code == 200, response.content
    return routes


def _drift_and_retrain(
    api: APIClient, publisher: EventPublisher, *, flip_labels: bool
) -> tuple[Experiment, float]:
    traffic(api, publisher, n=400, seed=106, flip_labels=flip_labels)
    started = time.perf_counter()
    assert check_drift() == 1  # eager Celery: drift -> retraining -> challenger -> experiment
    seconds = time.perf_counter() - started
    job = RetrainingJob.objects.get()
    assert job.status == "succeeded", job.error
    experiment = Experiment.objects.get(status=ExperimentStatus.RUNNING)
    assert experiment.challenger == job.new_version
    assert experiment.mode == "shadow"
    assert RoutingPolicy.objects.get(model=experiment.model).strategy == "shadow"
    return experiment, seconds


def test_a_changed_world_is_healed_shadow_then_canary_then_promoted(
    api: APIClient, loop_settings: EventPublisher, champion: ModelVersion
) -> None:
    # The meaning of the label changed (the world flipped), and the population shifted:
    # the champion is now mostly wrong; a model retrained on recent feedback is not.
    publisher = loop_settings
    experiment, drift_to_shadow_s = _drift_and_retrain(api, publisher, flip_labels=True)

    routes = traffic(api, publisher, n=150, seed=201, flip_labels=True)
    assert set(routes) == {"shadow:champion"}
    look_started = time.perf_counter()
    evaluate_experiments()  # the beat entry
    look_s = time.perf_counter() - look_started
    experiment.refresh_from_db()
    assert experiment.mode == "canary"
    assert experiment.statistics["primary"]["verdict"] == "better"
    assert RoutingPolicy.objects.get(model=champion.model).challenger_percent == 50.0

    routes = traffic(api, publisher, n=40, seed=202, flip_labels=True)
    assert {"canary:champion", "canary:challenger"} == set(routes)
    evaluate_experiments()
    experiment.refresh_from_db()
    assert experiment.canary_step == 1
    assert RoutingPolicy.objects.get(model=champion.model).challenger_percent == 100.0

    traffic(api, publisher, n=20, seed=203, flip_labels=True)
    evaluate_experiments()

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED, experiment.statistics
    new = experiment.challenger
    new.refresh_from_db()
    assert new.stage == "production"
    assert ModelAlias.objects.get(model=champion.model, alias=Alias.CHAMPION).version == new
    response = api.post(
        f"/api/v1/models/{demo.MODEL_NAME}/predict",
        {"features": dict.fromkeys(demo.FEATURE_NAMES, 0.0)},
        format="json",
    )
    assert response.json()["version"] == new.version
    trail = list(
        AuditEvent.objects.filter(action="experiment", details__experiment=experiment.pk)
        .order_by("id")
        .values_list("to_value", flat=True)
    )
    assert trail[0] == "running"
    assert trail[-1] == "promoted"
    assert not Alert.objects.filter(kind=AlertKind.ROLLBACK).exists()
    print(
        f"drift check -> shadow experiment running: {drift_to_shadow_s:.2f} s; "
        f"shadow look (150 pairs) -> canary: {look_s * 1000:.0f} ms"
    )


def test_a_challenger_retrained_on_corrupted_labels_is_rolled_back_with_an_alert(
    api: APIClient, loop_settings: EventPublisher, champion: ModelVersion
) -> None:
    # Feedback during the drift window was wrong (labels flipped), so the retrained
    # challenger learned the opposite; the true labels that follow expose it.
    publisher = loop_settings
    experiment, _ = _drift_and_retrain(api, publisher, flip_labels=True)

    traffic(api, publisher, n=150, seed=301, flip_labels=False)
    evaluate_experiments()

    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.ROLLED_BACK, experiment.statistics
    assert experiment.statistics["primary"]["verdict"] == "worse"
    assert experiment.statistics["primary"]["interval"][1] < 0
    alert = Alert.objects.get(kind=AlertKind.ROLLBACK)
    assert alert.model_version == experiment.challenger
    assert RoutingPolicy.objects.get(model=champion.model).strategy == "single"
    champion.refresh_from_db()
    assert champion.stage == "production"
    scored = np.array(traffic(api, publisher, n=5, seed=302, flip_labels=False))
    assert set(scored) == {"single:champion"}
