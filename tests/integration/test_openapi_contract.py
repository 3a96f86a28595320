"""The OpenAPI schema declares every error an operation can answer with, in the one JSON
error shape, and the success bodies it documents are the ones the views send."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import User
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from tests.inference_support import onnx_classifier, register
from tests.registry_support import make_data_scientist

ERROR_REF = "#/components/schemas/Error"


def _schema(patterns: list[Any] | None = None) -> dict[str, Any]:
    return SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)  # type: ignore[no-any-return]


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` spelled as JSON Schema, for jsonschema to validate with."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in node:
        converted["type"] = [node["type"], "null"]
    return converted


def _error_ref(response: dict[str, Any]) -> str:
    return str(response["content"]["application/json"]["schema"]["$ref"])


def test_every_operation_declares_the_errors_its_shape_implies() -> None:
    schema = _schema()

    checked = 0
    for route, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            parameters = operation.get("parameters", [])
            expected = {"401", "403"}
            if "{" in route:
                expected.add("404")
            if "requestBody" in operation:
                expected |= {"400", "413", "415"}
            if any(p["in"] == "query" for p in parameters):
                expected.add("400")
            assert expected <= set(responses), (method, route, sorted(responses))
            for code, response in responses.items():
                if int(code) >= 400:
                    assert _error_ref(response) == ERROR_REF, (method, route, code)
            checked += 1
    assert checked >= 18


def test_the_error_component_is_the_projects_error_shape() -> None:
    components = _schema()["components"]["schemas"]

    error = components["Error"]
    body = components["ErrorBody"]

    assert error["required"] == ["error"]
    assert set(body["required"]) == {"code", "message", "details"}
    assert body["properties"]["details"]["type"] == "object"


def test_service_errors_are_declared_where_the_services_raise_them() -> None:
    paths = _schema()["paths"]

    assert {"422", "503"} <= set(paths["/api/v1/models/{name}/predict"]["post"]["responses"])
    assert {"422", "503"} <= set(paths["/api/v1/models/{name}/explain"]["post"]["responses"])
    assert {"404", "409"} <= set(paths["/api/v1/experiments"]["post"]["responses"])
    assert "409" in paths["/api/v1/experiments/{experiment_id}/promote"]["post"]["responses"]
    assert "503" in paths["/api/v1/models/{name}/drift"]["get"]["responses"]


def test_the_predict_body_documents_that_unknown_fields_are_refused() -> None:
    predict_input = _schema()["components"]["schemas"]["PredictInput"]

    assert predict_input["additionalProperties"] is False
    assert set(predict_input["properties"]) == {"entity_id", "version", "features"}


class _Throttled(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [AnonRateThrottle]

    def get(self, request: Request) -> Response:
        return Response({})


def test_a_throttled_view_declares_429_and_an_open_one_no_auth_errors() -> None:
    operation = _schema([path("throttled", _Throttled.as_view())])["paths"]["/throttled"]["get"]

    assert "429" in operation["responses"]
    assert not {"401", "403"} & set(operation["responses"])


def test_every_operation_declares_the_edge_statuses() -> None:
    # The ASGI edge throttles (429) and limits headers (431) on every route.
    for route, operations in _schema()["paths"].items():
        for method, operation in operations.items():
            assert {"429", "431"} <= set(operation["responses"]), (method, route)


@pytest.mark.django_db
def test_a_draft_experiment_matches_its_documented_shape(tmp_path: Path, settings: Any) -> None:
    # Fuzzing found nulls (decided_by, started_at, evaluated_at, ended_at of a draft)
    # the schema did not allow.
    from monitoring.services.experiments import experiment_create

    settings.MEDIA_ROOT = tmp_path / "media"
    champion = register("credit", onnx_classifier(tmp_path / "a.onnx"), alias="champion")
    challenger = register("credit", onnx_classifier(tmp_path / "b.onnx", seed=11), stage="staging")
    draft = experiment_create(model=champion.model, challenger=challenger, mode="shadow")
    client = APIClient()
    client.force_login(make_data_scientist(User))  # type: ignore[arg-type]
    schema = _schema()

    body = client.get(f"/api/v1/experiments/{draft.pk}").json()

    component = {
        **schema["components"]["schemas"]["Experiment"],
        "components": schema["components"],
    }
    assert body["started_at"] is None
    assert body["decided_by"] is None
    jsonschema.validate(body, _json_schema(component))
