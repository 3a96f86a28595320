"""Writes of the inference app: serving configuration broadcasts, online features.

The prediction path itself is ``inference.prediction``; API keys are
``inference.api_keys``.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.db.models import QuerySet

from phoenix.change_bus import ChangeReason, change_publish
from phoenix.exceptions import DependencyUnavailable

from .exceptions import FeatureStoreUnavailable
from .feature_store import feature_store
from .models import RoutingPolicy


def inference_config_changed(*, model_name: str = "", reason: ChangeReason) -> None:
    """After commit, tell every serving process (this one at once) that a key or policy changed."""
    transaction.on_commit(lambda: change_publish(model_name=model_name, reason=reason))


def routing_policy_save(*, policy: RoutingPolicy) -> RoutingPolicy:
    """Store a model's routing (and batching) policy; serving processes re-read it after commit."""
    with transaction.atomic():
        policy.save()
        inference_config_changed(model_name=policy.model.name, reason=ChangeReason.ROUTING_POLICY)
    return policy


def routing_policies_delete(*, policies: QuerySet[RoutingPolicy]) -> int:
    """Delete policies (their models go back to champion-only); returns how many."""
    with transaction.atomic():
        names = list(policies.values_list("model__name", flat=True))
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
