"""Experiments over REST and in admin: the same services, the same roles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from inference.models import RoutingPolicy
from models_registry.models import AuditEvent, ModelVersion
from monitoring.models import Experiment, ExperimentStatus
from tests.inference_support import onnx_classifier, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def arms(tmp_path: Path, settings: Any) -> tuple[ModelVersion, ModelVersion]:
    settings.MEDIA_ROOT = tmp_path / "media"
    champion = register("credit", onnx_classifier(tmp_path / "a.onnx"), alias="champion")
    challenger = register(
        "credit", onnx_classifier(tmp_path / "b.onnx", flip=True), stage="staging"
    )
    return champion, challenger


def client_in(group: str | None, username: str = "u", **extra: Any) -> APIClient:
    user = User.objects.create_user(username, password="pw-1-phoenix", **extra)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    client = APIClient()
    client.force_login(user)
    return client


def test_create_start_read_and_stop_over_rest(arms: Any) -> None:
    operator = client_in("Operators")

    created = operator.post(
        "/api/v1/experiments",
        {"model": "credit", "challenger": "2", "mode": "canary", "canary_steps": [5, 50, 100],
         "start": True},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "running"
    assert body["champion"] == "1"
    assert RoutingPolicy.objects.get().challenger_percent == 5.0

    looked = operator.post(f"/api/v1/experiments/{body['id']}/evaluate", {}, format="json")
    detail = operator.get(f"/api/v1/experiments/{body['id']}")
    listed = operator.get("/api/v1/experiments?status=running")
    stopped = operator.post(
        f"/api/v1/experiments/{body['id']}/stop", {"reason": "done"}, format="json"
    )

    assert looked.status_code == 200
    assert detail.json()["statistics"]["primary"]["verdict"] == "insufficient_data"
    assert [e["id"] for e in listed.json()] == [body["id"]]
    assert stopped.json()["status"] == "stopped"
    assert stopped.json()["reason"] == "done"
    assert stopped.json()["decided_by"] == "u"


def test_promote_needs_the_release_role_and_is_audited(arms: Any) -> None:
    _, challenger = arms
    operator = client_in("Operators", "op")
    scientist = client_in("Data scientists", "ds")
    created = operator.post(
        "/api/v1/experiments",
        {"model": "credit", "challenger": challenger.version, "mode": "ab", "start": True},
        format="json",
    ).json()

    refused = operator.post(f"/api/v1/experiments/{created['id']}/promote", {}, format="json")
    promoted = scientist.post(
        f"/api/v1/experiments/{created['id']}/promote", {"reason": "better"}, format="json"
    )
    again = scientist.post(f"/api/v1/experiments/{created['id']}/promote", {}, format="json")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert promoted.status_code == 200, promoted.content
    assert promoted.json()["status"] == "promoted"
    assert again.status_code == 409
    challenger.refresh_from_db()
    assert challenger.stage == "production"
    audit = AuditEvent.objects.get(action="experiment", to_value="promoted")
    assert (audit.actor_name, audit.details["reason"]) == ("ds", "better")


def test_rollback_over_rest_raises_the_alert(arms: Any) -> None:
    operator = client_in("Operators")
    created = operator.post(
        "/api/v1/experiments",
        {"model": "credit", "challenger": "2", "mode": "shadow", "start": True},
        format="json",
    ).json()

    rolled = operator.post(
        f"/api/v1/experiments/{created['id']}/rollback", {"reason": "bad"}, format="json"
    )

    assert rolled.json()["status"] == "rolled_back"
    assert RoutingPolicy.objects.get().strategy == "single"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "credit", "challenger": "2", "mode": "blue"}, 400, "invalid_input"),
        ({"model": "nope", "challenger": "2", "mode": "ab"}, 404, None),
        ({"model": "credit", "challenger": "9", "mode": "ab"}, 404, None),
        ({"model": "credit", "challenger": "1", "mode": "ab"}, 400, "invalid_input"),
        ({"model": "credit", "challenger": "2", "mode": "canary", "canary_steps": [50, 5]},
         400, "invalid_input"),
    ],
)  # fmt: skip
def test_bad_requests_are_json_errors(
    arms: Any, body: dict[str, Any], status: int, code: str | None
) -> None:
    response = client_in("Operators").post("/api/v1/experiments", body, format="json")

    assert response.status_code == status, response.content
    if code:
        assert response.json()["error"]["code"] == code


def test_second_running_experiment_is_a_409(arms: Any) -> None:
    operator = client_in("Operators")
    body = {"model": "credit", "challenger": "2", "mode": "ab", "start": True}
    assert operator.post("/api/v1/experiments", body, format="json").status_code == 201

    second = operator.post("/api/v1/experiments", body, format="json")

    assert second.status_code == 409
    assert Experiment.objects.filter(status="running").count() == 1


def test_unknown_experiment_is_404_and_strangers_are_refused(arms: Any) -> None:
    assert client_in("Operators").get("/api/v1/experiments/12345").status_code == 404
    assert client_in(None, "x").get("/api/v1/experiments").status_code == 403
    assert APIClient().get("/api/v1/experiments").status_code in (401, 403)


def test_admin_actions_call_the_service(arms: Any) -> None:
    champion, challenger = arms
    from monitoring.services import experiments as service

    experiment = service.experiment_create(model=champion.model, challenger=challenger, mode="ab")
    service.experiment_start(experiment_id=experiment.pk)
    admin = client_in(None, "root", is_superuser=True, is_staff=True)

    listing = admin.get("/admin/monitoring/experiment/")
    response = admin.post(
        "/admin/monitoring/experiment/",
        {"action": "promote", "_selected_action": [experiment.pk]},
    )

    assert listing.status_code == 200
    assert response.status_code == 302
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.PROMOTED
    assert experiment.reason == "promoted in admin"
    assert admin.get(f"/admin/monitoring/experiment/{experiment.pk}/delete/").status_code == 403
