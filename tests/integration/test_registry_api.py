"""The registry's REST API: uploads, moves, reads, errors and who may do what."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from rest_framework.test import APIClient

from models_registry import services
from models_registry.models import AuditAction, AuditEvent, ModelVersion
from tests.registry_support import (
    EXPAND_MODEL,
    make_data_scientist,
    onnx_with_external_data,
    stored_files,
    variant_bytes,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


@pytest.fixture
def scientist(django_user_model):
    return make_data_scientist(django_user_model)


@pytest.fixture
def scientist_client(scientist) -> APIClient:
    client = APIClient()
    client.force_authenticate(scientist)
    return client


@pytest.fixture
def viewer_client(django_user_model) -> APIClient:
    viewer = django_user_model.objects.create_user(
        username="viewer", password="pw-viewer-12345", is_staff=True
    )
    client = APIClient()
    client.force_authenticate(viewer)
    return client


def _file(content: bytes, name: str = "model.onnx") -> io.BytesIO:
    upload = io.BytesIO(content)
    upload.name = name
    return upload


def _upload(client: APIClient, content: bytes, name: str = "risk", **fields: object):
    return client.post(
        f"/api/v1/models/{name}/versions",
        {"file": _file(content), **fields},
        format="multipart",
    )


def test_upload_registers_a_version(scientist_client, scientist, tiny_onnx_model) -> None:
    response = _upload(
        scientist_client,
        tiny_onnx_model.read_bytes(),
        stage="staging",
        alias="challenger",
        reference=_file(b"x1,x2,x3\n1,2,3\n4,5,6\n", "train.csv"),
        metrics='{"auc": 0.91}',
        tags='{"team": "risk"}',
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["model"] == "risk"
    assert body["version"] == "1"
    assert body["stage"] == "staging"
    assert body["aliases"] == ["challenger"]
    assert body["feature_names"] == ["x1", "x2", "x3"]
    assert body["signature"]["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 3]}]
    assert body["reference_rows"] == 2
    assert body["metrics"] == {"auc": 0.91}
    assert body["tags"] == {"team": "risk"}
    assert body["created_by"] == "ds"
    assert AuditEvent.objects.get(action=AuditAction.UPLOAD).actor == scientist


def test_upload_of_a_foreign_model_reports_its_signature(scientist_client) -> None:
    response = _upload(scientist_client, EXPAND_MODEL.read_bytes(), name="expand")

    assert response.status_code == 201
    assert [(i["name"], i["dtype"]) for i in response.json()["signature"]["inputs"]] == [
        ("X", "float32"),
        ("shape", "int64"),
    ]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"I am a text file, not a model", 400, "invalid_model_file"),
        (onnx_with_external_data("../../etc/passwd"), 400, "invalid_model_file"),
    ],
)
def test_bad_files_are_refused_with_the_error_shape(
    scientist_client, media, content: bytes, status: int, code: str
) -> None:
    response = _upload(scientist_client, content)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert stored_files(media) == []


def test_truncated_model_is_refused(scientist_client, tiny_onnx_model, media) -> None:
    data = tiny_onnx_model.read_bytes()

    response = _upload(scientist_client, data[: len(data) - 40])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_model_file"
    assert not ModelVersion.objects.exists()


def test_oversized_upload_is_413(settings, scientist_client, tiny_onnx_model, media) -> None:
    settings.PHOENIX_MODEL_MAX_BYTES = 200

    response = _upload(scientist_client, tiny_onnx_model.read_bytes())

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "model_too_large"
    assert stored_files(media) == []


def test_duplicate_upload_is_409(scientist_client, tiny_onnx_model) -> None:
    assert _upload(scientist_client, tiny_onnx_model.read_bytes()).status_code == 201

    response = _upload(scientist_client, tiny_onnx_model.read_bytes())

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "duplicate_model"


def test_missing_file_is_400(scientist_client) -> None:
    response = scientist_client.post("/api/v1/models/risk/versions", {}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_stage_moves_and_conflicts(scientist_client, tiny_onnx_model) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model, stage="production")
    services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(tiny_onnx_model, "2"))
    )

    refused = scientist_client.post(
        "/api/v1/models/risk/versions/2/stage", {"stage": "production"}, format="json"
    )
    staged = scientist_client.post(
        "/api/v1/models/risk/versions/2/stage", {"stage": "staging"}, format="json"
    )
    promoted = scientist_client.post(
        "/api/v1/models/risk/versions/2/stage", {"stage": "production"}, format="json"
    )

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "stage_conflict"
    assert refused.json()["error"]["details"]["allowed"] == ["staging", "archived"]
    assert staged.status_code == 200
    assert promoted.status_code == 200
    assert promoted.json()["stage"] == "production"
    previous = scientist_client.get("/api/v1/models/risk/versions/1").json()
    assert previous["stage"] == "archived"


def test_alias_put(scientist_client, tiny_onnx_model) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model, stage="staging")

    response = scientist_client.put(
        "/api/v1/models/risk/aliases/champion", {"version": "1"}, format="json"
    )
    unknown = scientist_client.put(
        "/api/v1/models/risk/aliases/hero", {"version": "1"}, format="json"
    )
    missing = scientist_client.put(
        "/api/v1/models/risk/aliases/champion", {"version": "7"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["alias"] == "champion"
    assert response.json()["version"] == "1"
    assert unknown.status_code == 400
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_version_not_found"


def test_reads(viewer_client, tiny_onnx_model) -> None:
    services.model_version_register(
        model_name="risk", file=tiny_onnx_model, stage="production", alias="champion"
    )
    services.model_version_register(
        model_name="risk", file=io.BytesIO(variant_bytes(tiny_onnx_model, "2"))
    )

    listing = viewer_client.get("/api/v1/models")
    detail = viewer_client.get("/api/v1/models/risk")
    version = viewer_client.get("/api/v1/models/risk/versions/1")

    assert listing.status_code == 200
    assert listing.json()[0]["name"] == "risk"
    assert listing.json()[0]["production_version"] == "1"
    assert listing.json()[0]["aliases"] == {"champion": "1"}
    assert listing.json()[0]["latest_version"] == "2"
    assert [v["version"] for v in detail.json()["versions"]] == ["2", "1"]
    assert version.json()["sha256"] == hashlib.sha256(tiny_onnx_model.read_bytes()).hexdigest()
    assert viewer_client.get("/api/v1/models/nope").status_code == 404
    assert viewer_client.get("/api/v1/models/risk/versions/9").status_code == 404


def test_anonymous_cannot_read_or_write(tiny_onnx_model) -> None:
    client = APIClient()

    assert client.get("/api/v1/models").status_code == 401
    response = _upload(client, tiny_onnx_model.read_bytes())
    assert response.status_code == 401
    assert not ModelVersion.objects.exists()


def test_people_who_are_not_data_scientists_cannot_upload_or_promote(
    viewer_client, tiny_onnx_model
) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model, stage="staging")

    upload = _upload(viewer_client, variant_bytes(tiny_onnx_model, "2"))
    promote = viewer_client.post(
        "/api/v1/models/risk/versions/1/stage", {"stage": "production"}, format="json"
    )
    alias = viewer_client.put(
        "/api/v1/models/risk/aliases/champion", {"version": "1"}, format="json"
    )

    assert (upload.status_code, promote.status_code, alias.status_code) == (403, 403, 403)
    assert ModelVersion.objects.get().stage == "staging"


def test_api_key_clients_cannot_upload_or_promote(tiny_onnx_model) -> None:
    from inference.models import ApiKey

    key = "phx_client-key-for-registry-tests"
    ApiKey.objects.create(  # even a key for every model
        name="client",
        prefix=key[:12],
        key_hash=hashlib.sha256(key.encode()).hexdigest(),
        all_models=True,
    )
    services.model_version_register(model_name="risk", file=tiny_onnx_model, stage="staging")
    client = APIClient()

    for headers in ({"HTTP_AUTHORIZATION": f"Bearer {key}"}, {"HTTP_X_API_KEY": key}):
        upload = client.post(
            "/api/v1/models/risk/versions",
            {"file": _file(variant_bytes(tiny_onnx_model, "2"))},
            format="multipart",
            **headers,
        )
        promote = client.post(
            "/api/v1/models/risk/versions/1/stage",
            {"stage": "production"},
            format="json",
            **headers,
        )
        assert (upload.status_code, promote.status_code) == (401, 401)
    assert ModelVersion.objects.get().stage == "staging"


def _basic(username: str = "ds", password: str = "pw-ds-12345") -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_http_basic_is_off_by_default_and_never_prompts(scientist, tiny_onnx_model) -> None:
    # A cross-site form post riding a browser's cached Basic login: refused, and the
    # 401 asks for a Bearer token, so the browser shows no password dialog.
    services.model_version_register(model_name="risk", file=tiny_onnx_model, stage="staging")
    client = APIClient(enforce_csrf_checks=True)

    response = client.post(
        "/api/v1/models/risk/versions/1/stage",
        {"stage": "production"},
        format="multipart",
        HTTP_AUTHORIZATION=_basic(),
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="phoenix"'
    assert response.json()["error"]["code"] == "not_authenticated"
    assert ModelVersion.objects.get().stage == "staging"


def test_http_basic_when_enabled(settings, scientist, tiny_onnx_model) -> None:
    settings.PHOENIX_HTTP_BASIC_AUTH = True
    client = APIClient()

    response = client.post(
        "/api/v1/models/risk/versions",
        {"file": _file(tiny_onnx_model.read_bytes())},
        format="multipart",
        HTTP_AUTHORIZATION=_basic(),
    )
    wrong = client.get("/api/v1/models", HTTP_AUTHORIZATION=_basic(password="wrong"))

    assert response.status_code == 201
    assert wrong.status_code == 401
    # Still the Bearer challenge first: no browser prompt even with Basic on.
    assert wrong["WWW-Authenticate"] == 'Bearer realm="phoenix"'


def test_per_user_bearer_token_for_registry_writes(scientist, tiny_onnx_model) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=scientist)
    client = APIClient(enforce_csrf_checks=True)  # a token needs no CSRF token

    upload = client.post(
        "/api/v1/models/risk/versions",
        {"file": _file(tiny_onnx_model.read_bytes()), "stage": "staging"},
        format="multipart",
        HTTP_AUTHORIZATION=f"Bearer {token.key}",
    )
    promote = client.post(
        "/api/v1/models/risk/versions/1/stage",
        {"stage": "production"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {token.key}",
    )
    bad = client.get("/api/v1/models", HTTP_AUTHORIZATION="Bearer not-a-token")

    assert (upload.status_code, promote.status_code) == (201, 200)
    assert ModelVersion.objects.get().stage == "production"
    assert AuditEvent.objects.filter(actor=scientist).count() >= 2
    assert bad.status_code == 401
    assert bad["WWW-Authenticate"] == 'Bearer realm="phoenix"'


def test_session_writes_still_need_csrf(scientist, tiny_onnx_model) -> None:
    services.model_version_register(model_name="risk", file=tiny_onnx_model, stage="staging")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(scientist)

    response = client.post(
        "/api/v1/models/risk/versions/1/stage", {"stage": "production"}, format="json"
    )

    assert response.status_code == 403
    assert ModelVersion.objects.get().stage == "staging"


def test_openapi_schema_documents_the_registry(viewer_client) -> None:
    schema = viewer_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()

    paths = schema["paths"]
    assert set(paths["/api/v1/models/{name}/versions"]) >= {"post"}
    assert (
        "multipart/form-data"
        in paths["/api/v1/models/{name}/versions"]["post"]["requestBody"]["content"]
    )
    assert "409" in paths["/api/v1/models/{name}/versions/{version}/stage"]["post"]["responses"]
    assert "413" in paths["/api/v1/models/{name}/versions"]["post"]["responses"]
    assert "put" in paths["/api/v1/models/{name}/aliases/{alias}"]
    assert "get" in paths["/api/v1/models"]
