"""Registered models, their versions, aliases and the audit trail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from .stages import STAGE_CHOICES, Stage

MODEL_NAME_VALIDATOR = RegexValidator(
    r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$",
    "Use letters, digits, '-', '_' and '.', starting with a letter or digit (128 at most).",
)
VERSION_VALIDATOR = RegexValidator(
    r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$",
    "Use letters, digits, '-', '_' and '.', starting with a letter or digit (64 at most).",
)


class Alias(models.TextChoices):
    CHAMPION = "champion", "Champion"
    CHALLENGER = "challenger", "Challenger"


class RegisteredModel(models.Model):
    name = models.CharField(max_length=128, unique=True, validators=[MODEL_NAME_VALIDATOR])
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    tags = models.JSONField(default=dict, blank=True)
    # The retraining recipe: a registered name or a dotted path (monitoring.services.retraining).
    retraining_recipe = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def model_version_upload_to(instance: ModelVersion, filename: str) -> str:
    # Content-addressed, so a replaced file can never be mistaken for the old one.
    return f"models/{instance.model.name}/{instance.sha256}/model.onnx"


def reference_upload_to(instance: ModelVersion, filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "csv"
    return f"reference/{instance.model.name}/{instance.version}/reference.{suffix}"


class ModelVersion(models.Model):
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=64, validators=[VERSION_VALIDATOR])
    file = models.FileField(upload_to=model_version_upload_to, max_length=500)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    stage = models.CharField(max_length=16, choices=STAGE_CHOICES, default=Stage.DEV)
    # {"inputs": [{"name", "dtype", "shape"}], "outputs": [...]} read from the ONNX graph.
    signature = models.JSONField(default=dict)
    feature_names = models.JSONField(default=list, blank=True)
    # producer, opset, ir_version, metadata_props: what the graph says about itself.
    framework = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    reference_data = models.FileField(upload_to=reference_upload_to, blank=True, max_length=500)
    reference_rows = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    stage_changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="unique_version_per_model"),
            models.UniqueConstraint(fields=["model", "sha256"], name="unique_sha256_per_model"),
            # The database itself refuses a second production version of one model.
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(stage="production"),
                name="one_production_version_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.version} ({self.stage})"

    @property
    def input_names(self) -> list[str]:
        inputs: list[dict[str, Any]] = self.signature.get("inputs", [])
        return [i["name"] for i in inputs]


class ModelAlias(models.Model):
    """MLflow-style alias: at most one version of a model holds each alias."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=16, choices=Alias.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "alias"], name="one_version_per_alias"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}@{self.alias} -> v{self.version.version}"


class AuditAction(models.TextChoices):
    UPLOAD = "upload", "Upload"
    STAGE = "stage", "Stage change"
    ALIAS = "alias", "Alias change"
    REFERENCE = "reference", "Reference data attached"
    DELETE = "delete", "Deletion"
    EXPERIMENT = "experiment", "Experiment"
    ROUTING = "routing", "Routing policy change"
    API_KEY = "api_key", "API key change"
    LOGIN = "login", "Sign-in"
    RELABEL = "relabel", "Relabelling"


class AuditEvent(models.Model):
    """Who moved what, from where to where. Names are copied so the row outlives deletions.

    Beyond the registry's own moves it records routing-policy and API-key changes,
    sign-ins and relabelled ground truth (``model_name`` empty where no model is
    concerned, e.g. a sign-in)."""

    model_name = models.CharField(max_length=128, db_index=True, blank=True)
    version = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    from_value = models.CharField(max_length=64, blank=True)
    to_value = models.CharField(max_length=64, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        who = self.actor_name or "system"
        when = f"{self.created_at:%Y-%m-%d %H:%M}"
        return f"{when} {who} {self.action} {self.model_name} v{self.version}"
