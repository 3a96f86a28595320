"""create_api_key, seed_features, and admin edits reaching the warm caches."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from inference.auth import api_key_authenticate
from inference.feature_store import DatabaseFeatureStore, FeatureStatus
from inference.models import ApiKey, OnlineFeature
from phoenix.exceptions import Unauthenticated
from tests.inference_support import onnx_classifier, register

pytestmark = pytest.mark.usefixtures("no_prediction_events", "fresh_inference_state")

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}


def test_create_api_key_prints_key_alone_on_last_line(
    db: None, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    register("credit", onnx_classifier(tmp_path / "m.onnx"))
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("create_api_key", "ci", "--models", "credit", stdout=out)

    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 2
    key = lines[-1]
    assert key.startswith("phx_")
    assert " " not in key
    principal = api_key_authenticate(key=key)
    assert principal.allowed_models == frozenset({"credit"})
    stored = ApiKey.objects.get()
    assert key not in (stored.key_hash, stored.prefix)  # only a hash is kept


def test_create_api_key_can_label_makes_a_labelling_key(
    db: None, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    register("credit", onnx_classifier(tmp_path / "m.onnx"))
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("create_api_key", "labels", "--models", "credit", "--can-label", stdout=out)
        call_command("create_api_key", "client", "--models", "credit", stdout=StringIO())

    assert "may label" in out.getvalue()
    assert api_key_authenticate(key=out.getvalue().strip().splitlines()[-1]).can_label
    assert dict(ApiKey.objects.values_list("name", "can_label")) == {
        "labels": True,
        "client": False,
    }


def test_create_api_key_refuses_unknown_model(db: None) -> None:
    with pytest.raises(CommandError, match="nope"):
        call_command("create_api_key", "ci", "--models", "nope", stdout=StringIO())
    assert not ApiKey.objects.exists()


def test_seed_features_from_csv(db: None, tmp_path: Path, settings: Any) -> None:
    settings.PHOENIX_FEATURE_STORE = "database"
    csv = tmp_path / "f.csv"
    csv.write_text("entity_id,x1,x2,x3\ncust_1,1,2,3\ncust_2,4,,6\n")

    call_command("seed_features", str(csv), stdout=StringIO())

    lookup = DatabaseFeatureStore(ttl_s=60).get("cust_2", ["x1", "x2", "x3"])
    assert lookup.values == {"x1": 4.0, "x3": 6.0}
    assert lookup.status["x2"] is FeatureStatus.NOT_FOUND
    assert OnlineFeature.objects.filter(entity_id="cust_1").count() == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [("id,x1\n1,2\n", "entity_id column"), ("entity_id,x1\ncust_1,abc\n", "not a number")],
)
def test_seed_features_rejects_bad_csv(
    db: None, tmp_path: Path, settings: Any, content: str, message: str
) -> None:
    settings.PHOENIX_FEATURE_STORE = "database"
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("seed_features", str(csv), stdout=StringIO())


def test_seed_features_demo_fills_demo_customers(db: None, settings: Any) -> None:
    from phoenix.demo.credit_risk import generate_customers

    settings.PHOENIX_FEATURE_STORE = "database"
    call_command("seed_features", "--demo", "--rows", "25", "--seed", "3", stdout=StringIO())

    x, _, names = generate_customers(n=25, seed=3)
    lookup = DatabaseFeatureStore(ttl_s=60).get("cust_24", names)
    assert lookup.values == pytest.approx(dict(zip(names, x[24].tolist(), strict=True)))


def test_seed_features_without_the_demo_app_takes_a_csv_only(db: None, tmp_path: Path) -> None:
    from inference.management.commands.seed_features import Command as ProductCommand

    csv = tmp_path / "features.csv"
    csv.write_text("entity_id,x1\ncust_1,2\n")

    with pytest.raises(CommandError, match="Give a CSV file"):
        call_command(ProductCommand(), stdout=StringIO())
    with pytest.raises(CommandError, match="unrecognized arguments: --demo"):
        call_command(ProductCommand(), "--demo", stdout=StringIO())
    call_command(ProductCommand(), str(csv), stdout=StringIO())
    assert OnlineFeature.objects.filter(entity_id="cust_1").exists()


def test_routing_policy_admin_save_reaches_warm_cache(
    admin_client: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.inference_support import onnx_classifier as build

    champion = register("credit", build(tmp_path / "a.onnx"))
    challenger = register(
        "credit", build(tmp_path / "b.onnx", flip=True), stage="staging", alias="challenger"
    )
    from inference.api_keys import api_key_create

    api = APIClient()
    api.credentials(HTTP_X_API_KEY=api_key_create(name="a", all_models=True)[1])
    url = "/api/v1/models/credit/predict"
    assert api.post(url, {"features": ROW}, format="json").json()["version"] == champion.version

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/inference/routingpolicy/add/",
            {
                "model": champion.model.pk,
                "strategy": "canary",
                "challenger_percent": "100",
                "seed": "s",
            },
        )
    assert response.status_code == 302, response.content

    assert api.post(url, {"features": ROW}, format="json").json()["version"] == challenger.version


def test_api_key_admin_revoke_action_reaches_warm_cache(
    admin_client: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    from inference.api_keys import api_key_create

    register("credit", onnx_classifier(tmp_path / "a.onnx"))
    api_key, key = api_key_create(name="a", all_models=True)
    assert api_key_authenticate(key=key).id == api_key.pk  # cached now

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/inference/apikey/",
            {"action": "revoke", "_selected_action": [api_key.pk]},
        )

    with pytest.raises(Unauthenticated):
        api_key_authenticate(key=key)
