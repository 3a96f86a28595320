"""Dashboard pages: server-rendered frames that the websocket fills with live numbers."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from models_registry.access import stage_move_allowed
from models_registry.selectors import model_version_get, registered_model_names
from models_registry.services import model_version_set_stage
from monitoring.access import (
    dashboard_access_allowed,
    experiment_promote_allowed,
    experiment_stop_allowed,
)
from monitoring.live_snapshot import pipeline_series_read
from monitoring.selectors import dashboards as selectors
from monitoring.selectors.experiments import experiments_recent
from monitoring.selectors.performance import performance_series
from monitoring.selectors.prediction_log import prediction_log_recent
from monitoring.services.experiments import experiment_promote, experiment_stop
from monitoring.services.explanations import prediction_log_explain
from phoenix.exceptions import ApplicationError, NotFound, error_response

View = Callable[..., HttpResponse]


def dashboard_page(view: View) -> View:
    """Sign-in first; then only operators, data scientists, staff and superusers."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not dashboard_access_allowed(request.user):
            raise PermissionDenied("Dashboards are for operators and data scientists.")
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@dashboard_page
def overview(request: HttpRequest) -> HttpResponse:
    served = selectors.served_models_list()
    return render(
        request,
        "monitoring/overview.html",
        {
            "served": served,
            "drift_counts": selectors.drift_status_counts(served_models=served),
            "ws_path": "/ws/dashboard/",
        },
    )


@require_GET
@dashboard_page
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    served = selectors.dashboard_model_get(name=name)
    if served is None:
        raise Http404(f"No model named {name!r}.")
    reports = [
        (version, report, selectors.drift_features(report), selectors.prediction_drift_rows(report))
        for version, report in selectors.latest_drift_reports(served=served)
    ]
    performance = performance_series(versions=selectors.served_arms(served=served))
    return render(
        request,
        "monitoring/model_detail.html",
        {
            "served": served,
            "version_rows": selectors.version_rows(served=served),
            "drift_reports": reports,
            "can_move_stage": stage_move_allowed(request.user),
            "performance": performance,
            "performance_chart": {"series": [s.chart_data() for s in performance]},
            "recent_predictions": prediction_log_recent(model_name=served.name, limit=12),
            "ws_path": f"/ws/models/{served.name}/",
        },
    )


@require_GET
@dashboard_page
def prediction_explain(request: HttpRequest, name: str, row_id: int) -> HttpResponse:
    """The "why this prediction" panel's data: one logged row's attributions (JSON), from
    the explain service, for the dashboards' people (session, not an API key)."""
    try:
        explained = prediction_log_explain(model_name=name, row_id=row_id, user=request.user)
    except ApplicationError as error:
        return error_response(error)
    return JsonResponse(
        {
            "row_id": explained.row_id,
            "request_id": explained.request_id,
            "model": explained.model,
            "version": explained.version,
            "logged_prediction": explained.logged_prediction,
            "actual": explained.actual,
            "prediction": explained.prediction,
            "explained": explained.explained,
            "baseline": explained.baseline,
            "value": explained.value,
            "attributions": [
                {"feature": feature, "attribution": value}
                for feature, value in explained.attributions
            ],
            "method": explained.method,
            "coalitions": explained.coalitions,
            "tolerance": explained.tolerance,
        }
    )


@require_POST
@dashboard_page
def stage_move(request: HttpRequest, name: str, version: str) -> HttpResponse:
    """Move a version to the posted stage through the registry's service (CSRF-checked)."""
    if not stage_move_allowed(request.user):
        raise PermissionDenied("Only data scientists may move versions between stages.")
    try:
        found = model_version_get(model_name=name, version=version)
    except NotFound as error:
        raise Http404(error.message) from None

    stage = request.POST.get("stage", "")
    try:
        moved = model_version_set_stage(version=found, stage=stage, actor=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{name} v{moved.version} is now in {moved.stage}.")
    return redirect("monitoring:model-detail", name=name)


@require_GET
@dashboard_page
def drift_history(request: HttpRequest) -> HttpResponse:
    model_name = request.GET.get("model") or None
    page = selectors.drift_reports_page(model_name=model_name, page=request.GET.get("page", 1))
    return render(
        request,
        "monitoring/drift_history.html",
        {
            "page": page,
            "rows": [(report, selectors.drift_summary(report)) for report in page.object_list],
            "model_name": model_name or "",
            "model_names": registered_model_names(),
            "ws_path": "/ws/dashboard/",
        },
    )


@require_GET
@dashboard_page
def experiments(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "monitoring/experiments.html",
        {
            "experiments": selectors.experiments_list(),
            "recent": experiments_recent(),
            "can_stop": experiment_stop_allowed(request.user),
            "can_promote": experiment_promote_allowed(request.user),
            "ws_path": "/ws/dashboard/",
        },
    )


@require_POST
@dashboard_page
def experiment_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Stop or promote an experiment through its service (CSRF-checked), with the reason."""
    allowed = {"stop": experiment_stop_allowed, "promote": experiment_promote_allowed}
    if action not in allowed:
        raise Http404(f"No experiment action {action!r}.")
    if not allowed[action](request.user):
        raise PermissionDenied(f"You may not {action} experiments.")
    reason = request.POST.get("reason", "").strip()[:500]
    act = experiment_stop if action == "stop" else experiment_promote
    try:
        done = act(experiment_id=pk, actor=request.user, reason=reason)
    except NotFound as error:
        raise Http404(error.message) from None
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Experiment {done.pk} of {done.model.name}: {done.status}.")
    return redirect("monitoring:experiments")


@require_GET
@dashboard_page
def pipeline(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "monitoring/pipeline.html",
        {
            "series": pipeline_series_read(),
            "log": selectors.prediction_log_stats(),
            "ws_path": "/ws/dashboard/",
        },
    )
