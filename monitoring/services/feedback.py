"""Ground truth for logged predictions: recorded on the rows, or kept pending for them.

With the Kafka backend the consumer may not have written the rows yet when feedback
arrives; feedback for a request id this deployment issued is then kept as pending and
applied by the row writer in the transaction that inserts the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.auth import api_key_authorize
from inference.events import event_publishing_flush, publish_feedback_event
from inference.request_ids import request_id_is_ours
from inference.routing import shadow_request_id
from inference.selectors import ApiKeyPrincipal
from monitoring.models import PendingFeedback, PredictionLog
from monitoring.selectors.prediction_log import prediction_log_models_for_request
from phoenix.exceptions import InvalidInput, NotFound

logger = logging.getLogger(__name__)

PENDING_FEEDBACK_TTL = timedelta(days=1)


@dataclass(frozen=True)
class FeedbackResult:
    request_id: str
    status: str  # "recorded" (rows updated) or "pending" (rows not written yet)
    rows: int
    changed: int


def _actuals_for(rows: int, actual: Any) -> list[Any]:
    """One actual per row: a scalar for a one-row request, a list of ``rows`` for a batch."""
    if rows == 1:
        if isinstance(actual, list) and len(actual) == 1:
            return [actual[0]]
        return [actual]
    if not isinstance(actual, list) or len(actual) != rows:
        raise InvalidInput(
            f"this request scored {rows} rows; 'actual' must be a list of {rows} values",
            details={"rows": rows},
        )
    return list(actual)


def _feedback_apply(*, rows: list[PredictionLog], actual: Any) -> int:
    actuals = _actuals_for(len(rows), actual)
    now = timezone.now()
    changed = []
    for row, value in zip(rows, actuals, strict=True):
        if row.actual_at is not None and row.actual == value:
            continue  # a repeat: keep the first time it was recorded
        row.actual, row.actual_at = value, now
        changed.append(row)
    if changed:
        PredictionLog.objects.bulk_update(changed, ["actual", "actual_at"])
    return len(changed)


def _rows_by_arm(request_id: str) -> dict[str, list[PredictionLog]]:
    """The rows of ``request_id`` and, under shadow routing, the challenger's rows of the
    same request (their own id, linked), locked, by request id: each arm is labelled
    row for row."""
    arms: dict[str, list[PredictionLog]] = {}
    for row in (
        PredictionLog.objects.select_for_update()
        .filter(request_id__in=[request_id, shadow_request_id(request_id)])
        .order_by("row_index")
    ):
        arms.setdefault(row.request_id, []).append(row)
    return arms


def pending_feedback_apply(*, request_ids: Iterable[str]) -> int:
    """Apply the pending feedback of these request ids to their rows (the caller's
    transaction); returns how many rows changed."""
    pending = list(PendingFeedback.objects.filter(request_id__in=list(request_ids)))
    applied = 0
    for item in pending:
        try:
            applied += sum(
                _feedback_apply(rows=rows, actual=item.actual)
                for rows in _rows_by_arm(item.request_id).values()
            )
        except InvalidInput as exc:
            # Accepted before the rows were known; it cannot match them, so say so loudly.
            logger.warning("pending feedback for %s dropped: %s", item.request_id, exc.message)
        item.delete()
    return applied


def prediction_feedback_record(
    *, request_id: str, actual: Any, accept_pending: bool = False
) -> FeedbackResult:
    """Store ground truth on the rows of ``request_id``; repeating it changes nothing.

    A later, different value replaces the earlier one (a correction). When no row
    exists yet, ``accept_pending`` (the Kafka path, where the consumer may lag) and
    the id is one this deployment issued (its signature checks out), the feedback is
    kept and applied when the rows arrive: status "pending". An id that was never
    issued here (forged, mistyped, or a client-chosen v2 id) has no rows coming.
    Raises ``NotFound`` (no rows, and not accepted as pending) and ``InvalidInput``
    (a list whose length does not match the request's rows).
    """
    with transaction.atomic():
        arms = _rows_by_arm(request_id)
        if arms:
            changed = sum(_feedback_apply(rows=rows, actual=actual) for rows in arms.values())
            rows = arms.get(request_id) or next(iter(arms.values()))
            return FeedbackResult(
                request_id=request_id, status="recorded", rows=len(rows), changed=changed
            )
        if not (accept_pending and request_id_is_ours(request_id)):
            raise NotFound(f"No prediction with request id {request_id!r}.")
        PendingFeedback.objects.update_or_create(
            request_id=request_id, defaults={"actual": actual, "received_at": timezone.now()}
        )
    return FeedbackResult(request_id=request_id, status="pending", rows=0, changed=0)


def prediction_feedback_submit(
    *, request_id: str, actual: Any, principal: object
) -> FeedbackResult:
    """The feedback endpoint's whole flow: authorize, record, and stream the ground truth.

    An API key ``principal`` must be scoped to every model that scored the request
    (``Forbidden`` otherwise); a session user may give feedback for any. With Kafka the
    consumer may not have written the rows yet, so feedback for an id this deployment
    issued is kept pending; with the embedded backend the rows may still sit in this
    process's event buffer, which is flushed once before answering "not found". A stored
    change (or a pending one) is published to ``feedback-events`` with Kafka.
    Raises ``NotFound``, ``InvalidInput`` and ``Forbidden``.
    """
    if isinstance(principal, ApiKeyPrincipal):
        for model_name in prediction_log_models_for_request(request_id=request_id):
            api_key_authorize(principal=principal, model_name=model_name)
    kafka = settings.PHOENIX_EVENT_BACKEND == "kafka"
    try:
        result = prediction_feedback_record(
            request_id=request_id, actual=actual, accept_pending=kafka
        )
    except NotFound:
        if kafka:
            raise
        event_publishing_flush()
        result = prediction_feedback_record(request_id=request_id, actual=actual)
    if kafka and (result.changed or result.status == "pending"):
        publish_feedback_event(
            {"request_id": request_id, "actual": actual, "created_at": timezone.now().isoformat()}
        )
    return result


def pending_feedback_purge(*, older_than: timedelta = PENDING_FEEDBACK_TTL) -> int:
    """Delete pending feedback whose prediction never arrived; returns how many."""
    deleted, _ = PendingFeedback.objects.filter(
        received_at__lt=timezone.now() - older_than
    ).delete()
    return deleted
