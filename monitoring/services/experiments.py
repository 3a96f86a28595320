"""Experiments: start, evaluate (tests, guards, canary steps), promote, roll back, stop.

The statistics are ``monitoring.experiments`` (pure); this module reads the prediction
log, writes the decision, and moves the routing and the registry. Every change of
routing goes through the model's ``RoutingPolicy`` and is broadcast after commit as
"the registry changed", so each serving process rebuilds its plan from the database
once and answers the next request from memory: no query on the request path, no
restart, and the champion serves throughout (a rollback only stops routing to the
challenger).

Per-arm data come from ``PredictionLog`` rows of the current phase:

* shadow: the champion's rows (``routed_by`` ``shadow:champion``) paired with the
  challenger's shadow rows (``routing.shadow_request_id`` of the client's id). A
  champion request older than ``SHADOW_GRACE_S`` with no shadow row counts as a
  challenger error (it failed, or its queue was full). The paired test uses the
  ground truth of either row of a pair.
* canary / A/B: the rows each arm answered (``canary:champion``, ``canary:challenger``).
  Failed requests are not logged: the error-rate guard counts them from the inference
  request counters (``request_counts``: Prometheus, or this host's metrics).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from inference import routing
from inference.models import RoutingPolicy, RoutingStrategy
from inference.services import inference_config_changed
from models_registry.models import (
    Alias,
    AuditAction,
    AuditEvent,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
)
from models_registry.services import (
    model_alias_delete,
    model_alias_set,
    model_version_set_stage,
)
from models_registry.stages import Stage
from monitoring import experiments as stats
from monitoring.models import (
    AlertKind,
    Experiment,
    ExperimentMode,
    ExperimentStatus,
    PredictionLog,
    PrimaryMetric,
)
from monitoring.services import dashboard_push, request_counts
from monitoring.services.alerts import alert_create, experiment_event_publish
from phoenix.change_bus import ChangeReason
from phoenix.exceptions import Conflict, InvalidInput, NotFound

logger = logging.getLogger(__name__)

# A shadow row is written after the champion's; give it this long before counting it missing.
SHADOW_GRACE_S = 30.0
# The newest rows of a phase that are read per evaluation: enough for any verdict.
MAX_ROWS = 200_000


class ExperimentConflict(Conflict):
    code = "experiment_conflict"


class ExperimentNotFound(NotFound):
    code = "experiment_not_found"


def _user(actor: Any) -> Any:
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def _audit(experiment: Experiment, *, actor: Any, to_value: str, details: dict[str, Any]) -> None:
    user = _user(actor)
    AuditEvent.objects.create(
        model_name=experiment.model.name,
        version=experiment.challenger.version,
        action=AuditAction.EXPERIMENT,
        from_value=experiment.status,
        to_value=to_value,
        actor=user,
        actor_name=user.get_username() if user is not None else "",
        details={"experiment": experiment.pk, **details},
    )


def _push(kind: str, experiment: Experiment, **extra: Any) -> None:
    """After commit: a dashboard event, and a record on the experiments Kafka topic."""
    payload = {
        "model": experiment.model.name,
        "version": experiment.challenger.version,
        "experiment": experiment.pk,
        "status": experiment.status,
        "canary_step": experiment.canary_step,
        **extra,
    }
    record = {
        "type": "experiment",
        "champion": experiment.champion.version,
        "challenger": experiment.challenger.version,
        "mode": experiment.mode,
        "reason": experiment.reason,
        "at": timezone.now().isoformat(),
        **payload,
    }

    def publish() -> None:
        dashboard_push.dashboard_event_push(kind, payload)
        experiment_event_publish(record)

    transaction.on_commit(publish)


# --- routing ------------------------------------------------------------------------------


def _routing_snapshot(policy: RoutingPolicy) -> dict[str, Any]:
    return {
        "strategy": policy.strategy,
        "challenger_percent": policy.challenger_percent,
        "seed": policy.seed,
    }


def _route(model: RegisteredModel, *, strategy: str, percent: float, seed: str | None) -> None:
    """Set the model's routing (caller holds the transaction); broadcast after commit."""
    policy, _ = RoutingPolicy.objects.select_for_update().get_or_create(model=model)
    policy.strategy = strategy
    policy.challenger_percent = percent
    if seed is not None:
        policy.seed = seed
    policy.save(update_fields=["strategy", "challenger_percent", "seed", "updated_at"])
    inference_config_changed(model_name=model.name, reason=ChangeReason.ROUTING_POLICY)


