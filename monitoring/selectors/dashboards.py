"""Reads behind the dashboard pages: what is served, its stage history, drift and routing.

Live numbers (requests/s, latency, errors) are not here: they come from the metrics
snapshot (``monitoring.services.live``). These selectors give the page its frame
from the database, and the websocket fills in the numbers every second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from inference.models import RoutingStrategy
from inference.selectors import routing_policy_get
from models_registry.models import Alias, AuditAction, AuditEvent, ModelVersion, RegisteredModel
from models_registry.selectors import audit_events_list
from models_registry.stages import allowed_targets, champion_resolve
from monitoring.models import (
    Alert,
    AlertKind,
    DriftReport,
    DriftStatus,
    PredictionLog,
    RetrainingJob,
)
from monitoring.selectors.experiments import ExperimentSummary, experiment_current

HISTORY_LIMIT = 200


@dataclass
class RoutingSplit:
    strategy: str
    strategy_label: str
    challenger_percent: float
    seed: str

    @property
    def champion_percent(self) -> float:
        if self.strategy == RoutingStrategy.SHADOW:
            return 100.0  # the challenger sees a copy; every answer is the champion's
        if self.strategy == RoutingStrategy.SINGLE:
            return 100.0
        return 100.0 - self.challenger_percent

    @property
    def effective_challenger_percent(self) -> float:
        if self.strategy == RoutingStrategy.SINGLE:
            return 0.0
        if self.strategy == RoutingStrategy.SHADOW:
            return 100.0  # scored on a copy of every request
        return self.challenger_percent


@dataclass
class ServedModel:
    name: str
    champion: ModelVersion | None
    challenger: ModelVersion | None
    routing: RoutingSplit
    latest_drift: DriftReport | None
    versions: list[ModelVersion] = field(default_factory=list)

    @property
    def primary(self) -> ModelVersion | None:
        return self.champion or self.challenger


@dataclass
class FeatureDrift:
    name: str
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    psi: float | None
    drift: bool


@dataclass
class VersionRow:
    version: ModelVersion
    aliases: list[str]
    allowed_moves: list[str]
    history: list[AuditEvent]


def _routing(model: RegisteredModel) -> RoutingSplit:
    policy = routing_policy_get(model=model)
    if policy is None:
        return RoutingSplit(
            strategy=RoutingStrategy.SINGLE,
            strategy_label=RoutingStrategy.SINGLE.label,
            challenger_percent=0.0,
            seed="",
        )
    return RoutingSplit(
        strategy=policy.strategy,
        strategy_label=RoutingStrategy(policy.strategy).label,
        challenger_percent=policy.challenger_percent,
        seed=policy.seed,
    )


def _served_model(model: RegisteredModel) -> ServedModel:
    versions = list(model.versions.all())
    aliases = {row.alias: row.version for row in model.aliases.all()}
    champion = champion_resolve(versions, alias_holder=aliases.get(Alias.CHAMPION))
    challenger = aliases.get(Alias.CHALLENGER)
    latest = (
        DriftReport.objects.filter(model_version__model=model)
        .select_related("model_version")
        .first()
    )
    return ServedModel(
        name=model.name,
        champion=champion,
        challenger=challenger,
        routing=_routing(model),
        latest_drift=latest,
        versions=versions,
    )


def _models() -> list[RegisteredModel]:
    return list(
        RegisteredModel.objects.prefetch_related("versions", "aliases__version").order_by("name")
    )


def served_models_list() -> list[ServedModel]:
    """Every model with a production version or a champion/challenger, by name."""
    served = [_served_model(model) for model in _models()]
    return [s for s in served if s.champion is not None or s.challenger is not None]


def dashboard_model_get(*, name: str) -> ServedModel | None:
    """One model's frame for its page (served or not), or None when there is no such model."""
    model = (
        RegisteredModel.objects.prefetch_related("versions", "aliases__version")
        .filter(name=name)
        .first()
    )
    return None if model is None else _served_model(model)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def drift_features(report: DriftReport) -> list[FeatureDrift]:
    """A report's per-feature results, drifted first, then by adjusted p-value."""
    return _drift_rows(report.features)


def prediction_drift_rows(report: DriftReport) -> list[FeatureDrift]:
    """A report's output tests (prediction, confidence), drifted first."""
    return _drift_rows(report.predictions)


def _drift_rows(results: dict[str, Any]) -> list[FeatureDrift]:
    rows = [
        FeatureDrift(
            name=name,
            test=str(values.get("test", "")),
            statistic=_finite(values.get("statistic")),
            p_value=_finite(values.get("p_value")),
            p_adjusted=_finite(values.get("p_adjusted")),
            psi=_finite(values.get("psi")),
            drift=bool(values.get("drift")),
        )
        for name, values in sorted(results.items())
        if isinstance(values, dict)
    ]
    rows.sort(key=lambda r: (not r.drift, r.p_adjusted if r.p_adjusted is not None else 1.0))
    return rows


def latest_drift_reports(*, served: ServedModel) -> list[tuple[ModelVersion, DriftReport]]:
    """The newest report of each served version (champion first)."""
    result: list[tuple[ModelVersion, DriftReport]] = []
    seen: set[int] = set()
    for version in (served.champion, served.challenger):
        if version is None or version.pk in seen:
            continue
        seen.add(version.pk)
        report = DriftReport.objects.filter(model_version=version).first()
        if report is not None:
            result.append((version, report))
    return result


