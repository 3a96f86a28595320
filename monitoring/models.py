"""Prediction log, drift reports, alerts, retraining jobs and experiments."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from models_registry.models import ModelVersion, RegisteredModel


class PredictionLog(models.Model):
    """One scored row, written from the event bus. Names are copied, not foreign keys,
    so the log outlives a deleted version and the consumer needs no lookups."""

    event_id = models.UUIDField(unique=True)
    request_id = models.CharField(max_length=64, db_index=True)
    row_index = models.PositiveIntegerField(default=0)
    model_name = models.CharField(max_length=128)
    version = models.CharField(max_length=64)
    routed_by = models.CharField(max_length=32)
    features = models.JSONField()
    prediction = models.JSONField()
    probabilities = models.JSONField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField()
    created_at = models.DateTimeField()
    actual = models.JSONField(null=True, blank=True)
    actual_at = models.DateTimeField(null=True, blank=True)
    # The id of the API key that made the prediction (copied, not a foreign key, like
    # the names): its owner may label it. None for rows logged before keys were recorded.
    api_key_id = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        permissions = [
            ("label_predictionlog", "Can give ground truth (labels) for any logged prediction")
        ]
        indexes = [
            models.Index(
                fields=["model_name", "version", "created_at"], name="predlog_drift_window"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_id}#{self.row_index} {self.model_name} v{self.version}"


class PendingFeedback(models.Model):
    """Ground truth that arrived before its prediction rows (Kafka: the consumer may lag).

    The consumer applies it when the rows are written and deletes it; entries
    older than a day are purged as unknown request ids.
    """

    request_id = models.CharField(max_length=64, unique=True)
    actual = models.JSONField()
    received_at = models.DateTimeField()
    # Who sent it, checked against the rows when they arrive: the key that made the
    # prediction, a labelling key for its model, or a person allowed to label.
    api_key_id = models.PositiveBigIntegerField(null=True, blank=True)
    by_labeller = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"pending feedback for {self.request_id}"


class DriftStatus(models.TextChoices):
    OK = "ok", "No drift"
    DRIFT = "drift", "Drift detected"
    INSUFFICIENT_DATA = "insufficient_data", "Too few rows"
    DUPLICATES = "duplicates", "Dominated by duplicate rows"


class DriftReport(models.Model):
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="drift_reports"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.PositiveIntegerField()
    reference_rows = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=32, choices=DriftStatus.choices)
    alpha = models.FloatField()
    correction = models.CharField(max_length=32)
    # {feature: {"test", "statistic", "p_value", "p_adjusted", "psi", "wasserstein", "drift"}}
    features = models.JSONField(default=dict)
    # Share of the window's rows that repeat an earlier row (status "duplicates" at or
    # above PHOENIX_DRIFT_DUPLICATE_SHARE), and the API key that sent most repeats.
    duplicate_share = models.FloatField(null=True, blank=True)
    duplicate_api_key_id = models.PositiveBigIntegerField(null=True, blank=True)
    # Prediction drift, the same shape per output ("prediction", "confidence"), each
    # with "kind" (class_shares or value); {} when the outputs were not tested.
    predictions = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model_version}: {self.status} at {self.created_at:%Y-%m-%d %H:%M}"


class PerformanceStatus(models.TextChoices):
    OK = "ok", "Within bounds"
    DEGRADED = "degraded", "Degraded"
    INSUFFICIENT_DATA = "insufficient_data", "Too few labels"


class PerformanceReport(models.Model):
    """A version's performance over one window of predictions, from their ground truth.

    ``metrics`` holds the task's metrics (classifier: accuracy, roc_auc, ece; regressor:
    mae, rmse), ``holdout`` the version's registry metrics they were compared with, and
    ``comparisons`` each judged metric's change and limit (``monitoring.performance``).
    """

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="performance_reports"
    )
    task = models.CharField(max_length=16)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    # Predictions in the window, those of them with a label, and the labelled share.
    rows = models.PositiveIntegerField()
    labelled = models.PositiveIntegerField()
    labelled_share = models.FloatField(null=True, blank=True)
    # Seconds from prediction to label of the labelled rows.
    label_delay_p50_s = models.FloatField(null=True, blank=True)
    label_delay_p95_s = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=32, choices=PerformanceStatus.choices)
    metrics = models.JSONField(default=dict, blank=True)
    holdout = models.JSONField(default=dict, blank=True)
    comparisons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model_version", "-window_end"], name="perfreport_version_end"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version}: {self.status} at {self.created_at:%Y-%m-%d %H:%M}"


class AlertKind(models.TextChoices):
    DRIFT = "drift", "Drift"
    RETRAINING = "retraining", "Retraining"
    ROLLBACK = "rollback", "Rollback"
    PERFORMANCE = "performance", "Performance"


class Alert(models.Model):
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    message = models.TextField()
    payload = models.JSONField(default=dict, blank=True)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message[:80]}"


class RetrainingStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    MANUAL = "manual", "Manual retraining needed"


class RetrainingJob(models.Model):
    model = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="retraining_jobs"
    )
    drift_report = models.ForeignKey(
        DriftReport, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=RetrainingStatus.choices, default=RetrainingStatus.QUEUED
    )
    new_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"retrain {self.model.name}: {self.status}"


class CheckLock(models.Model):
    """A held lock on a named piece of work, shared by every process through the database.

    Used where PostgreSQL's advisory locks are not available (SQLite, the embedded
    default): the unique name makes a second holder's insert fail. A holder that died
    leaves its row until ``expires_at``, after which the next one takes it over.
    """

    name = models.CharField(max_length=128, unique=True)
    token = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"lock {self.name} until {self.expires_at:%Y-%m-%d %H:%M:%S}"


class ExperimentMode(models.TextChoices):
    SHADOW = "shadow", "Shadow (challenger scores a copy; paired test)"
    CANARY = "canary", "Canary (stepped share of requests)"
    AB = "ab", "A/B (fixed share, sticky per entity)"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    ROLLED_BACK = "rolled_back", "Rolled back"
    PROMOTED = "promoted", "Promoted"
    STOPPED = "stopped", "Stopped"


class PrimaryMetric(models.TextChoices):
    ACCURACY = "accuracy", "Accuracy from feedback"
    GUARDS_ONLY = "guards_only", "Guards only (unlabelled traffic)"


def default_canary_steps() -> list[float]:
    return [5.0, 25.0, 50.0, 100.0]


def default_guards() -> dict[str, float | None]:
    return {
        "max_error_rate_increase": 0.02,
        "latency_p99_ceiling_ms": None,
        "latency_p99_max_ratio": 3.0,
        "max_class_share": 0.95,
        "max_confidence_drop": 0.2,
    }


class Experiment(models.Model):
    """Champion vs challenger of one model, decided by monitoring.experiments' tests.

    Starting it sets the model's RoutingPolicy; rollback, stop and promotion restore
    or replace it (monitoring.services.experiments). ``statistics`` holds the latest
    evaluation: the tests, each guard and the canary step, as the page shows them.
    """

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="experiments")
    champion = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    challenger = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    mode = models.CharField(max_length=16, choices=ExperimentMode.choices)
    # A/B: the challenger's share (0-100 %). Canary: the plan below; shadow with a plan
    # moves on to the canary once the paired test says better.
    traffic_percent = models.FloatField(default=50.0)
    canary_steps = models.JSONField(default=default_canary_steps, blank=True)
    canary_step = models.PositiveSmallIntegerField(default=0)
    step_interval_s = models.PositiveIntegerField(default=300)
    step_min_samples = models.PositiveIntegerField(default=100)
    seed = models.CharField(max_length=64, default="phoenix")
    primary_metric = models.CharField(
        max_length=16, choices=PrimaryMetric.choices, default=PrimaryMetric.ACCURACY
    )
    guards = models.JSONField(default=default_guards, blank=True)
    alpha = models.FloatField(default=0.05)
    min_samples = models.PositiveIntegerField(default=200)
    auto_promote = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT
    )
    decision = models.CharField(max_length=16, blank=True)
    reason = models.TextField(blank=True)
    statistics = models.JSONField(default=dict, blank=True)
    # The routing policy before start, restored by stop.
    previous_routing = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Start of the current phase (shadow, then canary) and of the current canary step.
    phase_started_at = models.DateTimeField(null=True, blank=True)
    step_started_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(status="running"),
                name="one_running_experiment_per_model",
            ),
            models.CheckConstraint(
                condition=models.Q(traffic_percent__gte=0.0, traffic_percent__lte=100.0),
                name="experiment_traffic_percent_in_range",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.model.name}: v{self.champion.version} vs v{self.challenger.version} "
            f"({self.mode}, {self.status})"
        )