def _route_for_phase(experiment: Experiment) -> None:
    if experiment.mode == ExperimentMode.SHADOW:
        strategy, percent = RoutingStrategy.SHADOW, 0.0
    elif experiment.mode == ExperimentMode.CANARY:
        strategy = RoutingStrategy.CANARY
        percent = float(experiment.canary_steps[experiment.canary_step])
    else:
        strategy, percent = RoutingStrategy.AB, float(experiment.traffic_percent)
    _route(experiment.model, strategy=strategy, percent=percent, seed=experiment.seed)


def _route_champion_only(model: RegisteredModel) -> None:
    _route(model, strategy=RoutingStrategy.SINGLE, percent=0.0, seed=None)


# --- create, start, stop ------------------------------------------------------------------


def _champion_of(model: RegisteredModel) -> ModelVersion | None:
    row = ModelAlias.objects.select_related("version").filter(model=model, alias=Alias.CHAMPION)
    held = row.first()
    if held is not None:
        return held.version
    return ModelVersion.objects.filter(model=model, stage=Stage.PRODUCTION).first()


def experiment_create(
    *,
    model: RegisteredModel,
    challenger: ModelVersion,
    mode: str,
    champion: ModelVersion | None = None,
    actor: Any = None,
    **fields: Any,
) -> Experiment:
    """A draft experiment of ``challenger`` against the model's champion (alias, else its
    production version). ``fields`` are Experiment fields (traffic_percent,
    canary_steps, step_interval_s, guards, alpha, min_samples, auto_promote, ...).

    Raises InvalidInput (unknown mode, bad plan or share, versions of another model,
    the challenger is the champion) and ExperimentConflict (no champion).
    """
    if mode not in ExperimentMode.values:
        raise InvalidInput(
            f"Unknown mode {mode!r}; use one of {', '.join(ExperimentMode.values)}.",
            details={"mode": mode},
        )
    champion = champion or _champion_of(model)
    if champion is None:
        raise ExperimentConflict(f"{model.name} has no champion or production version.")
    for version in (champion, challenger):
        if version.model_id != model.pk:
            raise InvalidInput(f"Version {version.version} does not belong to {model.name}.")
    if champion.pk == challenger.pk or champion.sha256 == challenger.sha256:
        raise InvalidInput("The challenger is the champion; there is nothing to compare.")
    if challenger.stage == Stage.ARCHIVED:
        raise InvalidInput(f"Version {challenger.version} is archived and cannot be served.")
    experiment = Experiment(
        model=model,
        champion=champion,
        challenger=challenger,
        mode=mode,
        created_by=_user(actor),
        **fields,
    )
    _validate(experiment)
    experiment.save()
    return experiment


def _validate(experiment: Experiment) -> None:
    try:
        if experiment.canary_steps or experiment.mode == ExperimentMode.CANARY:
            experiment.canary_steps = stats.canary_plan_validate(experiment.canary_steps)
    except ValueError as exc:
        raise InvalidInput(str(exc), details={"canary_steps": experiment.canary_steps}) from exc
    if not 0.0 < float(experiment.traffic_percent) <= 100.0:
        raise InvalidInput("traffic_percent must be in (0, 100].")
    if not 0.0 < float(experiment.alpha) < 1.0:
        raise InvalidInput("alpha must be in (0, 1).")
    if experiment.primary_metric not in PrimaryMetric.values:
        raise InvalidInput(f"Unknown primary metric {experiment.primary_metric!r}.")
    unknown = set(experiment.guards or {}) - set(_GUARD_DEFAULTS)
    if unknown:
        raise InvalidInput(f"Unknown guards: {', '.join(sorted(unknown))}.")


