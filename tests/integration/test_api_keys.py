"""API keys: explicit scope, deletion of their models, the negative cache, expiry and
last use (recorded in batches, not per request), through the real endpoints."""

from __future__ import annotations

import importlib
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from inference import api_key_usage, api_keys, auth
from inference.models import ApiKey
from models_registry.models import RegisteredModel
from models_registry.services import registered_model_delete
from phoenix.exceptions import InvalidInput
from tests.inference_support import onnx_classifier, register

pytestmark = pytest.mark.usefixtures("no_prediction_events", "fresh_inference_state")

ROW = {"x1": 0.5, "x2": -1.0, "x3": 2.0}
ROWS = [[0.5, -1.0, 2.0]]


@pytest.fixture
def models(db: None, tmp_path: Path) -> Path:
    register("credit", onnx_classifier(tmp_path / "credit.onnx"))
    register("other", onnx_classifier(tmp_path / "other.onnx", seed=3))
    return tmp_path


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    return client


def predict(client: APIClient, model: str = "credit", **extra: Any) -> Any:
    return client.post(f"/api/v1/models/{model}/predict", {"features": ROW, **extra}, format="json")


def infer_v2(client: APIClient, model: str = "credit") -> Any:
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": ROWS[0]}]}
    return client.post(f"/v2/models/{model}/infer", body, format="json")


def explain(client: APIClient, model: str = "credit") -> Any:
    return client.post(f"/api/v1/models/{model}/explain", {"features": ROW}, format="json")


def apikey_queries(captured: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "inference_apikey" in q["sql"]]


# --- scope -------------------------------------------------------------------------------


def test_key_whose_models_are_all_deleted_serves_nothing(
    models: Path, django_capture_on_commit_callbacks: Any
) -> None:
    key = api_keys.api_key_create(name="scoped", model_names=["credit"])[1]
    client = _client(key)
    assert predict(client).status_code == 200  # its principal is cached now

    with django_capture_on_commit_callbacks(execute=True):  # the deletion's broadcast
        registered_model_delete(model=RegisteredModel.objects.get(name="credit"))
    # A new model under the old name is not the one the key was given.
    register("credit", onnx_classifier(models / "again.onnx", seed=9))

    for response in (predict(client), infer_v2(client), explain(client), predict(client, "other")):
        assert response.status_code == 403, response.content
    error = predict(client).json()["error"]
    assert "scoped to no model" in error["message"]
    assert error["details"]["key"] == key[:12]


def test_all_models_key_serves_models_registered_later(models: Path) -> None:
    client = _client(api_keys.api_key_create(name="everything", all_models=True)[1])
    register("later", onnx_classifier(models / "later.onnx", seed=2))

    assert predict(client, "later").status_code == 200
    assert infer_v2(client, "other").status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "explicitly"),
        ({"model_names": ["credit"], "all_models": True}, "not both"),
        ({"model_names": ["credit"], "expires_at": timezone.now()}, "past"),
    ],
)
def test_create_refuses_an_implicit_scope_or_a_past_expiry(
    models: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        api_keys.api_key_create(name="k", **kwargs)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "arguments",
    [[], ["--all-models", "--model", "credit"]],
)
def test_create_api_key_command_requires_a_scope(models: Path, arguments: list[str]) -> None:
    with pytest.raises(CommandError, match=r"--model NAME .* or --all-models"):
        call_command("create_api_key", "ci", *arguments, stdout=StringIO())
    assert not ApiKey.objects.exists()


def test_create_api_key_command_scopes(models: Path) -> None:
    out = StringIO()
    call_command("create_api_key", "two", "--model", "credit", "--model", "other", stdout=out)
    call_command("create_api_key", "all", "--all-models", "--expires", "2999-01-01", stdout=out)

    two, every = ApiKey.objects.get(name="two"), ApiKey.objects.get(name="all")
    assert sorted(m.name for m in two.allowed_models.all()) == ["credit", "other"]
    assert not two.all_models
    assert two.expires_at is None
    assert every.all_models
    assert not every.allowed_models.exists()
    assert every.expires_at is not None
    assert every.expires_at.year == 2999
    assert "for credit, other." in out.getvalue()
    assert "for every model, expiring 2999-01-01T00:00:00+00:00." in out.getvalue()


def test_create_api_key_command_refuses_a_bad_expiry(models: Path) -> None:
    with pytest.raises(CommandError, match="ISO 8601"):
        call_command("create_api_key", "k", "--all-models", "--expires", "soon", stdout=StringIO())


def test_data_migration_keeps_old_unscoped_keys_serving_every_model(models: Path) -> None:
    migration = importlib.import_module(
        "inference.migrations.0003_api_key_explicit_scope_expiry_last_used"
    )
    old_unscoped = ApiKey.objects.create(name="old", prefix="phx_old", key_hash="a" * 64)
    scoped = ApiKey.objects.create(name="scoped", prefix="phx_scoped", key_hash="b" * 64)
    scoped.allowed_models.set([RegisteredModel.objects.get(name="credit")])

    migration.empty_scope_means_all_models(apps, None)

    old_unscoped.refresh_from_db()
    scoped.refresh_from_db()
    assert old_unscoped.all_models
    assert not scoped.all_models


