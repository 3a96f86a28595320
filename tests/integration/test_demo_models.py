"""The demo models are really trained, registered, and score as recorded."""

from __future__ import annotations

from typing import Any

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


# --- house prices and support tickets --------------------------------------------------

DEMO_ROWS = 1500


def _trained(name: str) -> dict[str, ModelVersion]:
    call_command("train_demo_models", rows=DEMO_ROWS, reference_rows=500, models=[name])
    versions = ModelVersion.objects.filter(model__name=name).prefetch_related("aliases")
    return {alias.alias: v for v in versions for alias in v.aliases.all()}


def _holdout(name: str) -> tuple[Any, Any, Any]:
    """(evaluate, X_test, y_test) of a demo, drawn again from its seed."""
    from phoenix.demo import house_prices, support_tickets

    if name == house_prices.MODEL_NAME:
        X, y, _ = house_prices.generate_houses(n=DEMO_ROWS, seed=house_prices.DEFAULT_SEED)
        evaluate: Any = house_prices.evaluate_onnx
    else:
        X, y, _ = support_tickets.generate_tickets(n=DEMO_ROWS, seed=support_tickets.DEFAULT_SEED)
        evaluate = support_tickets.evaluate_onnx
    cut = int(DEMO_ROWS * 0.8)
    return evaluate, X[cut:], y[cut:]


@pytest.mark.parametrize(
    ("name", "recipe", "signature_input"),
    [
        (
            "house-prices",
            "demo.house_prices",
            {"name": "X", "dtype": "float32", "shape": [None, 6]},
        ),
        (
            "support-tickets",
            "demo.support_tickets",
            {"name": "text", "dtype": "string", "shape": [None, 1]},
        ),
    ],
)
def test_new_demos_register_champion_challenger_reference_and_holdout_metrics(
    db: None, name: str, recipe: str, signature_input: dict[str, Any]
) -> None:
    versions = _trained(name)

    champion, challenger = versions["champion"], versions["challenger"]
    assert (champion.stage, challenger.stage) == ("production", "staging")
    assert champion.model.retraining_recipe == recipe
    assert champion.signature["inputs"] == [signature_input]
    assert champion.reference_rows == challenger.reference_rows == 500
    for version in (champion, challenger):
        assert version.metrics["holdout_rows"] == DEMO_ROWS - int(DEMO_ROWS * 0.8)


@pytest.mark.parametrize("name", ["house-prices", "support-tickets"])
def test_new_demos_reproduce_their_recorded_metrics_from_the_seed(db: None, name: str) -> None:
    versions = _trained(name)
    evaluate, X_test, y_test = _holdout(name)

    for version in versions.values():
        with version.file.open("rb") as f:
            assert evaluate(f.read(), X_test, y_test) == version.metrics
    # Training again from the seed gives the same weights: nothing new is registered.
    call_command("train_demo_models", rows=DEMO_ROWS, reference_rows=500, models=[name])
    assert ModelVersion.objects.filter(model__name=name).count() == 2


def test_house_prices_metrics_are_regression_metrics_and_the_trees_win(db: None) -> None:
    versions = _trained("house-prices")

    champion, challenger = versions["champion"].metrics, versions["challenger"].metrics
    assert set(champion) == {"mae", "rmse", "r2", "holdout_rows"}
    assert 0.5 < champion["r2"] < challenger["r2"] < 1.0
    assert challenger["mae"] < champion["mae"]
    assert challenger["rmse"] < champion["rmse"]


def test_support_tickets_classify_well_above_chance(db: None) -> None:
    versions = _trained("support-tickets")

    for version in versions.values():
        assert version.metrics["accuracy"] > 0.8  # four teams: chance is 0.25
        assert 0.0 < version.metrics["log_loss"] < 1.0


def test_dashboards_show_the_new_demos(db: None) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    _trained("house-prices")
    _trained("support-tickets")
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password="pw-1-phoenix"))

    overview = client.get("/")
    assert overview.status_code == 200
    for name in ("house-prices", "support-tickets"):
        assert name in overview.content.decode()
        page = client.get(f"/models/{name}/")
        assert page.status_code == 200
        assert name in page.content.decode()
