"""Experiments over REST, for people signed in (session + CSRF), with the dashboard roles:

GET  /api/v1/experiments[?model=&status=]     POST /api/v1/experiments (create, optionally start)
GET  /api/v1/experiments/{id}                 the live statistics of the last evaluation
POST /api/v1/experiments/{id}/start | evaluate | stop | rollback | promote   {"reason"?}

Reading needs dashboard access; creating, starting, evaluating, stopping and rolling back
are for operators and data scientists (they steer traffic); promoting, a production move,
for data scientists and superusers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_registry.selectors import model_version_get, registered_model_get
from monitoring.access import (
    dashboard_access_allowed,
    experiment_promote_allowed,
    experiment_stop_allowed,
)
from monitoring.models import Experiment, ExperimentMode, ExperimentStatus, PrimaryMetric
from monitoring.services import experiments as service
from phoenix.openapi import error_responses


class ExperimentSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(source="pk")
    model = serializers.CharField(source="model.name")
    champion = serializers.CharField(source="champion.version")
    challenger = serializers.CharField(source="challenger.version")
    mode = serializers.CharField()
    status = serializers.CharField()
    traffic_percent = serializers.FloatField()
    canary_steps = serializers.JSONField()
    canary_step = serializers.IntegerField()
    step_interval_s = serializers.IntegerField()
    step_min_samples = serializers.IntegerField()
    seed = serializers.CharField()
    primary_metric = serializers.CharField()
    guards = serializers.JSONField()
    alpha = serializers.FloatField()
    min_samples = serializers.IntegerField()
    auto_promote = serializers.BooleanField()
    decision = serializers.CharField()
    reason = serializers.CharField()
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)
    statistics = serializers.JSONField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    evaluated_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)


def _query() -> QuerySet[Experiment]:
    return Experiment.objects.select_related("model", "champion", "challenger", "decided_by")


def _get(experiment_id: int) -> Experiment:
    found = _query().filter(pk=experiment_id).first()
    if found is None:
        raise service.ExperimentNotFound(f"No experiment {experiment_id}.")
    return found


def _require(allowed: Callable[[Any], bool], request: Request, what: str) -> None:
    if not allowed(request.user):
        raise PermissionDenied(f"You may not {what} experiments.")


class ExperimentListView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    class FilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
        model = serializers.CharField(required=False, max_length=128)
        status = serializers.ChoiceField(choices=ExperimentStatus.choices, required=False)

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        model = serializers.CharField(max_length=128)
        challenger = serializers.CharField(max_length=64)
        mode = serializers.ChoiceField(choices=ExperimentMode.choices)
        traffic_percent = serializers.FloatField(required=False, min_value=0.0, max_value=100.0)
        canary_steps = serializers.ListField(
            child=serializers.FloatField(), required=False, max_length=20
        )
        step_interval_s = serializers.IntegerField(required=False, min_value=0)
        step_min_samples = serializers.IntegerField(required=False, min_value=0)
        seed = serializers.CharField(required=False, max_length=64)
        primary_metric = serializers.ChoiceField(choices=PrimaryMetric.choices, required=False)
        guards = serializers.DictField(required=False)
        alpha = serializers.FloatField(required=False)
        min_samples = serializers.IntegerField(required=False, min_value=1)
        auto_promote = serializers.BooleanField(required=False)
        start = serializers.BooleanField(required=False, default=False)

    @extend_schema(parameters=[FilterSerializer], responses={200: ExperimentSerializer(many=True)})
    def get(self, request: Request) -> Response:
        _require(dashboard_access_allowed, request, "see")
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        query = _query()
        if "model" in params.validated_data:
            query = query.filter(model__name=params.validated_data["model"])
        if "status" in params.validated_data:
            query = query.filter(status=params.validated_data["status"])
        return Response(ExperimentSerializer(query[:100], many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: ExperimentSerializer,
            **error_responses(
                {
                    404: "Unknown model or challenger version",
                    409: "The model has no champion or production version",
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        _require(experiment_stop_allowed, request, "run")
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        start = data.pop("start")
        model = registered_model_get(name=data.pop("model"))
        challenger = model_version_get(model_name=model.name, version=data.pop("challenger"))
        experiment = service.experiment_create(
            model=model, challenger=challenger, actor=request.user, **data
        )
        if start:
            service.experiment_start(experiment_id=experiment.pk, actor=request.user)
        return Response(ExperimentSerializer(_get(experiment.pk)).data, status=201)


class ExperimentDetailView(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ExperimentSerializer})
    def get(self, request: Request, experiment_id: int) -> Response:
        _require(dashboard_access_allowed, request, "see")
        return Response(ExperimentSerializer(_get(experiment_id)).data)


class ExperimentActionView(APIView):
    """POST /api/v1/experiments/{id}/{action}: one service call, then the experiment."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]
    action = ""

    class InputSerializer(serializers.Serializer):  # type: ignore[type-arg]
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def _call(self, request: Request, experiment_id: int, reason: str) -> None:
        raise NotImplementedError

    @extend_schema(
        request=InputSerializer,
        responses={
            200: ExperimentSerializer,
            **error_responses({409: "The experiment's status does not allow this action"}),
        },
    )
    def post(self, request: Request, experiment_id: int) -> Response:
        body = self.InputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        self._call(request, experiment_id, body.validated_data.get("reason", ""))
        return Response(ExperimentSerializer(_get(experiment_id)).data)


class ExperimentStartView(ExperimentActionView):
    def _call(self, request: Request, experiment_id: int, reason: str) -> None:
        _require(experiment_stop_allowed, request, "start")
        service.experiment_start(experiment_id=experiment_id, actor=request.user)


class ExperimentEvaluateView(ExperimentActionView):
    def _call(self, request: Request, experiment_id: int, reason: str) -> None:
        _require(experiment_stop_allowed, request, "evaluate")
        service.experiment_evaluate(experiment_id=experiment_id)


class ExperimentStopView(ExperimentActionView):
    def _call(self, request: Request, experiment_id: int, reason: str) -> None:
        _require(experiment_stop_allowed, request, "stop")
        service.experiment_stop(experiment_id=experiment_id, actor=request.user, reason=reason)


class ExperimentRollbackView(ExperimentActionView):
    def _call(self, request: Request, experiment_id: int, reason: str) -> None:
        _require(experiment_stop_allowed, request, "roll back")
        service.experiment_rollback(
            experiment_id=experiment_id,
            actor=request.user,
            reason=reason or f"rolled back by {request.user.get_username()}",
        )


class ExperimentPromoteView(ExperimentActionView):
    def _call(self, request: Request, experiment_id: int, reason: str) -> None:
        _require(experiment_promote_allowed, request, "promote")
        service.experiment_promote(experiment_id=experiment_id, actor=request.user, reason=reason)
