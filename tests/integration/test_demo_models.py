"""The demo models are really trained, registered, and score as recorded."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from django.core.management import call_command

from models_registry.models import ModelVersion
from phoenix.demo import credit_risk as demo

ROWS = 3000


@pytest.fixture
def demo_versions(db: None) -> dict[str, ModelVersion]:
    call_command("train_demo_models", rows=ROWS, reference_rows=1000)
    versions = ModelVersion.objects.filter(model__name=demo.MODEL_NAME).prefetch_related("aliases")
    return {alias.alias: v for v in versions for alias in v.aliases.all()}


def test_champion_in_production_and_challenger_in_staging(
    demo_versions: dict[str, ModelVersion],
) -> None:
    assert demo_versions["champion"].stage == "production"
    assert demo_versions["challenger"].stage == "staging"
    assert demo_versions["champion"].model.retraining_recipe == ("demo.credit_risk")
    assert demo_versions["champion"].feature_names == demo.FEATURE_NAMES
    assert demo_versions["champion"].reference_rows == 1000


@pytest.mark.parametrize("alias", ["champion", "challenger"])
def test_stored_model_scores_the_holdout_at_the_recorded_accuracy(
    demo_versions: dict[str, ModelVersion], alias: str
) -> None:
    version = demo_versions[alias]
    X, y, _ = demo.generate_customers(n=ROWS, seed=demo.DEFAULT_SEED)
    X_test, y_test = X[int(ROWS * 0.8) :], y[int(ROWS * 0.8) :]

    with version.file.open("rb") as f:
        session = ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
    labels, _proba = session.run(None, {session.get_inputs()[0].name: X_test.astype(np.float32)})
    accuracy = float((np.asarray(labels) == y_test).mean())

    assert accuracy == pytest.approx(version.metrics["accuracy"], abs=1e-6)
    # Better than always answering "no default" (the majority class).
    assert accuracy > 1 - y_test.mean()


def test_training_again_registers_nothing_new(demo_versions: dict[str, ModelVersion]) -> None:
    call_command("train_demo_models", rows=ROWS, reference_rows=1000)
    assert ModelVersion.objects.filter(model__name=demo.MODEL_NAME).count() == 2


def test_models_stored_with_the_old_recipe_path_name_the_registered_recipe(db: None) -> None:
    import importlib

    from django.apps import apps

    from models_registry.models import RegisteredModel

    migration = importlib.import_module("phoenix.demo.migrations.0001_credit_risk_recipe_name")
    old = RegisteredModel.objects.create(name="old", retraining_recipe=migration.OLD)
    own = RegisteredModel.objects.create(name="own", retraining_recipe="my.recipes.retrain")

    migration.rename(apps, None)

    old.refresh_from_db()
    own.refresh_from_db()
    assert old.retraining_recipe == "demo.credit_risk"
    assert own.retraining_recipe == "my.recipes.retrain"