def _locked(experiment_id: int) -> Experiment:
    # Only the experiment's row: the registry takes the model's row lock itself.
    found = (
        Experiment.objects.select_for_update(of=("self",))
        .select_related("model", "champion", "challenger")
        .filter(pk=experiment_id)
        .first()
    )
    if found is None:
        raise ExperimentNotFound(f"No experiment {experiment_id}.")
    return found


def experiment_start(*, experiment_id: int, actor: Any = None) -> Experiment:
    """Run a draft: the challenger gets the ``challenger`` alias and the model's routing
    follows the mode, in one transaction. Raises ExperimentNotFound and
    ExperimentConflict (not a draft, or another experiment of the model is running).
    """
    try:
        with transaction.atomic():
            experiment = _locked(experiment_id)
            if experiment.status != ExperimentStatus.DRAFT:
                raise ExperimentConflict(
                    f"Experiment {experiment.pk} is {experiment.status}; only a draft starts."
                )
            now = timezone.now()
            policy = RoutingPolicy.objects.filter(model=experiment.model).first()
            experiment.previous_routing = _routing_snapshot(policy) if policy else {}
            _audit(experiment, actor=actor, to_value=ExperimentStatus.RUNNING, details={})
            experiment.status = ExperimentStatus.RUNNING
            experiment.started_at = experiment.phase_started_at = now
            experiment.step_started_at = now
            experiment.canary_step = 0
            _requests_baseline(experiment)
            experiment.save()  # the conditional unique constraint refuses a second one
            model_alias_set(
                model=experiment.model,
                alias=Alias.CHALLENGER,
                version=experiment.challenger,
                actor=actor,
            )
            _route_for_phase(experiment)
            _push("experiment", experiment, action="start")
    except IntegrityError as exc:
        raise ExperimentConflict(
            "Another experiment of this model is running; stop it first."
        ) from exc
    logger.info(
        "experiment %s of %s started (%s)", experiment.pk, experiment.model, experiment.mode
    )
    return experiment


def _end(experiment: Experiment, *, status: str, decision: str, reason: str, actor: Any) -> None:
    _audit(experiment, actor=actor, to_value=status, details={"reason": reason})
    experiment.status = status
    experiment.decision = decision
    experiment.reason = reason
    experiment.decided_by = _user(actor)
    experiment.ended_at = timezone.now()
    experiment.save()
    _push("experiment", experiment, action=decision, message=reason or None)


def experiment_stop(*, experiment_id: int, actor: Any = None, reason: str = "") -> Experiment:
    """End a running (or draft) experiment without a verdict; the routing that was in
    place before it started comes back. Raises ExperimentNotFound, ExperimentConflict."""
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status not in (ExperimentStatus.RUNNING, ExperimentStatus.DRAFT):
            raise ExperimentConflict(f"Experiment {experiment.pk} is already {experiment.status}.")
        if experiment.status == ExperimentStatus.RUNNING:
            before = experiment.previous_routing or {}
            _route(
                experiment.model,
                strategy=before.get("strategy", RoutingStrategy.SINGLE),
                percent=float(before.get("challenger_percent", 0.0)),
                seed=before.get("seed"),
            )
        _end(
            experiment,
            status=ExperimentStatus.STOPPED,
            decision="stop",
            reason=reason or "stopped by hand",
            actor=actor,
        )
    return experiment


def experiment_rollback(*, experiment_id: int, actor: Any = None, reason: str) -> Experiment:
    """Challenger to 0 %: champion-only routing, experiment ``rolled_back`` with the
    reason and its numbers, an ``Alert(kind=rollback)`` (webhook, dashboards). Raises
    ExperimentNotFound, ExperimentConflict (not running)."""
    with transaction.atomic():
        experiment = _locked(experiment_id)
        return _rollback(experiment, actor=actor, reason=reason)


