"""GET /api/v1/models/{name}/drift: the latest drift reports of a model."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.auth import ApiKeyAuthentication, api_key_authorize
from inference.selectors import ApiKeyPrincipal
from models_registry.selectors import registered_model_get
from monitoring.selectors.drift_reports import drift_reports_list
from phoenix.openapi import error_responses


class DriftReportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    model = serializers.CharField(source="model_version.model.name")
    version = serializers.CharField(source="model_version.version")
    status = serializers.CharField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    rows = serializers.IntegerField()
    reference_rows = serializers.IntegerField()
    alpha = serializers.FloatField()
    correction = serializers.CharField()
    drifted_features = serializers.SerializerMethodField()
    features = serializers.JSONField()
    # Share of the window's rows repeating another row ("duplicates" at or over the limit).
    duplicate_share = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_drifted_features(self, report: object) -> list[str]:
        if getattr(report, "status", None) != "drift":
            return []  # no verdict of drift (a duplicates window keeps its statistics)
        features: dict[str, dict[str, object]] = getattr(report, "features", {})
        return sorted(name for name, f in features.items() if f.get("drift"))


class ModelDriftReportsView(APIView):
    # Session first: the API key authenticator refuses a request without a key,
    # which would stop DRF before it tried the session.
    authentication_classes = [SessionAuthentication, ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        version = serializers.CharField(required=False, max_length=64)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=20)

    class OutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        model = serializers.CharField()
        reports = DriftReportSerializer(many=True)

    @extend_schema(
        parameters=[InputSerializer],
        responses={200: OutputSerializer, **error_responses({503: "API keys cannot be checked"})},
    )
    def get(self, request: Request, name: str) -> Response:
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        if isinstance(request.user, ApiKeyPrincipal):
            api_key_authorize(principal=request.user, model_name=name)
        model = registered_model_get(name=name)  # 404 for an unknown model
        reports = drift_reports_list(
            model_name=model.name,
            version=params.validated_data.get("version"),
            limit=params.validated_data["limit"],
        )
        return Response(self.OutputSerializer({"model": model.name, "reports": reports}).data)
