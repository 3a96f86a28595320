"""Monitoring errors. They know nothing of HTTP: phoenix.exceptions maps the categories."""

from __future__ import annotations

from phoenix.exceptions import DependencyUnavailable


class WebhookDeliveryFailed(DependencyUnavailable):
    """The receiver was unreachable or answered 5xx: worth retrying."""

    code = "webhook_delivery_failed"