def _rollback(experiment: Experiment, *, actor: Any, reason: str) -> Experiment:
    if experiment.status != ExperimentStatus.RUNNING:
        raise ExperimentConflict(f"Experiment {experiment.pk} is {experiment.status}.")
    _route_champion_only(experiment.model)
    _end(
        experiment,
        status=ExperimentStatus.ROLLED_BACK,
        decision="rollback",
        reason=reason,
        actor=actor,
    )
    alert = alert_create(
        kind=AlertKind.ROLLBACK,
        message=(
            f"{experiment.model.name} v{experiment.challenger.version} rolled back "
            f"({experiment.mode}): {reason}"
        ),
        model_version=experiment.challenger,
        payload={
            "model": experiment.model.name,
            "experiment": experiment.pk,
            "champion": experiment.champion.version,
            "challenger": experiment.challenger.version,
            "reason": reason,
            "statistics": experiment.statistics,
        },
    )
    alert_id, model_name = alert.id, experiment.model.name
    version, message = experiment.challenger.version, alert.message

    def push() -> None:
        dashboard_push.dashboard_event_push(
            "rollback",
            {"alert_id": alert_id, "model": model_name, "version": version, "message": message},
        )

    transaction.on_commit(push)
    logger.warning("experiment %s rolled back: %s", experiment.pk, reason)
    return experiment


def experiment_promote(*, experiment_id: int, actor: Any = None, reason: str = "") -> Experiment:
    """The challenger becomes production and champion, the old champion moves by
    ``PHOENIX_PREVIOUS_PRODUCTION_STAGE``, routing goes back to single, the experiment
    ends ``promoted``: one transaction, audited with who and why. Serving processes
    switch plans after commit; the old champion answers until then.

    Raises ExperimentNotFound, ExperimentConflict (not running), StageConflict.
    """
    with transaction.atomic():
        experiment = _locked(experiment_id)
        return _promote(experiment, actor=actor, reason=reason or "promoted by hand")


def _promote(experiment: Experiment, *, actor: Any, reason: str) -> Experiment:
    if experiment.status != ExperimentStatus.RUNNING:
        raise ExperimentConflict(f"Experiment {experiment.pk} is {experiment.status}.")
    challenger = experiment.challenger
    if challenger.stage == Stage.DEV:  # dev reaches production only through staging
        model_version_set_stage(version=challenger, stage=Stage.STAGING, actor=actor)
    if challenger.stage != Stage.PRODUCTION:
        model_version_set_stage(version=challenger, stage=Stage.PRODUCTION, actor=actor)
    model_alias_set(model=experiment.model, alias=Alias.CHAMPION, version=challenger, actor=actor)
    # The new champion no longer challenges itself (audited like any alias move).
    if ModelAlias.objects.filter(
        model=experiment.model, alias=Alias.CHALLENGER, version=challenger
    ).exists():
        model_alias_delete(model=experiment.model, alias=Alias.CHALLENGER, actor=actor)
    _route_champion_only(experiment.model)
    _end(
        experiment,
        status=ExperimentStatus.PROMOTED,
        decision="promote",
        reason=reason,
        actor=actor,
    )
    logger.info("experiment %s promoted v%s: %s", experiment.pk, challenger.version, reason)
    return experiment


# --- evaluation ---------------------------------------------------------------------------

_GUARD_DEFAULTS: dict[str, float | None] = {
    "max_error_rate_increase": 0.02,
    "latency_p99_ceiling_ms": None,
    "latency_p99_max_ratio": 3.0,
    "max_class_share": 0.95,
    "max_confidence_drop": 0.2,
}


def _same(prediction: Any, actual: Any) -> bool:
    # Labels arrive as JSON: 1, "1" and [1] name the same class.
    if isinstance(actual, list) and len(actual) == 1:
        actual = actual[0]
    return prediction == actual or str(prediction) == str(actual)


@dataclass
class ArmData:
    """What one arm did in the current phase."""

    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # one per request
    classes: Counter[str] = field(default_factory=Counter)
    confidence: list[float] = field(default_factory=list)
    labelled: int = 0
    correct: int = 0
    errors: int = 0
    step_requests: int = 0  # since the canary step began


@dataclass
class PhaseData:
    champion: ArmData
    challenger: ArmData
    # Shadow: labelled pairs and the discordant ones; champion requests old enough to
    # have their shadow row, and how many of those have none.
    paired: int = 0
    champion_only: int = 0
    challenger_only: int = 0
    shadow_due: int = 0
    shadow_missing: int = 0
    # Canary / A/B: where the failed-request counts came from, and why not, if they didn't.
    request_counts: dict[str, str] = field(default_factory=dict)