# --- the negative cache -----------------------------------------------------------------


def test_repeated_unknown_key_costs_at_most_one_query(
    models: Path, django_capture_on_commit_callbacks: Any
) -> None:
    client = _client("phx_not-a-key-anyone-made")

    with CaptureQueriesContext(connection) as captured:
        statuses = {predict(client).status_code for _ in range(100)}

    assert statuses == {401}
    assert len(apikey_queries(captured)) <= 1
    with django_capture_on_commit_callbacks(execute=True):
        key = api_keys.api_key_create(name="new", all_models=True)[1]
    assert predict(_client(key)).status_code == 200  # at once


def test_negative_cache_is_bounded_and_spares_known_keys(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_UNKNOWN", 5)
    key = api_keys.api_key_create(name="known", all_models=True)[1]
    assert predict(_client(key)).status_code == 200

    for i in range(20):
        assert predict(_client(f"phx_random-{i}")).status_code == 401

    assert len(auth._unknown) == 5
    assert auth.api_key_cached(key) is not None


# --- expiry -----------------------------------------------------------------------------


def test_expired_key_is_401_saying_so(models: Path) -> None:
    api_key, key = api_keys.api_key_create(
        name="short", all_models=True, expires_at=timezone.now() + timedelta(hours=1)
    )
    client = _client(key)
    assert predict(client).status_code == 200
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    auth.api_key_cache_clear()  # what the admin edit's broadcast does

    for response in (predict(client), infer_v2(client), explain(client)):
        assert response.status_code == 401, response.content
    assert "expired at" in predict(client).json()["error"]["message"]


def test_cached_key_stops_working_when_it_expires(models: Path) -> None:
    key = api_keys.api_key_create(
        name="brief", all_models=True, expires_at=timezone.now() + timedelta(seconds=1)
    )[1]
    client = _client(key)
    assert predict(client).status_code == 200
    assert auth.api_key_cached(key) is not None

    deadline = time.monotonic() + 30
    while predict(client).status_code == 200:
        assert time.monotonic() < deadline, "the key never expired"
        time.sleep(0.1)

    assert predict(client).status_code == 401
    assert auth.api_key_cached(key) is None  # the data plane sends it to Django


# --- last use ---------------------------------------------------------------------------


def test_last_use_is_written_in_batches_not_per_request(models: Path) -> None:
    api_key_usage.api_key_usage_flush()  # nothing left over from other tests
    api_key, key = api_keys.api_key_create(name="busy", all_models=True)
    client = _client(key)

    with CaptureQueriesContext(connection) as captured:
        for _ in range(50):
            assert predict(client).status_code == 200

    assert not [q for q in apikey_queries(captured) if q.startswith("UPDATE")]
    api_key.refresh_from_db()
    assert api_key.last_used_at is None
    with CaptureQueriesContext(connection) as flushed:
        assert api_key_usage.api_key_usage_flush() == 1
    assert len(apikey_queries(flushed)) == 1
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    assert abs((timezone.now() - api_key.last_used_at).total_seconds()) < 60
    assert api_key_usage.api_key_usage_flush() == 0


def test_writer_thread_records_last_use(
    transactional_db: None, tmp_path: Path, settings: Any
) -> None:
    register("credit", onnx_classifier(tmp_path / "credit.onnx"))
    api_key, key = api_keys.api_key_create(name="threaded", all_models=True)
    api_key_usage.api_key_usage_stop()
    settings.PHOENIX_API_KEY_USAGE_FLUSH_S = 0.2
    try:
        assert predict(_client(key)).status_code == 200
        deadline = time.monotonic() + 30
        while ApiKey.objects.get(pk=api_key.pk).last_used_at is None:
            assert time.monotonic() < deadline, "the writer thread never wrote"
            time.sleep(0.1)
    finally:
        api_key_usage.api_key_usage_stop()


# --- admin ------------------------------------------------------------------------------


def test_admin_lists_scope_expiry_and_last_use_and_refuses_an_implicit_scope(
    models: Path, client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    api_keys.api_key_create(name="listed", all_models=True)

    listing = client.get("/admin/inference/apikey/")
    refused = client.post("/admin/inference/apikey/add/", {"name": "implicit"})
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/admin/inference/apikey/add/", {"name": "all", "all_models": "on"})

    assert listing.status_code == 200
    for column in ("All models", "Expires at", "Last used at"):
        assert column in listing.content.decode()
    assert refused.status_code == 200
    assert "or tick" in refused.content.decode()
    assert created.status_code == 302
    assert ApiKey.objects.get(name="all").all_models
    assert not ApiKey.objects.filter(name="implicit").exists()
