"""Writes of the inference app: serving configuration broadcasts, online features.

The prediction path itself is ``inference.prediction``; API keys are
``inference.api_keys``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from models_registry.models import AuditAction
from models_registry.services import Actor, audit_event_record
from phoenix.change_bus import ChangeReason, change_publish
from phoenix.exceptions import DependencyUnavailable

from .exceptions import FeatureStoreUnavailable
from .feature_store import feature_store
from .models import RoutingPolicy


def inference_config_changed(*, model_name: str = "", reason: ChangeReason) -> None:
    """After commit, tell every serving process (this one at once) that a key or policy changed."""
    transaction.on_commit(lambda: change_publish(model_name=model_name, reason=reason))


# What the audit trail keeps of a policy: every field an operator sets.
_POLICY_FIELDS = (
    "strategy",
    "challenger_percent",
    "seed",
    "micro_batching",
    "micro_batch_max_rows",
    "micro_batch_max_delay_ms",
)


def _policy_values(policy: RoutingPolicy | None) -> dict[str, Any]:
    return {} if policy is None else {name: getattr(policy, name) for name in _POLICY_FIELDS}


def _policy_summary(values: dict[str, Any]) -> str:
    if not values:
        return ""
    return f"{values['strategy']} {values['challenger_percent']:g}%"


def routing_policy_save(*, policy: RoutingPolicy, actor: Actor = None) -> RoutingPolicy:
    """Store a model's routing (and batching) policy; serving processes re-read it after
    commit. The change (each field's old and new value) goes to the audit trail."""
    with transaction.atomic():
        stored = (
            RoutingPolicy.objects.select_for_update().filter(pk=policy.pk).first()
            if policy.pk
            else None
        )
        before, after = _policy_values(stored), _policy_values(policy)
        policy.save()
        changed = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
        if changed:
            audit_event_record(
                action=AuditAction.ROUTING,
                actor=actor,
                model_name=policy.model.name,
                from_value=_policy_summary(before),
                to_value=_policy_summary(after),
                details={"changed": changed, "created": stored is None},
            )
        inference_config_changed(model_name=policy.model.name, reason=ChangeReason.ROUTING_POLICY)
    return policy


def routing_policies_delete(*, policies: QuerySet[RoutingPolicy], actor: Actor = None) -> int:
    """Delete policies (their models go back to champion-only), audited; returns how many."""
    with transaction.atomic():
        names = list(policies.values_list("model__name", flat=True))
        for policy in policies.select_related("model"):
            audit_event_record(
                action=AuditAction.ROUTING,
                actor=actor,
                model_name=policy.model.name,
                from_value=_policy_summary(_policy_values(policy)),
                to_value="deleted",
                details={"deleted": _policy_values(policy)},
            )
        deleted, _ = policies.delete()
        # One change per call: naming the model when there is one, else "re-read all".
        only = names[0] if len(names) == 1 else ""
        inference_config_changed(model_name=only, reason=ChangeReason.ROUTING_POLICY)
    return deleted


def online_features_write(
    *, rows: Mapping[str, Mapping[str, float]], at: float | None = None
) -> int:
    """Write entities' feature values to the configured store. Returns the entity count.

    Raises DependencyUnavailable when the store cannot be written.
    """
    store = feature_store()
    try:
        return store.put_many(rows, at=at)
    except FeatureStoreUnavailable as exc:
        raise DependencyUnavailable(str(exc), details={"backend": store.backend}) from exc