def _rows(experiment: Experiment, since: datetime) -> list[tuple[Any, ...]]:
    versions = [experiment.champion.version, experiment.challenger.version]
    query = PredictionLog.objects.filter(
        model_name=experiment.model.name, version__in=versions, created_at__gte=since
    ).exclude(routed_by=routing.PINNED_ROUTE)
    return list(
        query.order_by("-id").values_list(
            "request_id",
            "row_index",
            "version",
            "routed_by",
            "prediction",
            "actual",
            "latency_ms",
            "confidence",
            "created_at",
        )[:MAX_ROWS]
    )


def _phase_data(experiment: Experiment, now: datetime) -> PhaseData:
    since = experiment.phase_started_at or experiment.started_at or now
    step_since = experiment.step_started_at or since
    champion, challenger = ArmData(), ArmData()
    data = PhaseData(champion, challenger)
    shadow = experiment.mode == ExperimentMode.SHADOW
    champion_route = f"{experiment.mode}:{routing.Arm.CHAMPION}"
    challenger_route = routing.SHADOW_ROUTE if shadow else f"{experiment.mode}:challenger"
    seen: set[tuple[str, str]] = set()
    by_pair: dict[tuple[str, int], dict[str, tuple[Any, Any]]] = {}
    champion_requests: dict[str, datetime] = {}
    challenger_requests: set[str] = set()
    for request_id, row_index, version, routed_by, prediction, actual, latency, conf, at in _rows(
        experiment, since
    ):
        if version == experiment.champion.version and routed_by == champion_route:
            arm, name = champion, "champion"
            parent = request_id
            champion_requests[request_id] = at
        elif version == experiment.challenger.version and routed_by == challenger_route:
            arm, name = challenger, "challenger"
            parent = request_id
            challenger_requests.add(request_id)
        else:
            continue
        if (name, request_id) not in seen:
            seen.add((name, request_id))
            arm.requests += 1
            arm.latencies_ms.append(float(latency))
            if at >= step_since:
                arm.step_requests += 1
        arm.classes[str(prediction)] += 1
        if conf is not None:
            arm.confidence.append(float(conf))
        if actual is not None:
            arm.labelled += 1
            arm.correct += int(_same(prediction, actual))
        if shadow:
            by_pair.setdefault((parent, row_index), {})[name] = (prediction, actual)
    if shadow:
        shadow_of = {routing.shadow_request_id(r): r for r in champion_requests}
        # Re-key the challenger's rows by the client's request id.
        pairs: dict[tuple[str, int], dict[str, tuple[Any, Any]]] = {}
        for (request_id, row_index), arms in by_pair.items():
            key = (shadow_of.get(request_id, request_id), row_index)
            pairs.setdefault(key, {}).update(arms)
        for arms in pairs.values():
            if len(arms) != 2:
                continue
            (h_pred, h_actual), (c_pred, c_actual) = arms["champion"], arms["challenger"]
            actual = h_actual if h_actual is not None else c_actual
            if actual is None:
                continue
            data.paired += 1
            h_right, c_right = _same(h_pred, actual), _same(c_pred, actual)
            data.champion_only += int(h_right and not c_right)
            data.challenger_only += int(c_right and not h_right)
        grace = now - timedelta(seconds=SHADOW_GRACE_S)
        due = [r for r, at in champion_requests.items() if at <= grace]
        data.shadow_due = len(due)
        data.shadow_missing = sum(
            1 for r in due if routing.shadow_request_id(r) not in challenger_requests
        )
        challenger.errors = data.shadow_missing
    return data


# --- failed requests (canary / A/B): the inference metrics, not the log ------------------


def _requests_baseline(experiment: Experiment) -> None:
    """Remember this host's counters where the phase starts (the next looks count from
    here); with Prometheus configured the phase's start time is the baseline."""
    experiment.statistics = {
        **(experiment.statistics or {}),
        "request_baseline": {}
        if settings.PHOENIX_PROMETHEUS_URL
        else request_counts.request_counters_local(experiment.model.name),
    }


