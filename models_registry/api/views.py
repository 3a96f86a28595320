"""Registry REST API: one view per operation; each validates, calls a service or selector,
and serializes. Errors are the services' domain exceptions, turned into the JSON error
shape by phoenix.exceptions.api_exception_handler."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_registry import selectors, services
from models_registry.access import stage_move_allowed, version_register_allowed
from models_registry.exceptions import ModelTooLarge
from models_registry.models import Alias, ModelVersion, RegisteredModel
from models_registry.stages import Stage
from phoenix.authentication import PeopleAPIView
from phoenix.openapi import error_responses

TAGS = ["registry"]

_ERROR_TEXT = {
    400: "Invalid input or model file",
    401: "Not signed in",
    403: "Not allowed (writes need the Data scientists group)",
    404: "Unknown model or version",
    409: "Conflict: duplicate file, existing version, illegal stage or alias move",
    413: "File larger than PHOENIX_MODEL_MAX_BYTES",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return error_responses({code: _ERROR_TEXT[code] for code in codes})


# --- authentication and permissions --------------------------------------------------------


# Every view here is a PeopleAPIView: a per-user Bearer token or a session (HTTP Basic
# only when enabled); API keys (clients) are not accepted. phoenix/authentication.py
# says why and in what order.


class CanRegisterVersions(BasePermission):
    """Uploads: ``models_registry.access.version_register_allowed``."""

    message = "Uploading models needs the Data scientists group."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return version_register_allowed(request.user)


class CanMoveVersions(BasePermission):
    """Stage and alias moves: ``models_registry.access.stage_move_allowed``."""

    message = "Moving model versions needs the Data scientists group."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return stage_move_allowed(request.user)


# --- output shapes -------------------------------------------------------------------------


class ModelVersionOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField(source="model.name")
    version = serializers.CharField()
    stage = serializers.CharField()
    aliases = serializers.SerializerMethodField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    signature = serializers.JSONField()
    feature_names = serializers.ListField(child=serializers.CharField())
    framework = serializers.JSONField()
    metrics = serializers.JSONField()
    tags = serializers.JSONField()
    description = serializers.CharField()
    reference_rows = serializers.IntegerField(allow_null=True)
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    stage_changed_at = serializers.DateTimeField()

    def get_aliases(self, version: ModelVersion) -> list[str]:
        return sorted(a.alias for a in version.aliases.all())

    def get_created_by(self, version: ModelVersion) -> str | None:
        return version.created_by.get_username() if version.created_by else None


class ModelSummaryOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    description = serializers.CharField()
    tags = serializers.JSONField()
    production_version = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    latest_version = serializers.SerializerMethodField()
    version_count = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    # The methods read the prefetched versions/aliases (registered_models_list).
    def get_production_version(self, model: RegisteredModel) -> str | None:
        return next((v.version for v in model.versions.all() if v.stage == Stage.PRODUCTION), None)

    def get_aliases(self, model: RegisteredModel) -> dict[str, str]:
        return {a.alias: a.version.version for a in model.aliases.all()}

    def get_latest_version(self, model: RegisteredModel) -> str | None:
        versions = list(model.versions.all())
        return versions[0].version if versions else None

    def get_version_count(self, model: RegisteredModel) -> int:
        return len(model.versions.all())


class ModelDetailOutputSerializer(ModelSummaryOutputSerializer):
    versions = ModelVersionOutputSerializer(many=True)


class ModelAliasOutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField(source="model.name")
    alias = serializers.CharField()
    version = serializers.CharField(source="version.version")
    updated_at = serializers.DateTimeField()


def _version_response(version: ModelVersion, code: int = status.HTTP_200_OK) -> Response:
    fresh = selectors.model_version_get(model_name=version.model.name, version=version.version)
    return Response(ModelVersionOutputSerializer(fresh).data, status=code)


# --- reads -------------------------------------------------------------------------------------


class ModelListApi(PeopleAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="List registered models",
        responses={200: ModelSummaryOutputSerializer(many=True), **_errors(401, 403)},
    )
    def get(self, request: Request) -> Response:
        models = selectors.registered_models_list()
        return Response(ModelSummaryOutputSerializer(models, many=True).data)


class ModelDetailApi(PeopleAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="A model with its versions (newest first)",
        responses={200: ModelDetailOutputSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_get(name=name)
        return Response(ModelDetailOutputSerializer(model).data)


class ModelVersionDetailApi(PeopleAPIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="One version: stage, aliases, signature, sha256",
        responses={200: ModelVersionOutputSerializer, **_errors(401, 403, 404)},
    )
    def get(self, request: Request, name: str, version: str) -> Response:
        found = selectors.model_version_get(model_name=name, version=version)
        return Response(ModelVersionOutputSerializer(found).data)


# --- writes -----------------------------------------------------------------------------------


class ModelVersionCreateApi(PeopleAPIView):
    permission_classes = [CanRegisterVersions]
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        file = serializers.FileField(help_text="The ONNX model.")
        version = serializers.CharField(required=False, help_text="Default: the next number.")
        stage = serializers.ChoiceField(
            choices=[s.value for s in services.INITIAL_STAGES], default=Stage.DEV.value
        )
        alias = serializers.ChoiceField(choices=Alias.values, required=False)
        reference = serializers.FileField(
            required=False, help_text="Reference data: CSV with a header, or .npy."
        )
        description = serializers.CharField(required=False, allow_blank=True, default="")
        metrics = serializers.JSONField(required=False, binary=True)
        tags = serializers.JSONField(required=False, binary=True)

    @extend_schema(
        tags=TAGS,
        summary="Upload a new version (multipart)",
        description=(
            "The file is parsed and loaded by onnxruntime before anything is stored. "
            "Refused: not ONNX, over the size limit, external data, no inputs, or the same "
            "bytes as an existing version of this model."
        ),
        request={"multipart/form-data": InputSerializer},
        responses={201: ModelVersionOutputSerializer, **_errors(400, 401, 403, 409, 413)},
    )
    def post(self, request: Request, name: str) -> Response:
        # Refuse an obviously oversized body before it is spooled to disk: a model and a
        # reference file may each use the limit, plus room for the form itself.
        limit = 2 * settings.PHOENIX_MODEL_MAX_BYTES + 1024 * 1024
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            raise ModelTooLarge(
                f"The upload is larger than the limit of {settings.PHOENIX_MODEL_MAX_BYTES} "
                "bytes per file."
            )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = serializer.validated_data
        reference = data.get("reference")
        created = services.model_version_register(
            model_name=name,
            file=data["file"],
            filename=data["file"].name,
            version=data.get("version"),
            stage=data["stage"],
            alias=data.get("alias"),
            reference=reference,
            reference_filename=reference.name if reference is not None else None,
            metrics=data.get("metrics"),
            tags=data.get("tags"),
            description=data["description"],
            actor=request.user,
        )
        return _version_response(created, status.HTTP_201_CREATED)


class ModelVersionStageApi(PeopleAPIView):
    permission_classes = [CanMoveVersions]

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        stage = serializers.ChoiceField(choices=[s.value for s in Stage])

    @extend_schema(
        tags=TAGS,
        summary="Move a version to another stage",
        description=(
            "Promoting to production moves the previous production version to "
            "PHOENIX_PREVIOUS_PRODUCTION_STAGE in the same transaction; archiving removes "
            "the version's aliases."
        ),
        request=InputSerializer,
        responses={200: ModelVersionOutputSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    def post(self, request: Request, name: str, version: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        found = selectors.model_version_get(model_name=name, version=version)
        moved = services.model_version_set_stage(
            version=found, stage=serializer.validated_data["stage"], actor=request.user
        )
        return _version_response(moved)


class ModelAliasSetApi(PeopleAPIView):
    permission_classes = [CanMoveVersions]

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        version = serializers.CharField()

    @extend_schema(
        tags=TAGS,
        summary="Point the champion or challenger alias at a version",
        request=InputSerializer,
        responses={200: ModelAliasOutputSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    def put(self, request: Request, name: str, alias: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        found = selectors.model_version_get(
            model_name=name, version=serializer.validated_data["version"]
        )
        row = services.model_alias_set(
            model=found.model, alias=alias, version=found, actor=request.user
        )
        return Response(ModelAliasOutputSerializer(row).data)
