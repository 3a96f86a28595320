"""Admin for routing policies, API keys and the embedded feature store.

Every save or delete of a policy or key is broadcast (after commit) so each API
process drops its in-process copy: the warm predict path never reads these tables.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from phoenix.change_bus import ChangeReason

from . import batching
from .api_keys import api_key_audit, api_key_mint, api_key_revoke
from .models import ApiKey, OnlineFeature, RoutingPolicy
from .services import inference_config_changed, routing_policies_delete, routing_policy_save

_ROUTING_FIELDS = ("model", "strategy", "challenger_percent", "seed")
_BATCHING_DEFAULTS = {
    "micro_batch_max_rows": batching.DEFAULT_MAX_ROWS,
    "micro_batch_max_delay_ms": batching.DEFAULT_MAX_DELAY_MS,
}
_BATCHING_FIELDS = ("micro_batching", *_BATCHING_DEFAULTS)


class RoutingPolicyForm(forms.ModelForm[RoutingPolicy]):
    """The batching numbers may be left out or empty: they keep their defaults, so
    a post made before micro-batching existed still saves the same policy."""

    class Meta:
        model = RoutingPolicy
        fields = [*_ROUTING_FIELDS, *_BATCHING_FIELDS]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in _BATCHING_DEFAULTS:
            self.fields[name].required = False

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name, default in _BATCHING_DEFAULTS.items():
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = default
        return cleaned


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin[RoutingPolicy]):
    form = RoutingPolicyForm
    list_display = [
        "model",
        "strategy",
        "challenger_percent",
        "seed",
        "micro_batching",
        "updated_at",
    ]
    list_filter = ["strategy", "micro_batching"]
    search_fields = ["model__name"]
    fieldsets = [
        (None, {"fields": _ROUTING_FIELDS}),
        (
            "Micro-batching",
            {
                "fields": _BATCHING_FIELDS,
                "description": "Concurrent requests to the same version run as one batch."
                " Pays where a model run costs far more than the wait (GPU models).",
            },
        ),
    ]

    def save_model(self, request: HttpRequest, obj: RoutingPolicy, form: Any, change: bool) -> None:
        routing_policy_save(policy=obj, actor=request.user)

    def delete_model(self, request: HttpRequest, obj: RoutingPolicy) -> None:
        routing_policies_delete(
            policies=RoutingPolicy.objects.filter(pk=obj.pk), actor=request.user
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RoutingPolicy]) -> None:
        routing_policies_delete(policies=queryset, actor=request.user)


class ApiKeyForm(forms.ModelForm[ApiKey]):
    """A key's scope is explicit: some models, or all of them, never an empty list that
    would silently mean either."""

    class Meta:
        model = ApiKey
        fields = ["name", "all_models", "allowed_models", "can_label", "expires_at", "revoked_at"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        chosen = cleaned.get("allowed_models")
        has_models = chosen is not None and len(chosen) > 0
        if "allowed_models" not in self.errors and has_models == bool(cleaned.get("all_models")):
            raise forms.ValidationError(
                "Choose the models this key may use, or tick 'all models' (not both)."
            )
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin[ApiKey]):
    form = ApiKeyForm
    list_display = [
        "name",
        "prefix",
        "all_models",
        "can_label",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "created_by",
    ]
    list_filter = ["all_models", "can_label", "revoked_at", "expires_at"]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["allowed_models"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at"]
    fields = [
        "name",
        "all_models",
        "allowed_models",
        "can_label",
        "prefix",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            # The key exists in clear only in this message; the table keeps its hash.
            key = api_key_mint(obj)
            obj.created_by = request.user  # type: ignore[assignment]
            messages.warning(request, f"API key for {obj.name!r} (shown once, copy it now): {key}")
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        api_key_audit(
            api_key=form.instance,
            change="changed" if change else "created",
            actor=request.user,
            fields=list(form.changed_data),
        )
        inference_config_changed(reason=ChangeReason.API_KEY)

    def delete_model(self, request: HttpRequest, obj: ApiKey) -> None:
        api_key_audit(api_key=obj, change="deleted", actor=request.user)
        super().delete_model(request, obj)
        inference_config_changed(reason=ChangeReason.API_KEY)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_audit(api_key=api_key, change="deleted", actor=request.user)
        super().delete_queryset(request, queryset)
        inference_config_changed(reason=ChangeReason.API_KEY)

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            api_key_revoke(api_key=api_key, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(OnlineFeature)
class OnlineFeatureAdmin(admin.ModelAdmin[OnlineFeature]):
    list_display = ["entity_id", "name", "value", "updated_at"]
    search_fields = ["entity_id", "name"]
    list_filter = ["name"]