def _request_counts_now(
    experiment: Experiment, now: datetime
) -> tuple[request_counts.Counts, dict[str, str]]:
    """Counts since the phase began, and where they came from: Prometheus when
    configured, else this host's counters less the baseline (a counter below its
    baseline, a restarted process, counts from zero). Prometheus unreachable: no
    counts (the guard then has too few attempts to judge) and the reason."""
    if settings.PHOENIX_PROMETHEUS_URL:
        try:
            counts = request_counts.request_counts_prometheus(
                base_url=settings.PHOENIX_PROMETHEUS_URL,
                model_name=experiment.model.name,
                since=experiment.phase_started_at or now,
                now=now,
                timeout_s=settings.PHOENIX_PROMETHEUS_TIMEOUT_S,
            )
        except request_counts.RequestCountsUnavailable as exc:
            logger.warning("experiment %s: request counts unavailable: %s", experiment.pk, exc)
            return {}, {"source": "prometheus", "error": str(exc)}
        return counts, {"source": "prometheus"}
    baseline = (experiment.statistics or {}).get("request_baseline") or {}
    counts = request_counts.request_counters_local(experiment.model.name)
    for key, (total, failed) in counts.items():
        base_total, base_failed = baseline.get(key, [0, 0])
        if total >= base_total and failed >= base_failed:
            counts[key] = [total - base_total, failed - base_failed]
    return counts, {"source": "local"}


def _requests_since(
    experiment: Experiment, now: datetime
) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """(requests, failed) per arm since the phase began, and the counts' source."""
    counts, source = _request_counts_now(experiment, now)
    arms: dict[str, tuple[int, int]] = {}
    for arm, version in (
        (routing.Arm.CHAMPION, experiment.champion.version),
        (routing.Arm.CHALLENGER, experiment.challenger.version),
    ):
        total, failed = counts.get(f"{version}|{experiment.mode}:{arm}", [0, 0])
        arms[str(arm)] = (round(total), round(failed))
    return arms, source


def _guard(experiment: Experiment, name: str) -> Any:
    return (experiment.guards or {}).get(name, _GUARD_DEFAULTS[name])


def _guards(experiment: Experiment, data: PhaseData, now: datetime) -> list[stats.GuardResult]:
    champion, challenger = data.champion, data.challenger
    guards = []
    if experiment.mode == ExperimentMode.SHADOW:
        # The champion's failed requests are not logged: its error count is 0 here, so
        # this bounds the challenger's failure share on requests the champion answered.
        guards.append(
            stats.error_rate_guard(
                champion_errors=0,
                champion_n=data.shadow_due,
                challenger_errors=data.shadow_missing,
                challenger_n=data.shadow_due,
                margin=float(_guard(experiment, "max_error_rate_increase")),
                alpha=experiment.alpha,
            )
        )
    else:
        counts, data.request_counts = _requests_since(experiment, now)
        h_total, h_errors = counts.get(str(routing.Arm.CHAMPION), (0, 0))
        c_total, c_errors = counts.get(str(routing.Arm.CHALLENGER), (0, 0))
        guards.append(
            stats.error_rate_guard(
                champion_errors=h_errors,
                champion_n=h_total,
                challenger_errors=c_errors,
                challenger_n=c_total,
                margin=float(_guard(experiment, "max_error_rate_increase")),
                alpha=experiment.alpha,
            )
        )
        data.champion.errors, data.challenger.errors = h_errors, c_errors
    ceiling, ratio = (
        _guard(experiment, "latency_p99_ceiling_ms"),
        _guard(experiment, "latency_p99_max_ratio"),
    )
    guards.append(
        stats.latency_guard(
            champion_ms=champion.latencies_ms,
            challenger_ms=challenger.latencies_ms,
            ceiling_ms=None if ceiling is None else float(ceiling),
            max_ratio=None if ratio is None else float(ratio),
        )
    )
    guards.append(
        stats.prediction_shift_guard(
            champion_classes=champion.classes,
            challenger_classes=challenger.classes,
            champion_confidence=champion.confidence,
            challenger_confidence=challenger.confidence,
            max_class_share=float(_guard(experiment, "max_class_share")),
            max_confidence_drop=float(_guard(experiment, "max_confidence_drop")),
        )
    )
    return guards


