"""OpenAPI schema generation (drf-spectacular) tuned to how Phoenix writes views.

Error responses are part of the contract: every operation declares the JSON error shape
(``Error``, ``{"error": {"code", "message", "details"}}``) for each status it can answer
with. The statuses that follow from how a view is built are added here, so no view can
forget them; a view declares the ones its own services raise (404 from a body's
reference, 409, 422, 503) with ``error_responses``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import Direction, OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: the body or a query parameter breaks the rules",
    401: "No valid credentials",
    403: "The credentials may not do this",
    404: "Unknown resource",
    405: "Method not allowed",
    409: "Conflict with the resource's current state",
    413: "The body is larger than the limit",
    415: "Unsupported body media type",
    422: "Valid JSON the model cannot use",
    429: "Throttled: retry after the Retry-After header's seconds",
    431: "The request headers are larger than the limit",
    503: "A dependency this call needs is down",
}


class ErrorBodySerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField(help_text="Stable and machine-readable, e.g. model_not_found.")
    message = serializers.CharField(help_text="For people.")
    details = serializers.DictField(help_text="Which fields or values were at fault, if any.")


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The one error shape of every endpoint (phoenix.exceptions)."""

    error = ErrorBodySerializer()


def error_responses(codes: Mapping[int, str] | Iterable[int]) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for error statuses: a {status: description}
    mapping, or statuses with the generic descriptions of ERROR_DESCRIPTIONS."""
    described = (
        dict(codes) if isinstance(codes, Mapping) else {c: ERROR_DESCRIPTIONS[c] for c in codes}
    )
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=text)
        for code, text in described.items()
    }


class AutoSchema(openapi.AutoSchema):
    """Names nested serializers after their view, and declares the errors a view's shape implies.

    Views keep their ``InputSerializer``/``OutputSerializer`` inside the class (one view
    per operation), so the plain class names collide across views; the component of
    ``ModelVersionCreateApi.InputSerializer`` is called ``ModelVersionCreateInput``.
    """

    def get_serializer_name(
        self, serializer: serializers.BaseSerializer[Any], direction: Direction
    ) -> str:
        cls = type(serializer)
        outer = cls.__qualname__.rpartition(".")[0]
        if not outer or "<locals>" in outer:
            return cls.__name__
        return outer.removesuffix("Api").removesuffix("View") + cls.__name__

    def _map_basic_serializer(
        self, serializer: serializers.BaseSerializer[Any], direction: Direction
    ) -> dict[str, Any]:
        # A serializer whose view refuses fields it does not know says so
        # (``refuses_unknown_fields = True``): clients, and fuzzers, then see the rule.
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)  # type: ignore[no-untyped-call]
        if getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses: dict[str, Any] = operation.setdefault("responses", {})
        for code in self._implied_error_codes(operation):
            if str(code) not in responses:
                declared = error_responses([code])[code]
                responses[str(code)] = self._get_response_for_code(declared, str(code))  # type: ignore[no-untyped-call]
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _implied_error_codes(self, operation: Mapping[str, Any]) -> list[int]:
        """400 for a body or query parameters; 413 and 415 for a body (parsed by DRF, within
        DATA_UPLOAD_MAX_MEMORY_SIZE, and the ASGI edge's PHOENIX_MAX_BODY_BYTES); 401 and 403
        unless anyone may call it; 404 for path parameters; 429 and 431 everywhere (the
        ASGI edge's throttles and header limit, phoenix/edge.py)."""
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        codes: list[int] = []
        if has_body or any(p.get("in") == "query" for p in parameters):
            codes.append(400)
        if any(not isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes += [401, 403]
        if any(p.get("in") == "path" for p in parameters):
            codes.append(404)
        if has_body:
            codes += [413, 415]
        codes += [429, 431]
        return codes