def served_arms(*, served: ServedModel) -> list[tuple[str, ModelVersion]]:
    """("champion", version) and ("challenger", version) of the model, where set."""
    arms: list[tuple[str, ModelVersion]] = []
    for arm, version in (("champion", served.champion), ("challenger", served.challenger)):
        if version is not None and all(v.pk != version.pk for _, v in arms):
            arms.append((arm, version))
    return arms


def version_rows(*, served: ServedModel) -> list[VersionRow]:
    """Each version with its aliases, the stage moves allowed now and its stage history."""
    history: dict[str, list[AuditEvent]] = {}
    events = audit_events_list(
        model_name=served.name,
        actions=[AuditAction.STAGE, AuditAction.ALIAS, AuditAction.UPLOAD],
        limit=HISTORY_LIMIT,
    )
    for event in events:
        history.setdefault(event.version, []).append(event)
    aliases: dict[int, list[str]] = {}
    for name, version in (("champion", served.champion), ("challenger", served.challenger)):
        if version is not None:
            aliases.setdefault(version.pk, []).append(name)
    return [
        VersionRow(
            version=version,
            aliases=aliases.get(version.pk, []),
            allowed_moves=[s.value for s in allowed_targets(version.stage)],
            history=history.get(version.version, []),
        )
        for version in served.versions
    ]


def drift_reports_page(*, model_name: str | None, page: int | str, per_page: int = 50) -> Page[Any]:
    """Drift reports, newest first, optionally of one model, one page at a time."""
    reports = DriftReport.objects.select_related("model_version", "model_version__model")
    if model_name:
        reports = reports.filter(model_version__model__name=model_name)
    return Paginator(reports.order_by("-created_at", "-id"), per_page).get_page(page)


def drift_summary(report: DriftReport) -> dict[str, Any]:
    """How many features drifted, the smallest adjusted p-value and the largest PSI, and
    which outputs drifted (prediction, confidence)."""
    features = drift_features(report)
    p_values = [f.p_adjusted for f in features if f.p_adjusted is not None]
    psis = [f.psi for f in features if f.psi is not None]
    return {
        "features": len(features),
        "drifted": sum(1 for f in features if f.drift),
        "min_p": min(p_values) if p_values else None,
        "max_psi": max(psis) if psis else None,
        "drifted_outputs": [f.name for f in prediction_drift_rows(report) if f.drift],
    }


@dataclass
class ArmFeedback:
    version: str
    labelled: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def arm_feedback(
    *, model_name: str, versions: list[str], since: datetime | None = None
) -> list[ArmFeedback]:
    """Ground-truth agreement per version from the prediction log (rows with feedback)."""
    logs = PredictionLog.objects.filter(
        model_name=model_name, version__in=versions, actual__isnull=False
    )
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    counts: dict[str, tuple[int, int]] = {
        str(row["version"]): (int(row["labelled"]), int(row["correct"]))
        for row in logs.values("version").annotate(
            labelled=Count("id"), correct=Count("id", filter=Q(prediction=F("actual")))
        )
    }
    return [
        ArmFeedback(version=v, labelled=counts.get(v, (0, 0))[0], correct=counts.get(v, (0, 0))[1])
        for v in versions
    ]


@dataclass
class Experiment:
    served: ServedModel
    feedback: list[ArmFeedback]
    rollbacks: list[Alert]
    retraining: list[RetrainingJob]
    # The running (else latest) experiment record, with its last evaluation.
    current: ExperimentSummary | None = None


def experiments_list() -> list[Experiment]:
    """Models that have a challenger or a routing policy that splits traffic."""
    experiments = []
    for served in served_models_list():
        if served.challenger is None and served.routing.strategy == RoutingStrategy.SINGLE:
            continue
        versions = [v.version for v in (served.champion, served.challenger) if v is not None]
        experiments.append(
            Experiment(
                served=served,
                feedback=arm_feedback(model_name=served.name, versions=versions),
                rollbacks=list(
                    Alert.objects.filter(
                        kind=AlertKind.ROLLBACK, model_version__model__name=served.name
                    )[:5]
                ),
                retraining=list(RetrainingJob.objects.filter(model__name=served.name)[:5]),
                current=experiment_current(model_name=served.name),
            )
        )
    return experiments


def prediction_log_stats(*, window: timedelta = timedelta(minutes=5)) -> dict[str, Any]:
    """What the consumer has written: total rows, rows in the window, newest row's age."""
    now = timezone.now()
    newest = PredictionLog.objects.aggregate(newest=Max("created_at"))["newest"]
    return {
        "rows": PredictionLog.objects.count(),
        "recent_rows": PredictionLog.objects.filter(created_at__gte=now - window).count(),
        "window_s": int(window.total_seconds()),
        "newest_at": newest,
        "newest_age_s": (now - newest).total_seconds() if newest is not None else None,
    }


def drift_status_counts(*, served_models: list[ServedModel]) -> dict[str, int]:
    """Latest report status per served model, counted (for the overview's header)."""
    counts = {status.value: 0 for status in DriftStatus}
    for served in served_models:
        if served.latest_drift is not None:
            counts[served.latest_drift.status] = counts.get(served.latest_drift.status, 0) + 1
    return counts