def _primary(experiment: Experiment, data: PhaseData, previous_p: float) -> stats.TestResult | None:
    if experiment.primary_metric == PrimaryMetric.GUARDS_ONLY:
        return None
    if experiment.mode == ExperimentMode.SHADOW:
        return stats.mcnemar_sequential_test(
            champion_only=data.champion_only,
            challenger_only=data.challenger_only,
            paired_n=data.paired,
            alpha=experiment.alpha,
            min_samples=experiment.min_samples,
            previous_p_value=previous_p,
        )
    return stats.accuracy_sequential_test(
        champion_correct=data.champion.correct,
        champion_n=data.champion.labelled,
        challenger_correct=data.challenger.correct,
        challenger_n=data.challenger.labelled,
        alpha=experiment.alpha,
        min_samples=experiment.min_samples,
        previous_p_value=previous_p,
    )


def _arm_summary(arm: ArmData) -> dict[str, Any]:
    latencies = sorted(arm.latencies_ms)
    return {
        "requests": arm.requests,
        "labelled": arm.labelled,
        "accuracy": arm.correct / arm.labelled if arm.labelled else None,
        "errors": arm.errors,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else None,
        "step_requests": arm.step_requests,
    }


@dataclass(frozen=True)
class Evaluation:
    experiment: Experiment
    decision: stats.Decision


def experiment_evaluate(*, experiment_id: int, now: datetime | None = None) -> Evaluation:
    """One look: read the phase's rows, run the test and the guards, store the statistics,
    and act: roll back, advance the canary (or shadow -> canary), promote, or continue.

    Idempotent per look and safe against a concurrent stop: the experiment row is
    locked and only a running experiment is acted on (else ``continue``, nothing written).
    Raises ExperimentNotFound.
    """
    now = now or timezone.now()
    with transaction.atomic():
        experiment = _locked(experiment_id)
        if experiment.status != ExperimentStatus.RUNNING:
            return Evaluation(experiment, stats.Decision(stats.Action.CONTINUE, ""))
        previous = experiment.statistics or {}
        same_phase = previous.get("phase") == _phase_key(experiment)
        previous_p = (
            float((previous.get("primary") or {}).get("p_value", 1.0)) if same_phase else 1.0
        )
        data = _phase_data(experiment, now)
        primary = _primary(experiment, data, previous_p)
        guards = _guards(experiment, data, now)
        step_since = experiment.step_started_at or experiment.started_at or now
        decision = stats.experiment_decide(
            phase=experiment.mode,
            primary=primary,
            guards=guards,
            better_before=bool(previous.get("better_before")) or bool(previous.get("better")),
            canary_plan=list(experiment.canary_steps or []),
            canary_step=experiment.canary_step,
            step_elapsed_s=(now - step_since).total_seconds(),
            step_interval_s=float(experiment.step_interval_s),
            step_samples=data.challenger.step_requests,
            step_min_samples=experiment.step_min_samples,
            auto_promote=experiment.auto_promote,
        )
        experiment.statistics = {
            "phase": _phase_key(experiment),
            "mode": experiment.mode,
            "evaluated_at": now.isoformat(),
            "arms": {
                "champion": _arm_summary(data.champion),
                "challenger": _arm_summary(data.challenger),
            },
            "primary": primary.as_dict() if primary is not None else None,
            "guards": [g.as_dict() for g in guards],
            "canary": {
                "plan": list(experiment.canary_steps or []),
                "step": experiment.canary_step,
                "step_started_at": step_since.isoformat(),
                "step_interval_s": experiment.step_interval_s,
                "next_step_in_s": max(
                    0.0, experiment.step_interval_s - (now - step_since).total_seconds()
                ),
            },
            "better": primary is not None and primary.verdict is stats.Verdict.BETTER,
            "better_before": bool(previous.get("better_before")) or bool(previous.get("better")),
            "decision": {"action": str(decision.action), "reason": decision.reason},
            "request_baseline": previous.get("request_baseline") or {},
            "request_counts": data.request_counts,
        }
        experiment.evaluated_at = now
        experiment.save(update_fields=["statistics", "evaluated_at"])
        _look_push(experiment)
        _act(experiment, decision, now)
    return Evaluation(experiment, decision)


