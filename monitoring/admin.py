"""Admin for monitoring data: read-only records of what happened.

Prediction logs, drift reports, alerts and retraining jobs are written by the
consumer and the Celery jobs; editing them by hand would falsify history, so the
admin shows them (with filters and links to the dashboards) and never changes them.
Drift schedules are edited through django-celery-beat's own admin. Experiments are
changed only by their actions (evaluate, stop, promote), which call the service.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from monitoring.access import experiment_promote_allowed, experiment_stop_allowed
from monitoring.models import (
    Alert,
    DriftReport,
    Experiment,
    PendingFeedback,
    PerformanceReport,
    PredictionLog,
    RetrainingJob,
)
from monitoring.selectors.dashboards import drift_features
from monitoring.services.experiments import (
    experiment_evaluate,
    experiment_promote,
    experiment_stop,
)
from phoenix.admin import ReadOnlyAdmin
from phoenix.exceptions import ApplicationError


class MonitoringRowAdmin(ReadOnlyAdmin):
    # Logs and reports may be cleaned up by whoever holds the delete permission.
    rows_deletable = True


@admin.register(PredictionLog)
class PredictionLogAdmin(MonitoringRowAdmin):
    list_display = (
        "created_at",
        "model_name",
        "version",
        "routed_by",
        "prediction",
        "confidence",
        "latency_ms",
        "actual",
    )
    list_filter = ("model_name", "version", "routed_by")
    search_fields = ("request_id", "event_id")
    date_hierarchy = "created_at"
    # The log grows without bound: no COUNT(*) over it on every page.
    show_full_result_count = False
    list_per_page = 50


@admin.register(PerformanceReport)
class PerformanceReportAdmin(MonitoringRowAdmin):
    list_display = (
        "created_at",
        "model_version",
        "task",
        "status",
        "labelled",
        "rows",
        "labelled_share",
        "label_delay_p50_s",
    )
    list_filter = ("status", "task", "model_version__model__name")
    list_select_related = ("model_version", "model_version__model")
    date_hierarchy = "created_at"


@admin.register(DriftReport)
class DriftReportAdmin(MonitoringRowAdmin):
    list_display = ("created_at", "model_version", "status", "rows", "drifted", "dashboard")
    list_filter = ("status", "model_version__model__name")
    list_select_related = ("model_version", "model_version__model")
    readonly_fields = ("feature_table",)
    exclude = ("features",)
    date_hierarchy = "created_at"

    @admin.display(description="drifted features")
    def drifted(self, report: DriftReport) -> str:
        return ", ".join(f.name for f in drift_features(report) if f.drift) or "-"

    @admin.display(description="dashboard")
    def dashboard(self, report: DriftReport) -> SafeString:
        url = reverse("monitoring:model-detail", args=[report.model_version.model.name])
        return format_html('<a href="{}">live view</a>', url)

    @admin.display(description="per-feature results")
    def feature_table(self, report: DriftReport) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f.name,
                    f.test,
                    "-" if f.p_value is None else f"{f.p_value:.3g}",
                    "-" if f.p_adjusted is None else f"{f.p_adjusted:.3g}",
                    "-" if f.psi is None else f"{f.psi:.3f}",
                    "drift" if f.drift else "ok",
                )
                for f in drift_features(report)
            ),
        )
        return format_html(
            "<table><tr><th>feature</th><th>test</th><th>p</th><th>adjusted p</th>"
            "<th>PSI</th><th></th></tr>{}</table>",
            rows,
        )


@admin.register(Alert)
class AlertAdmin(MonitoringRowAdmin):
    list_display = ("created_at", "kind", "model_version", "message", "webhook_delivered_at")
    list_filter = ("kind",)
    list_select_related = ("model_version", "model_version__model")
    search_fields = ("message",)
    date_hierarchy = "created_at"


@admin.register(RetrainingJob)
class RetrainingJobAdmin(MonitoringRowAdmin):
    list_display = ("created_at", "model", "status", "new_version", "finished_at")
    list_filter = ("status", "model")
    list_select_related = ("model", "new_version")
    date_hierarchy = "created_at"


@admin.register(PendingFeedback)
class PendingFeedbackAdmin(MonitoringRowAdmin):
    list_display = ("request_id", "received_at")
    search_fields = ("request_id",)


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    """Experiments are changed only through their service (routing and registry move with
    them); the actions below call it, each checked against the page's roles."""

    list_display = (
        "id",
        "model",
        "champion",
        "challenger",
        "mode",
        "status",
        "verdict",
        "decision",
        "started_at",
        "ended_at",
    )
    list_filter = ("status", "mode", "model")
    list_select_related = ("model", "champion", "challenger")
    date_hierarchy = "created_at"
    actions = ["evaluate_now", "stop", "promote"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a deleted running experiment would leave its routing behind

    @admin.display(description="verdict")
    def verdict(self, experiment: Experiment) -> str:
        primary = (experiment.statistics or {}).get("primary") or {}
        return str(primary.get("verdict", "-"))

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Experiment], allowed: Any, act: Any
    ) -> None:
        if not allowed(request.user):
            self.message_user(request, "You may not do that to experiments.", messages.ERROR)
            return
        for experiment in queryset:
            try:
                act(experiment)
            except ApplicationError as error:
                self.message_user(request, f"{experiment}: {error.message}", messages.ERROR)
            else:
                experiment.refresh_from_db()
                self.message_user(request, f"{experiment}", messages.SUCCESS)

    @admin.action(description="Evaluate now (tests, guards, canary step)")
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(
            request,
            queryset,
            experiment_stop_allowed,
            lambda e: experiment_evaluate(experiment_id=e.pk),
        )

    @admin.action(description="Stop (restore the routing before it)")
    def stop(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(
            request,
            queryset,
            experiment_stop_allowed,
            lambda e: experiment_stop(experiment_id=e.pk, actor=request.user, reason="admin"),
        )

    @admin.action(description="Promote the challenger (production + champion)")
    def promote(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> None:
        self._each(
            request,
            queryset,
            experiment_promote_allowed,
            lambda e: experiment_promote(
                experiment_id=e.pk, actor=request.user, reason="promoted in admin"
            ),
        )
