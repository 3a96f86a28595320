"""Routing policies, API keys and the database-backed online feature store."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from models_registry.models import RegisteredModel

from . import batching


class RoutingStrategy(models.TextChoices):
    SINGLE = "single", "Single (champion / production only)"
    AB = "ab", "A/B (weighted, sticky per entity)"
    CANARY = "canary", "Canary (percentage of requests)"
    SHADOW = "shadow", "Shadow (challenger scored on a copy, not returned)"


class RoutingPolicy(models.Model):
    """How requests for one model are split between its champion and challenger."""

    model = models.OneToOneField(
        RegisteredModel, on_delete=models.CASCADE, related_name="routing_policy"
    )
    strategy = models.CharField(
        max_length=16, choices=RoutingStrategy.choices, default=RoutingStrategy.SINGLE
    )
    # Share of traffic (0-100 %) the challenger receives under ab and canary.
    challenger_percent = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(100.0)]
    )
    # Changing the seed reshuffles which entities land in which arm.
    seed = models.CharField(max_length=64, default="phoenix")
    # Off by default: on a CPU a single-row run costs microseconds and the wait for
    # company can cost more than it saves; a GPU model wants it on.
    micro_batching = models.BooleanField(
        default=False,
        help_text="Run concurrent requests to the same version as one batched model run.",
    )
    micro_batch_max_rows = models.PositiveIntegerField(
        default=batching.DEFAULT_MAX_ROWS,
        validators=[
            MinValueValidator(batching.MAX_ROWS_MIN),
            MaxValueValidator(batching.MAX_ROWS_MAX),
        ],
        help_text="A batch starts at once when it holds this many rows.",
    )
    micro_batch_max_delay_ms = models.FloatField(
        default=batching.DEFAULT_MAX_DELAY_MS,
        validators=[
            MinValueValidator(batching.MAX_DELAY_MS_MIN),
            MaxValueValidator(batching.MAX_DELAY_MS_MAX),
        ],
        help_text="The longest a request waits for others (milliseconds) before its batch runs.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "routing policies"
        constraints = [
            # Serving builds a BatchingPolicy from these, which refuses other values.
            models.CheckConstraint(
                condition=models.Q(
                    micro_batch_max_rows__gte=batching.MAX_ROWS_MIN,
                    micro_batch_max_rows__lte=batching.MAX_ROWS_MAX,
                ),
                name="micro_batch_max_rows_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    micro_batch_max_delay_ms__gte=batching.MAX_DELAY_MS_MIN,
                    micro_batch_max_delay_ms__lte=batching.MAX_DELAY_MS_MAX,
                ),
                name="micro_batch_max_delay_ms_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name}: {self.strategy}"


class ApiKey(models.Model):
    """A client credential. Only a SHA-256 of the key is stored; the key is shown once."""

    name = models.CharField(max_length=100)
    # The first characters of the key, kept in clear so an operator can tell keys apart.
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    # Scope is explicit: every model (present and future) only when all_models is set;
    # otherwise the allowed models, so a key whose models are all deleted serves nothing.
    all_models = models.BooleanField(
        default=False,
        help_text="Serve every model, present and future (else only the allowed models).",
    )
    allowed_models = models.ManyToManyField(RegisteredModel, blank=True, related_name="api_keys")
    # Ground truth is otherwise taken only from the key that made the prediction.
    can_label = models.BooleanField(
        default=False,
        help_text="May give feedback (ground truth) on any prediction of its models, "
        "not only on its own.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="After this time the key is refused (401). Empty: never."
    )
    # Written by each serving process in batches (inference/api_key_usage.py), not per
    # request, so it may lag real use by up to PHOENIX_API_KEY_USAGE_FLUSH_S.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class OnlineFeature(models.Model):
    """One feature value of one entity: the embedded feature store's table."""

    entity_id = models.CharField(max_length=128)
    name = models.CharField(max_length=128)
    value = models.FloatField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["entity_id", "name"], name="one_value_per_entity_feature"
            )
        ]

    def __str__(self) -> str:
        return f"{self.entity_id}.{self.name}={self.value}"
