"""Inference errors. They know nothing of HTTP: phoenix.exceptions maps the categories.

Both are dependencies being down; callers handle them where they arise (the event
publisher journals the batch, a prediction falls back to request features), so they
reach a client only where a caller chooses to let them.
"""

from __future__ import annotations

from phoenix.exceptions import DependencyUnavailable, Forbidden


class SinkUnavailable(DependencyUnavailable):
    """The event destination did not take (or did not acknowledge) the batch."""

    code = "event_sink_unavailable"


class FeatureStoreUnavailable(DependencyUnavailable):
    """The store could not be read; callers fall back, never fail the request on it."""

    code = "feature_store_unavailable"


class VersionNotPinnable(Forbidden):
    """A client pinned a version whose stage PHOENIX_PINNABLE_STAGES does not list."""

    code = "version_not_pinnable"
