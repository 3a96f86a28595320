"""POST /api/v1/predictions/{request_id}/feedback: ground truth for logged predictions."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.auth import ApiKeyAuthentication, api_key_authorize
from inference.events import get_publisher, publish_feedback_event
from inference.selectors import ApiKeyPrincipal
from monitoring.selectors.prediction_log import prediction_log_models_for_request
from monitoring.services.feedback import prediction_feedback_record
from phoenix.exceptions import NotFound


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
        request=InputSerializer, responses={200: OutputSerializer, 202: OutputSerializer}
    )
    def post(self, request: Request, request_id: str) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        actual = serializer.validated_data["actual"]
        if isinstance(request.user, ApiKeyPrincipal):
            for model_name in prediction_log_models_for_request(request_id=request_id):
                api_key_authorize(principal=request.user, model_name=model_name)
        kafka = settings.PHOENIX_EVENT_BACKEND == "kafka"
        try:
            # With Kafka the consumer may not have written the rows yet: feedback for an
            # id this deployment issued is kept as pending (202); any other id is a 404.
            result = prediction_feedback_record(
                request_id=request_id, actual=actual, accept_pending=kafka
            )
        except NotFound:
            if kafka:
                raise
            # Embedded backend: the rows may still sit in this process's buffer.
            get_publisher().flush()
            result = prediction_feedback_record(request_id=request_id, actual=actual)
        if kafka and (result.changed or result.status == "pending"):
            publish_feedback_event(
                {
                    "request_id": request_id,
                    "actual": actual,
                    "created_at": timezone.now().isoformat(),
                }
            )
        status = 200 if result.status == "recorded" else 202
        return Response(self.OutputSerializer(result).data, status=status)
