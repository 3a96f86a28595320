"""Reads behind the experiments page, the REST resource and the admin: one experiment's
arms, test, guards and canary step as the last evaluation stored them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from monitoring.models import Experiment, ExperimentStatus

RECENT_LIMIT = 20


@dataclass
class ExperimentSummary:
    record: Experiment
    arms: dict[str, dict[str, Any]]
    primary: dict[str, Any] | None
    guards: list[dict[str, Any]]
    canary: dict[str, Any]
    evaluated_at: str | None

    @property
    def canary_percent(self) -> float | None:
        steps = self.record.canary_steps or []
        if self.record.mode != "canary" or not steps:
            return None
        return float(steps[min(self.record.canary_step, len(steps) - 1)])

    @property
    def running(self) -> bool:
        return self.record.status == ExperimentStatus.RUNNING


def experiment_summary(experiment: Experiment) -> ExperimentSummary:
    stats = experiment.statistics or {}
    return ExperimentSummary(
        record=experiment,
        arms=stats.get("arms") or {},
        primary=stats.get("primary"),
        guards=list(stats.get("guards") or []),
        canary=stats.get("canary") or {},
        evaluated_at=stats.get("evaluated_at"),
    )


def _query() -> QuerySet[Experiment]:
    return Experiment.objects.select_related("model", "champion", "challenger", "decided_by")


def experiment_current(*, model_name: str) -> ExperimentSummary | None:
    """The model's running experiment, else its latest one, or None."""
    found = (
        _query().filter(model__name=model_name, status=ExperimentStatus.RUNNING).first()
        or _query().filter(model__name=model_name).first()
    )
    return experiment_summary(found) if found is not None else None


def experiments_recent(*, limit: int = RECENT_LIMIT) -> list[Experiment]:
    return list(_query()[:limit])
