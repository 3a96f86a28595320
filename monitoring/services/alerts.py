"""Alerts: a row for people, a Kafka event for machines, a signed webhook for chat-ops.

The ``Alert`` row is the source of truth. The webhook is delivered by a Celery task
after the row is committed, retried with backoff while the receiver is down; the
Kafka event is best effort (a failure is logged, never fatal to the drift check).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from models_registry.models import ModelVersion
from monitoring.exceptions import WebhookDeliveryFailed
from monitoring.models import Alert, AlertKind
from phoenix.task_queue import task_enqueue_on_commit

logger = logging.getLogger("phoenix.alerts")

SIGNATURE_HEADER = "X-Phoenix-Signature"
WEBHOOK_TIMEOUT_S = 5.0


def alert_create(
    *,
    kind: AlertKind | str,
    message: str,
    model_version: ModelVersion | None = None,
    payload: dict[str, Any] | None = None,
) -> Alert:
    """Save an alert, log it as one structured line, and queue its webhook after commit."""
    alert = Alert.objects.create(
        kind=kind, message=message, model_version=model_version, payload=payload or {}
    )
    logger.warning(
        "alert %s: %s",
        alert.kind,
        message,
        extra={"alert_id": alert.id, "alert_kind": alert.kind, "payload": alert.payload},
    )
    if settings.PHOENIX_ALERT_WEBHOOK_URL:
        task_enqueue_on_commit("monitoring.tasks.deliver_alert_webhook", alert.id)
    return alert


def webhook_signature(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``, as GitHub-style receivers verify it."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def alert_webhook_deliver(*, alert_id: int) -> bool:
    """POST the alert to PHOENIX_ALERT_WEBHOOK_URL, signed with PHOENIX_ALERT_WEBHOOK_SECRET.

    Returns True when delivered now, False when there is nothing to do (no URL, alert
    gone, already delivered) or the receiver refused it for good (4xx). Raises
    WebhookDeliveryFailed when it is unreachable or answers 5xx, so the caller retries.
    """
    url = settings.PHOENIX_ALERT_WEBHOOK_URL
    alert = Alert.objects.select_related("model_version__model").filter(pk=alert_id).first()
    if not url or alert is None or alert.webhook_delivered_at is not None:
        return False
    body = orjson.dumps(alert_document(alert))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "phoenix-ml-alerts",
        "X-Phoenix-Event": f"alert.{alert.kind}",
        "X-Phoenix-Delivery": str(alert.id),
    }
    secret = settings.PHOENIX_ALERT_WEBHOOK_SECRET
    if secret:
        headers[SIGNATURE_HEADER] = webhook_signature(body, secret)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - operator-configured URL
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise WebhookDeliveryFailed(f"Alert webhook unreachable: {exc}") from exc
    if status >= 500:
        raise WebhookDeliveryFailed(f"Alert webhook answered {status}.")
    if status >= 400:
        logger.error("alert webhook refused alert %s with %s; not retrying", alert.id, status)
        return False
    # Conditional: a concurrent retry that also got through does not overwrite the time.
    Alert.objects.filter(pk=alert.id, webhook_delivered_at__isnull=True).update(
        webhook_delivered_at=timezone.now()
    )
    return True


def alert_document(alert: Alert) -> dict[str, Any]:
    version = alert.model_version
    return {
        "id": alert.id,
        "kind": alert.kind,
        "message": alert.message,
        "model": version.model.name if version is not None else None,
        "version": version.version if version is not None else None,
        "payload": alert.payload,
        "created_at": alert.created_at.isoformat(),
    }


def drift_event_publish(event: dict[str, Any]) -> bool:
    """Send one event to the drift topic when Kafka is configured; True when acknowledged.

    Best effort: the DriftReport row already holds the facts, so a broker that is down
    is logged and does not fail the check.
    """
    return _event_publish(event, topic=settings.PHOENIX_DRIFT_TOPIC, client_id="phoenix-drift")


def experiment_event_publish(event: dict[str, Any]) -> bool:
    """Send one experiment event (start, advance, rollback, promote, stop) to the
    experiments topic when Kafka is configured; best effort as ``drift_event_publish``."""
    return _event_publish(
        event, topic=settings.PHOENIX_EXPERIMENT_TOPIC, client_id="phoenix-experiments"
    )


def _event_publish(event: dict[str, Any], *, topic: str, client_id: str) -> bool:
    servers = settings.KAFKA_BOOTSTRAP_SERVERS
    if not servers:
        return False
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from inference.event_sinks import topics_ensure

    producer = None
    try:
        topics_ensure(bootstrap_servers=servers, topics=[topic], partitions=1, timeout_s=5.0)
        producer = KafkaProducer(
            bootstrap_servers=servers,
            client_id=client_id,
            acks="all",
            max_block_ms=5000,
            request_timeout_ms=5000,
        )
        key = str(event.get("model", "")).encode()
        producer.send(topic, key=key, value=orjson.dumps(event)).get(timeout=10)
        return True
    except (KafkaError, OSError) as exc:
        logger.warning("event not published to %s: %s", topic, exc)
        return False
    finally:
        if producer is not None:
            producer.close(timeout=5)
