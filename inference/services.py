"""Writes of the inference app: serving configuration broadcasts, online features.

The prediction path itself is ``inference.prediction``; API keys are
``inference.api_keys``.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from phoenix.change_bus import ChangeReason, change_publish
from phoenix.exceptions import DependencyUnavailable

from .exceptions import FeatureStoreUnavailable
from .feature_store import feature_store


def inference_config_changed(*, model_name: str = "", reason: ChangeReason) -> None:
    """After commit, tell every serving process (this one at once) that a key or policy changed."""
    transaction.on_commit(lambda: change_publish(model_name=model_name, reason=reason))


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
