"""Django admin: upload form, actions, history, and the Data scientists group."""

from __future__ import annotations

import importlib
import io

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client

from models_registry import services
from models_registry.models import AuditAction, AuditEvent, ModelAlias, ModelVersion
from tests.registry_support import (
    DATA_SCIENTISTS,
    data_scientists_group_ensure,
    make_data_scientist,
    onnx_with_external_data,
    stored_files,
    variant_bytes,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

CHANGELIST = "/admin/models_registry/modelversion/"
UPLOAD = "/admin/models_registry/modelversion/add/"


@pytest.fixture
def scientist_client(django_user_model) -> Client:
    user = make_data_scientist(django_user_model)
    user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(django_user_model) -> Client:
    """Staff with view permissions only: what everyone outside the group gets."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(
        username="ops", password="pw-ops-12345", is_staff=True
    )
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="models_registry", codename__startswith="view_"
        )
    )
    client = Client()
    client.force_login(user)
    return client


def _onnx(content: bytes, name: str = "model.onnx") -> SimpleUploadedFile:
    # The content type says nothing true: the check must read the bytes.
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def test_system_checks_pass() -> None:
    call_command("check")


def test_migration_creates_the_data_scientists_group() -> None:
    Group.objects.filter(name=DATA_SCIENTISTS).delete()

    data_scientists_group_ensure()

    codenames = set(
        Group.objects.get(name=DATA_SCIENTISTS).permissions.values_list("codename", flat=True)
    )
    assert {"add_modelversion", "change_modelversion", "view_auditevent"} <= codenames
    assert "delete_modelversion" not in codenames
    assert "add_auditevent" not in codenames
    migration = importlib.import_module("models_registry.migrations.0002_data_scientists_group")
    assert migration.GROUP == DATA_SCIENTISTS


def test_upload_through_the_admin_form(scientist_client, tiny_onnx_model) -> None:
    response = scientist_client.post(
        UPLOAD,
        {
            "model_name": "risk",
            "file": _onnx(tiny_onnx_model.read_bytes(), "any-name.bin"),
            "version": "",
            "stage": "staging",
            "alias": "challenger",
            "reference": SimpleUploadedFile("ref.csv", b"x1,x2,x3\n1,2,3\n"),
            "description": "first try",
        },
    )

    version = ModelVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"].endswith(f"/modelversion/{version.pk}/change/")
    assert (version.model.name, version.version, version.stage) == ("risk", "1", "staging")
    assert version.reference_rows == 1
    assert ModelAlias.objects.get().alias == "challenger"
    assert AuditEvent.objects.get(action=AuditAction.UPLOAD).actor_name == "ds"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"just some text", "not an ONNX model"),
        (onnx_with_external_data("../../etc/passwd"), "external data"),
    ],
)
def test_admin_upload_refusals_show_on_the_form(
    scientist_client, media, content: bytes, message: str
) -> None:
    response = scientist_client.post(
        UPLOAD, {"model_name": "risk", "file": _onnx(content), "stage": "dev"}
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ModelVersion.objects.exists()
    assert stored_files(media) == []


def test_admin_upload_over_the_limit(settings, scientist_client, tiny_onnx_model, media) -> None:
    settings.PHOENIX_MODEL_MAX_BYTES = 64

    response = scientist_client.post(
        UPLOAD,
        {"model_name": "risk", "file": _onnx(tiny_onnx_model.read_bytes()), "stage": "dev"},
    )

    assert "larger than the limit of 64 bytes" in response.content.decode()
    assert stored_files(media) == []


def test_change_page_shows_signature_and_sha256_read_only(
    scientist_client, tiny_onnx_model
) -> None:
    version = services.model_version_register(model_name="risk", file=tiny_onnx_model)

    page = scientist_client.get(f"{CHANGELIST}{version.pk}/change/").content.decode()

    assert version.sha256 in page
    assert 'name="sha256"' not in page
    assert 'name="stage"' not in page
    assert "float32" in page


def _act(client: Client, action: str, *versions: ModelVersion):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [v.pk for v in versions]},
        follow=True,
    )


def test_admin_actions_promote_alias_and_archive(scientist_client, tiny_onnx_model) -> None:
    v1 = services.model_version_register(
        model_name="risk", file=tiny_onnx_model, stage="production"
    )
    v2 = services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(tiny_onnx_model, "2"))
    )

    _act(scientist_client, "promote_to_staging", v2)
    _act(scientist_client, "set_as_challenger", v2)
    _act(scientist_client, "promote_to_production", v2)
    _act(scientist_client, "set_as_champion", v2)

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.stage, v2.stage) == ("archived", "production")
    assert set(v2.aliases.values_list("alias", flat=True)) == {"champion", "challenger"}

    _act(scientist_client, "archive", v2)
    v2.refresh_from_db()
    assert v2.stage == "archived"
    assert not ModelAlias.objects.exists()


def test_admin_action_refusals_are_messages(scientist_client, tiny_onnx_model) -> None:
    v1 = services.model_version_register(model_name="risk", file=tiny_onnx_model)
    v2 = services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(tiny_onnx_model, "2"))
    )

    illegal = _act(scientist_client, "promote_to_production", v1).content.decode()
    two = _act(scientist_client, "promote_to_production", v1, v2).content.decode()

    assert "cannot move from dev to production" in illegal
    assert "Select exactly one version" in two
    assert set(ModelVersion.objects.values_list("stage", flat=True)) == {"dev"}


def test_history_view_lists_the_audit_log(scientist_client, tiny_onnx_model) -> None:
    version = services.model_version_register(
        model_name="risk", file=tiny_onnx_model, stage="staging"
    )
    _act(scientist_client, "promote_to_production", version)

    page = scientist_client.get(f"{CHANGELIST}{version.pk}/history/").content.decode()
    model_page = scientist_client.get(
        f"/admin/models_registry/registeredmodel/{version.model.pk}/history/"
    ).content.decode()

    assert 'id="audit-history"' in page
    assert "Stage change" in page
    assert "production" in page
    assert ">ds<" in page
    assert "Upload" in model_page


def test_staff_outside_the_group_may_only_view(staff_client, tiny_onnx_model) -> None:
    version = services.model_version_register(
        model_name="risk", file=tiny_onnx_model, stage="staging"
    )

    listing = staff_client.get(CHANGELIST)
    upload = staff_client.get(UPLOAD)
    posted = staff_client.post(
        UPLOAD,
        {"model_name": "x", "file": _onnx(variant_bytes(tiny_onnx_model, "2")), "stage": "dev"},
    )
    promote = _act(staff_client, "promote_to_production", version)

    assert listing.status_code == 200
    assert upload.status_code == 403
    assert posted.status_code == 403
    version.refresh_from_db()
    assert version.stage == "staging"
    assert ModelVersion.objects.count() == 1
    assert promote.status_code == 200  # the action is not offered; nothing moved


def test_admin_delete_goes_through_the_service(
    scientist_client, django_user_model, tiny_onnx_model
) -> None:
    from django.contrib.auth.models import Permission

    version = services.model_version_register(model_name="risk", file=tiny_onnx_model)
    user = django_user_model.objects.get(username="ds")
    user.user_permissions.add(Permission.objects.get(codename="delete_modelversion"))

    response = scientist_client.post(
        f"{CHANGELIST}{version.pk}/delete/", {"post": "yes"}, follow=True
    )

    assert response.status_code == 200
    assert not ModelVersion.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.DELETE, actor_name="ds").exists()


def test_audit_log_and_aliases_are_listed_read_only(scientist_client, tiny_onnx_model) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model, alias="champion")

    audit = scientist_client.get("/admin/models_registry/auditevent/")
    aliases = scientist_client.get("/admin/models_registry/modelalias/")
    add_audit = scientist_client.get("/admin/models_registry/auditevent/add/")

    assert audit.status_code == 200
    assert "risk" in audit.content.decode()
    assert aliases.status_code == 200
    assert "champion" in aliases.content.decode()
    assert add_audit.status_code == 403
