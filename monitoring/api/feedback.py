"""POST /api/v1/predictions/{request_id}/feedback: ground truth for logged predictions.

Only the key that made the prediction, a can_label key for its model or a person with
the labelling permission may give it (403); the label must fit the model (400)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.auth import ApiKeyAuthentication
from monitoring.services.feedback import prediction_feedback_submit
from phoenix.openapi import error_responses


class PredictionFeedbackView(APIView):
    # Session first: the API key authenticator refuses a request without a key,
    # which would stop DRF before it tried the session.
    authentication_classes = [SessionAuthentication, ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        # Any JSON value: a label, a number, or a list with one value per row.
        actual = serializers.JSONField()

    class OutputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        request_id = serializers.CharField()
        status = serializers.CharField()
        rows = serializers.IntegerField()
        changed = serializers.IntegerField()

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            202: OutputSerializer,
            **error_responses({503: "API keys cannot be checked, or the database is busy"}),
        },
    )
    def post(self, request: Request, request_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = prediction_feedback_submit(
            request_id=request_id,
            actual=serializer.validated_data["actual"],
            principal=request.user,
        )
        status = 200 if result.status == "recorded" else 202
        return Response(self.OutputSerializer(result).data, status=status)
