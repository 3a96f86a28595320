"""REST adapter: POST /api/v1/models/{name}/explain. Same body and auth as predict."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from phoenix.renderers import ORJSONRenderer

from ..auth import ApiKeyAuthentication, HasApiKey
from ..prediction.explanations import Explanation, explanation_create
from .views import (
    PREDICT_ERRORS,
    PREDICT_EXAMPLES,
    JSONOnlyNegotiation,
    PredictView,
    predict_input,
)

_JSON = ORJSONRenderer()


def explanation_body(explanation: Explanation) -> dict[str, Any]:
    return {
        "request_id": explanation.request_id,
        "model": explanation.model,
        "version": explanation.version,
        "routed_by": explanation.routed_by,
        "background_rows": explanation.background_rows,
        "explanations": [asdict(row) for row in explanation.rows],
    }


class ExplainView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    renderer_classes = [ORJSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation

    class RowSerializer(serializers.Serializer[Any]):
        row = serializers.IntegerField()
        prediction = serializers.JSONField()
        explained = serializers.CharField(
            help_text="the output explained, e.g. a class probability"
        )
        baseline = serializers.FloatField(help_text="the output with no feature known")
        value = serializers.FloatField(help_text="the output for this row: baseline + sum")
        attributions = serializers.DictField(child=serializers.FloatField())
        method = serializers.ChoiceField(choices=["linear-exact", "shapley-exact", "kernel-shap"])
        coalitions = serializers.IntegerField()

    class OutputSerializer(serializers.Serializer[Any]):
        request_id = serializers.CharField()
        model = serializers.CharField()
        version = serializers.CharField()
        routed_by = serializers.CharField()
        background_rows = serializers.IntegerField()
        explanations = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        request=PredictView.InputSerializer,
        responses={200: OutputSerializer, **PREDICT_ERRORS},
        examples=PREDICT_EXAMPLES,
    )
    def post(self, request: Request, name: str) -> HttpResponse:
        explanation = explanation_create(
            principal=request.user,  # type: ignore[arg-type]
            model_name=name,
            **predict_input(request.data),
        )
        return HttpResponse(
            _JSON.render(explanation_body(explanation)), content_type=_JSON.media_type
        )