def _look_push(experiment: Experiment) -> None:
    """After commit, the look's headline numbers to the dashboards (the page refreshes)."""
    stats = experiment.statistics
    primary = stats.get("primary") or {}
    payload = {
        "model": experiment.model.name,
        "experiment": experiment.pk,
        "verdict": primary.get("verdict"),
        "effect": primary.get("effect"),
        "interval": primary.get("interval"),
        "guards": {g["name"]: g["state"] for g in stats.get("guards", [])},
        "arms": {arm: data.get("requests") for arm, data in stats.get("arms", {}).items()},
        "canary_step": experiment.canary_step,
        "next_step_in_s": (stats.get("canary") or {}).get("next_step_in_s"),
    }
    transaction.on_commit(lambda: dashboard_push.dashboard_event_push("experiment_look", payload))


def _phase_key(experiment: Experiment) -> str:
    started = experiment.phase_started_at
    return f"{experiment.mode}:{started.isoformat() if started else ''}"


def _act(experiment: Experiment, decision: stats.Decision, now: datetime) -> None:
    if decision.action is stats.Action.ROLLBACK:
        _rollback(experiment, actor=None, reason=decision.reason)
    elif decision.action is stats.Action.PROMOTE:
        _promote(experiment, actor=None, reason=decision.reason)
    elif decision.action is stats.Action.ADVANCE:
        _audit(
            experiment,
            actor=None,
            to_value=ExperimentStatus.RUNNING,
            details={"advance_to_percent": decision.next_percent, "reason": decision.reason},
        )
        if experiment.mode == ExperimentMode.SHADOW:
            experiment.mode = ExperimentMode.CANARY
            experiment.canary_step = 0
            experiment.phase_started_at = now
            # The shadow verdict carries over; the canary's own test can still roll back.
            experiment.statistics = {**experiment.statistics, "better_before": True}
            _requests_baseline(experiment)
        else:
            experiment.canary_step += 1
        experiment.step_started_at = now
        experiment.save()
        _route_for_phase(experiment)
        _push("experiment", experiment, action="advance", percent=decision.next_percent)


def running_experiment_ids() -> list[int]:
    return list(
        Experiment.objects.filter(status=ExperimentStatus.RUNNING).values_list("pk", flat=True)
    )


def experiment_autostart_for(*, version: ModelVersion, actor: Any = None) -> Experiment | None:
    """The self-healing loop's policy: when ``PHOENIX_EXPERIMENT_AUTOSTART`` names the
    model (or is ``*``), a newly registered challenger starts a shadow experiment that
    moves on to the canary plan ``PHOENIX_EXPERIMENT_CANARY_STEPS`` and promotes itself
    when the test says better with every guard held. A running experiment of the model
    is stopped first: the new challenger replaces the old one.

    Returns the running experiment, or None when the policy is off for the model.
    """
    names = settings.PHOENIX_EXPERIMENT_AUTOSTART
    if "*" not in names and version.model.name not in names:
        return None
    running = Experiment.objects.filter(model=version.model, status=ExperimentStatus.RUNNING)
    for previous in running:
        experiment_stop(experiment_id=previous.pk, reason=f"replaced by v{version.version}")
    experiment = experiment_create(
        model=version.model,
        challenger=version,
        mode=ExperimentMode.SHADOW,
        auto_promote=True,
        canary_steps=list(settings.PHOENIX_EXPERIMENT_CANARY_STEPS),
        step_interval_s=settings.PHOENIX_EXPERIMENT_STEP_INTERVAL_S,
        step_min_samples=settings.PHOENIX_EXPERIMENT_STEP_MIN_SAMPLES,
        min_samples=settings.PHOENIX_EXPERIMENT_MIN_SAMPLES,
        actor=actor,
    )
    return experiment_start(experiment_id=experiment.pk, actor=actor)
