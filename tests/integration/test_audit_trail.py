"""The audit trail beyond the registry: routing policies, API keys, sign-ins, and who reads it."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from inference.api_keys import api_key_create, api_key_revoke
from inference.models import ApiKey, RoutingPolicy
from models_registry.models import AuditAction, AuditEvent, RegisteredModel
from tests.registry_support import RELEASE_MANAGERS, make_member

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_inference_state")]

AUDIT_LIST = "/admin/models_registry/auditevent/"


@pytest.fixture
def credit() -> RegisteredModel:
    return RegisteredModel.objects.create(name="credit")


def test_routing_policy_changes_in_admin_are_audited_field_by_field(
    admin_client: Any, admin_user: Any, credit: RegisteredModel
) -> None:
    body = {"model": credit.pk, "strategy": "canary", "challenger_percent": "10", "seed": "s"}
    assert admin_client.post("/admin/inference/routingpolicy/add/", body).status_code == 302
    policy = RoutingPolicy.objects.get()
    change = f"/admin/inference/routingpolicy/{policy.pk}/change/"
    assert admin_client.post(change, {**body, "challenger_percent": "50"}).status_code == 302
    admin_client.post(f"/admin/inference/routingpolicy/{policy.pk}/delete/", {"post": "yes"})

    created, changed, deleted = AuditEvent.objects.filter(action=AuditAction.ROUTING).order_by("id")
    assert (created.model_name, created.from_value, created.to_value) == (
        "credit",
        "",
        "canary 10%",
    )
    assert created.details["created"] is True
    assert (changed.from_value, changed.to_value) == ("canary 10%", "canary 50%")
    assert changed.details["changed"] == {"challenger_percent": [10.0, 50.0]}
    assert (deleted.from_value, deleted.to_value) == ("canary 50%", "deleted")
    assert {e.actor for e in (created, changed, deleted)} == {admin_user}


def test_saving_an_unchanged_policy_writes_no_entry(credit: RegisteredModel) -> None:
    from inference.services import routing_policy_save

    policy = routing_policy_save(policy=RoutingPolicy(model=credit, strategy="ab"))
    routing_policy_save(policy=RoutingPolicy.objects.get(pk=policy.pk))

    assert AuditEvent.objects.filter(action=AuditAction.ROUTING).count() == 1


def test_api_key_creation_revocation_and_admin_edits_are_audited(
    admin_client: Any, admin_user: Any, credit: RegisteredModel
) -> None:
    api_key, secret = api_key_create(name="billing", model_names=["credit"], created_by=admin_user)
    edit = f"/admin/inference/apikey/{api_key.pk}/change/"
    response = admin_client.post(
        edit, {"name": "billing", "allowed_models": [credit.pk], "can_label": "on"}
    )
    assert response.status_code == 302, response.content
    call_command("revoke_api_key", api_key.prefix, stdout=StringIO())
    api_key_revoke(api_key=ApiKey.objects.get(pk=api_key.pk))  # again: nothing to record

    entries = list(AuditEvent.objects.filter(action=AuditAction.API_KEY).order_by("id"))
    assert [e.to_value for e in entries] == ["created", "changed", "revoked"]
    assert entries[0].from_value == f"billing ({api_key.prefix}...)"
    assert entries[0].details["models"] == ["credit"]
    assert entries[0].actor == admin_user
    assert entries[1].details["fields"] == ["can_label"]
    assert entries[1].details["can_label"] is True
    assert entries[2].actor is None  # manage.py: the system
    assert entries[2].details["revoked_at"] is not None
    assert not [e for e in entries if secret in str(e.details)]  # never the key itself


def test_a_deleted_api_key_leaves_an_entry(admin_client: Any) -> None:
    api_key, _ = api_key_create(name="old", all_models=True)

    admin_client.post(f"/admin/inference/apikey/{api_key.pk}/delete/", {"post": "yes"})

    assert not ApiKey.objects.exists()
    entry = AuditEvent.objects.filter(action=AuditAction.API_KEY).latest("id")
    assert (entry.to_value, entry.details["models"]) == ("deleted", ["*"])


def test_sign_ins_are_audited_and_failed_ones_are_not_entries() -> None:
    get_user_model().objects.create_user("olivia", password="pw-olivia-1")
    client = Client()

    client.post("/accounts/login/", {"username": "olivia", "password": "wrong"})
    response = client.post("/accounts/login/", {"username": "olivia", "password": "pw-olivia-1"})

    assert response.status_code == 302
    entry = AuditEvent.objects.get(action=AuditAction.LOGIN)
    assert (entry.actor_name, entry.model_name, entry.to_value) == ("olivia", "", "signed in")
    assert entry.details == {"address": "127.0.0.1", "path": "/accounts/login/"}


def test_release_managers_read_the_audit_trail_in_admin_and_change_nothing(
    credit: RegisteredModel,
) -> None:
    api_key_create(name="billing", model_names=["credit"])
    manager = make_member(get_user_model(), "rita", RELEASE_MANAGERS, is_staff=True)
    outsider = get_user_model().objects.create_user("sam", password="pw", is_staff=True)
    client, other = Client(), Client()
    client.force_login(manager)
    other.force_login(outsider)

    listing = client.get(AUDIT_LIST)
    entry = AuditEvent.objects.get(action=AuditAction.API_KEY)

    assert listing.status_code == 200
    assert "billing" in listing.content.decode()
    assert client.get(f"{AUDIT_LIST}{entry.pk}/change/").status_code == 200  # read-only view
    assert client.post(f"{AUDIT_LIST}{entry.pk}/change/", {"to_value": "x"}).status_code == 403
    assert client.get(f"{AUDIT_LIST}add/").status_code == 403
    assert client.post(f"{AUDIT_LIST}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=entry.pk).to_value == "created"
    assert other.get(AUDIT_LIST).status_code == 403
