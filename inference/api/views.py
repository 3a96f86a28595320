"""REST adapter: POST /api/v1/models/{name}/predict. Validate, call the service, serialize."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..auth import ApiKeyAuthentication, HasApiKey
from ..services import Prediction, prediction_create


def prediction_body(prediction: Prediction) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": prediction.request_id,
        "model": prediction.model,
        "version": prediction.version,
        "routed_by": prediction.routed_by,
        "predictions": prediction.predictions,
    }
    if prediction.probabilities is not None:
        body["probabilities"] = prediction.probabilities
        body["confidence"] = prediction.confidence
    body["latency_ms"] = prediction.latency_ms
    return body


class PredictView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    class InputSerializer(serializers.Serializer[Any]):
        entity_id = serializers.CharField(required=False, max_length=128)
        version = serializers.CharField(required=False, max_length=64)
        # One object of named features, a list of them, or a list of rows in feature order.
        features = serializers.JSONField(required=False)

    class OutputSerializer(serializers.Serializer[Any]):
        request_id = serializers.CharField()
        model = serializers.CharField()
        version = serializers.CharField()
        routed_by = serializers.CharField()
        predictions = serializers.ListField()
        probabilities = serializers.ListField(child=serializers.ListField(), required=False)
        confidence = serializers.ListField(child=serializers.FloatField(), required=False)
        latency_ms = serializers.FloatField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request, name: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prediction = prediction_create(
            principal=request.user,  # type: ignore[arg-type]
            model_name=name,
            **serializer.validated_data,
        )
        # The body is built directly: an OutputSerializer pass would cost more than the model.
        return Response(prediction_body(prediction))
