"""REST adapter: POST /api/v1/models/{name}/predict. Validate, call the service, serialize."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from phoenix.exceptions import InvalidInput
from phoenix.openapi import error_responses
from phoenix.renderers import ORJSONRenderer

from ..auth import ApiKeyAuthentication, HasApiKey
from ..prediction import Prediction, prediction_create

_OPTIONAL_TEXT = {"entity_id": 128, "version": 64}
_FIELDS = {"entity_id", "version", "features"}


def predict_input(data: Any) -> dict[str, Any]:
    """InputSerializer's rules, checked directly: on this path a serializer pass costs
    more than scoring the model (~60-150 us against ~10 us). Raises InvalidInput (400)."""
    if not isinstance(data, dict):
        raise InvalidInput(
            "The body must be a JSON object.", details={"non_field_errors": ["Expected an object."]}
        )
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        errors["non_field_errors"] = [f"Unknown field(s): {', '.join(unknown)}."]
    values: dict[str, Any] = {}
    for field, limit in _OPTIONAL_TEXT.items():
        value = data.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            errors[field] = ["Must be a string."]
        elif not str(value).strip() or len(str(value)) > limit:
            errors[field] = [f"Must be 1 to {limit} characters."]
        else:
            values[field] = str(value)
    if "features" in data:
        values["features"] = data["features"]
    if errors:
        raise InvalidInput("The request body is invalid.", details=errors)
    return values


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


_JSON = ORJSONRenderer()

# The bundled demo model's features (manage.py train_demo_models).
_DEMO_ROW = {
    "income": 52000,
    "debt": 9000,
    "age": 41,
    "credit_history_years": 12,
    "open_accounts": 4,
    "utilisation": 0.35,
}
PREDICT_EXAMPLES = [
    OpenApiExample("One row of named features", value={"features": _DEMO_ROW}, request_only=True),
    OpenApiExample(
        "A batch with an entity id",
        value={"entity_id": "cust_7", "features": [_DEMO_ROW, {**_DEMO_ROW, "debt": 30000}]},
        request_only=True,
    ),
    OpenApiExample(
        "Rows in feature order",
        value={"features": [[52000, 9000, 41, 12, 4, 0.35]]},
        request_only=True,
    ),
    OpenApiExample(
        "A text model: one string per text input (support-tickets)",
        value={"features": {"text": "I was charged twice for my subscription"}},
        request_only=True,
    ),
    OpenApiExample(
        "A batch of texts",
        value={"features": [{"text": "The app crashes on start"}, {"text": "Parcel lost"}]},
        request_only=True,
    ),
]
# Besides those every body-reading, keyed operation has (phoenix.openapi.AutoSchema).
PREDICT_ERRORS = error_responses(
    {
        422: "Valid JSON the model cannot use: missing, unknown, non-numeric features (or a "
        "non-string value for a text input)",
        503: "API keys cannot be checked, or the version cannot be loaded",
    }
)


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """The predict API answers JSON whatever the Accept header says: parsing Accept
    costs more per request than scoring a small model."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


_FEATURE_VALUE = {"oneOf": [{"type": "number"}, {"type": "string"}]}
_NAMED_ROW = {"type": "object", "additionalProperties": _FEATURE_VALUE}


@extend_schema_field(
    {
        "description": (
            "One object of named features, a list of them, or a list of rows in the "
            "model's feature order: numbers, and a string for each of a model's text "
            '(string) inputs, e.g. {"text": "I was charged twice"}. The answer\'s '
            "predictions are class labels (with probabilities and confidence) for a "
            "classifier, numbers for a regressor."
        ),
        "oneOf": [
            _NAMED_ROW,
            {
                "type": "array",
                "items": {"oneOf": [_NAMED_ROW, {"type": "array", "items": _FEATURE_VALUE}]},
            },
        ],
    }
)
class FeaturesField(serializers.JSONField):
    """The features of a predict body, as the schema describes them (predict_input checks)."""


class PredictView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    renderer_classes = [ORJSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation

    class InputSerializer(serializers.Serializer[Any]):
        refuses_unknown_fields = True  # predict_input: unknown fields are a 400

        entity_id = serializers.CharField(required=False, max_length=128)
        version = serializers.CharField(required=False, max_length=64)
        features = FeaturesField(required=False)

    class OutputSerializer(serializers.Serializer[Any]):
        request_id = serializers.CharField()
        model = serializers.CharField()
        version = serializers.CharField()
        routed_by = serializers.CharField()
        predictions = serializers.ListField()
        probabilities = serializers.ListField(child=serializers.ListField(), required=False)
        confidence = serializers.ListField(child=serializers.FloatField(), required=False)
        latency_ms = serializers.FloatField()

    @extend_schema(
        request=InputSerializer,
        responses={200: OutputSerializer, **PREDICT_ERRORS},
        examples=PREDICT_EXAMPLES,
    )
    def post(self, request: Request, name: str) -> HttpResponse:
        prediction = prediction_create(
            principal=request.user,  # type: ignore[arg-type]
            model_name=name,
            **predict_input(request.data),
        )
        # The body is built and encoded directly: an OutputSerializer pass, or a DRF
        # Response (a template response that Django renders after the view) costs more
        # than scoring the model. Errors still go through DRF's exception handler.
        return HttpResponse(
            _JSON.render(prediction_body(prediction)), content_type=_JSON.media_type
        )
