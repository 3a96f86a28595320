"""Django admin for the registry: upload, stage and alias actions, audit history.

Every write goes through models_registry.services, so the admin enforces the same
validation and stage rules as the REST API and the commands. Data scientists (the
group created by migration 0002) hold add/change permissions; others may view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from phoenix.admin import ReadOnlyAdmin
from phoenix.exceptions import ApplicationError

from . import selectors, services
from .models import (
    MODEL_NAME_VALIDATOR,
    VERSION_VALIDATOR,
    Alias,
    AuditEvent,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
)
from .stages import Stage


class ModelVersionUploadForm(forms.Form):
    model_name = forms.CharField(
        max_length=128,
        validators=[MODEL_NAME_VALIDATOR],
        help_text="An existing model, or a new name to create one.",
    )
    file = forms.FileField(label="ONNX file")
    version = forms.CharField(
        max_length=64,
        required=False,
        validators=[VERSION_VALIDATOR],
        help_text="Leave empty for the next number.",
    )
    stage = forms.ChoiceField(
        choices=[(s.value, s.value.capitalize()) for s in services.INITIAL_STAGES],
        initial=Stage.DEV.value,
    )
    alias = forms.ChoiceField(choices=[("", "(none)"), *Alias.choices], required=False)
    reference = forms.FileField(
        label="Reference data",
        required=False,
        help_text="Optional: CSV with a header naming the model's features, or a .npy array.",
    )
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


def _history_response(
    admin_obj: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    title: str,
    subject: Any,
    **filters: Any,
) -> TemplateResponse:
    context = {
        **admin_obj.admin_site.each_context(request),
        "title": title,
        "subject": subject,
        "opts": admin_obj.model._meta,
        "events": selectors.audit_events_list(**filters),
    }
    return TemplateResponse(request, "admin/models_registry/audit_history.html", context)


class ModelVersionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = ModelVersion
    fields = ("version_link", "stage", "sha256", "size_bytes", "created_by", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    ordering = ("-created_at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Version")
    def version_link(self, version: ModelVersion) -> str:
        url = reverse("admin:models_registry_modelversion_change", args=[version.pk])
        return format_html('<a href="{}">{}</a>', url, version.version)


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "production_version", "alias_summary", "owner", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = ("owner", "created_at", "updated_at")
    fields = ("name", "description", "tags", "retraining_recipe", *readonly_fields)
    inlines = [ModelVersionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RegisteredModel]:
        return selectors.registered_models_list().select_related("owner")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Files are stored under the model's name: renaming would orphan them.
        return (*self.readonly_fields, "name") if obj is not None else self.readonly_fields

    @admin.display(description="Production")
    def production_version(self, model: RegisteredModel) -> str:
        return next((v.version for v in model.versions.all() if v.stage == Stage.PRODUCTION), "-")

    @admin.display(description="Aliases")
    def alias_summary(self, model: RegisteredModel) -> str:
        return ", ".join(f"{a.alias}: v{a.version.version}" for a in model.aliases.all()) or "-"

    def save_model(
        self, request: HttpRequest, obj: RegisteredModel, form: Any, change: bool
    ) -> None:
        if not change:
            obj.owner = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: RegisteredModel) -> None:
        services.registered_model_delete(model=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> None:
        for model in queryset:
            services.registered_model_delete(model=model, actor=request.user)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        model = self.get_object(request, object_id)
        if model is None or not self.has_view_or_change_permission(request, model):
            raise PermissionDenied
        return _history_response(
            self, request, f"History of {model.name}", model, model_name=model.name
        )


def _each(
    description: str, apply: Callable[[HttpRequest, ModelVersion], Any]
) -> Callable[[Any, HttpRequest, QuerySet[ModelVersion]], None]:
    """An admin action applying a service to each selected version, reporting per version."""

    @admin.action(description=description, permissions=["change"])
    def action(
        modeladmin: ModelVersionAdmin, request: HttpRequest, queryset: QuerySet[ModelVersion]
    ) -> None:
        for version in queryset.select_related("model"):
            try:
                apply(request, version)
            except ApplicationError as exc:
                modeladmin.message_user(request, f"{version}: {exc.message}", messages.ERROR)
            else:
                version.refresh_from_db()
                modeladmin.message_user(request, f"{version}: done.", messages.SUCCESS)

    action.__name__ = description.lower().replace(" ", "_")
    return action


def _single(
    description: str, apply: Callable[[HttpRequest, ModelVersion], Any]
) -> Callable[[Any, HttpRequest, QuerySet[ModelVersion]], None]:
    """Like _each, for moves that only make sense for one version (production, aliases)."""
    each = _each(description, apply)

    @admin.action(description=description, permissions=["change"])
    def action(
        modeladmin: ModelVersionAdmin, request: HttpRequest, queryset: QuerySet[ModelVersion]
    ) -> None:
        if queryset.count() != 1:
            modeladmin.message_user(
                request, f"Select exactly one version to {description.lower()}.", messages.ERROR
            )
            return
        each(modeladmin, request, queryset)

    action.__name__ = each.__name__
    return action


def _to_stage(stage: Stage) -> Callable[[HttpRequest, ModelVersion], Any]:
    def apply(request: HttpRequest, version: ModelVersion) -> Any:
        return services.model_version_set_stage(version=version, stage=stage, actor=request.user)

    return apply


def _to_alias(alias: str) -> Callable[[HttpRequest, ModelVersion], Any]:
    def apply(request: HttpRequest, version: ModelVersion) -> Any:
        return services.model_alias_set(
            model=version.model, alias=alias, version=version, actor=request.user
        )

    return apply


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "model",
        "version",
        "stage",
        "alias_list",
        "short_sha256",
        "size_bytes",
        "reference_rows",
        "created_by",
        "created_at",
    )
    list_filter = ("stage", "model")
    search_fields = ("model__name", "version", "sha256")
    list_select_related = ("model", "created_by")
    # What the file says about itself, and where it is in its life, are never edited here:
    # stages and aliases move through the actions, which apply the registry's rules.
    readonly_fields = (
        "model",
        "version",
        "stage",
        "alias_list",
        "sha256",
        "size_bytes",
        "file",
        "signature_table",
        "feature_names",
        "framework",
        "reference_data",
        "reference_rows",
        "created_by",
        "created_at",
        "stage_changed_at",
    )
    fields = (*readonly_fields[:7], "description", "metrics", "tags", *readonly_fields[7:])
    actions = [
        _each("Promote to staging", _to_stage(Stage.STAGING)),
        _single("Promote to production", _to_stage(Stage.PRODUCTION)),
        _single("Set as champion", _to_alias(Alias.CHAMPION)),
        _single("Set as challenger", _to_alias(Alias.CHALLENGER)),
        _each("Archive", _to_stage(Stage.ARCHIVED)),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).prefetch_related("aliases")

    @admin.display(description="Aliases")
    def alias_list(self, version: ModelVersion) -> str:
        return ", ".join(sorted(a.alias for a in version.aliases.all())) or "-"

    @admin.display(description="SHA-256")
    def short_sha256(self, version: ModelVersion) -> str:
        return version.sha256[:12]

    @admin.display(description="Signature")
    def signature_table(self, version: ModelVersion) -> str:
        rows = [
            (kind, spec["name"], spec["dtype"], spec["shape"])
            for kind in ("inputs", "outputs")
            for spec in version.signature.get(kind, [])
        ]
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
        return format_html(
            "<table><tr><th>kind</th><th>name</th><th>dtype</th><th>shape</th></tr>{}</table>",
            body,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The production version is never deleted directly: archive or replace it first.
        if obj is not None and obj.stage == Stage.PRODUCTION:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        services.model_version_delete(version=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset.select_related("model"):
            try:
                services.model_version_delete(version=version, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"{version}: {exc.message}", messages.ERROR)

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The upload form: the registration service validates and stores the file."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ModelVersionUploadForm(
            request.POST if request.method == "POST" else None,
            request.FILES if request.method == "POST" else None,
            initial={"model_name": request.GET.get("model_name", "")},
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            reference = data.get("reference")
            try:
                version = services.model_version_register(
                    model_name=data["model_name"],
                    file=data["file"],
                    filename=data["file"].name,
                    version=data["version"] or None,
                    stage=data["stage"],
                    alias=data["alias"] or None,
                    reference=reference,
                    reference_filename=reference.name if reference else None,
                    description=data["description"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.log_addition(request, version, [{"added": {}}])
                self.message_user(request, f"Registered {version}.", messages.SUCCESS)
                url = reverse("admin:models_registry_modelversion_change", args=[version.pk])
                return HttpResponseRedirect(url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload a model version",
            "form": form,
            "opts": self.model._meta,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/models_registry/modelversion/upload.html", context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        version = self.get_object(request, object_id)
        if version is None or not self.has_view_or_change_permission(request, version):
            raise PermissionDenied
        return _history_response(
            self,
            request,
            f"History of {version.model.name} v{version.version}",
            version,
            model_name=version.model.name,
            version=version.version,
        )


@admin.register(ModelAlias)
class ModelAliasAdmin(ReadOnlyAdmin):
    """Read-only: aliases move through the version actions, which audit the move."""

    list_display = ("model", "alias", "version", "updated_at")
    list_filter = ("alias", "model")
    list_select_related = ("model", "version")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit log, read-only for everyone."""

    list_display = (
        "created_at",
        "actor_name",
        "action",
        "model_name",
        "version",
        "from_value",
        "to_value",
        "details",
    )
    list_filter = ("action", "model_name")
    search_fields = ("model_name", "version", "actor_name")
    date_hierarchy = "created_at"
