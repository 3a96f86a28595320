"""Ground truth for logged predictions: recorded on the rows, or kept pending for them.

Who may label: the API key that made the prediction, a key with ``can_label`` scoped to
the model, or a person holding ``monitoring.label_predictionlog`` (the "Labellers"
group; superusers). Anyone else gets 403. A label must fit the model's output type (a
class it knows, or a finite number for a regressor: 400 otherwise), and replacing an
earlier label is written to the audit trail.

With the Kafka backend the consumer may not have written the rows yet when feedback
arrives; feedback for a request id this deployment issued is then kept as pending, with
who sent it, and applied by the row writer in the transaction that inserts the rows
once the same checks pass there.
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

from inference.events import event_publishing_flush, publish_feedback_event
from inference.request_ids import request_id_is_ours
from inference.routing import shadow_request_id
from inference.selectors import ApiKeyPrincipal, api_key_principal_by_id
from models_registry.models import AuditAction
from models_registry.output_types import label_problem
from models_registry.selectors import model_version_output_type
from models_registry.services import audit_event_record
from monitoring.models import PendingFeedback, PredictionLog
from phoenix.exceptions import Forbidden, InvalidInput, NotFound

logger = logging.getLogger(__name__)

PENDING_FEEDBACK_TTL = timedelta(days=1)
LABEL_PERMISSION = "monitoring.label_predictionlog"


@dataclass(frozen=True)
class Labeller:
    """Who gives the ground truth: an API key, or a person (``user``) who may or may not
    hold the labelling permission. ``Labeller()`` (neither) is the system itself."""

    api_key: ApiKeyPrincipal | None = None
    user: Any = None
    permitted: bool = False

    @classmethod
    def of(cls, principal: object) -> Labeller:
        """The labeller a request's authenticated principal (key or user) is."""
        if isinstance(principal, ApiKeyPrincipal):
            return cls(api_key=principal)
        has_perm = getattr(principal, "has_perm", None)
        permitted = bool(
            getattr(principal, "is_active", False) and has_perm and has_perm(LABEL_PERMISSION)
        )
        return cls(user=principal, permitted=permitted)

    @property
    def trusted(self) -> bool:
        """May label any prediction without looking at the rows (a permitted person or
        the system)."""
        return self.permitted or (self.api_key is None and self.user is None)

    @property
    def name(self) -> str:
        if self.api_key is not None:
            return f"API key {self.api_key.name} ({self.api_key.prefix}...)"
        return str(getattr(self.user, "get_username", lambda: "system")())


SYSTEM = Labeller()


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


def _label_authorize(*, labeller: Labeller, rows: list[PredictionLog]) -> None:
    """Raises Forbidden unless ``labeller`` may label every one of ``rows``."""
    if labeller.trusted:
        return
    key = labeller.api_key
    if key is None:
        raise Forbidden(
            "Giving ground truth needs the labelling permission "
            f"({LABEL_PERMISSION}, e.g. the 'Labellers' group).",
            details={"permission": LABEL_PERMISSION},
        )
    for row in rows:
        if not key.may_use(row.model_name):
            raise Forbidden(
                f"This API key may not use model {row.model_name!r}.",
                details={"model": row.model_name, "key": key.prefix},
            )
        if row.api_key_id != key.id and not key.can_label:
            raise Forbidden(
                "Only the API key that made this prediction, or a key allowed to label "
                f"model {row.model_name!r}, may give its ground truth.",
                details={"model": row.model_name, "key": key.prefix},
            )


def _labels_check(*, rows: list[PredictionLog], actuals: list[Any]) -> None:
    """Raises InvalidInput when a label does not fit the model's output type."""
    row = rows[0]  # the rows of one arm: one model version
    output_type = model_version_output_type(model_name=row.model_name, version=row.version)
    if output_type is None:
        return  # the version was deleted: nothing left to hold the label to
    for index, value in enumerate(actuals):
        problem = label_problem(output_type, value)
        if problem is not None:
            details: dict[str, Any] = {"model": row.model_name, "version": row.version}
            if output_type.classes is not None:
                details["classes"] = list(output_type.classes)
            if len(actuals) > 1:
                details["row"] = index
            raise InvalidInput(
                f"'actual' does not fit {row.model_name} v{row.version}: {problem}.",
                details=details,
            )


def _feedback_apply(*, rows: list[PredictionLog], actual: Any, labeller: Labeller = SYSTEM) -> int:
    _label_authorize(labeller=labeller, rows=rows)
    actuals = _actuals_for(len(rows), actual)
    _labels_check(rows=rows, actuals=actuals)
    now = timezone.now()
    changed = []
    relabelled: list[tuple[PredictionLog, Any]] = []
    for row, value in zip(rows, actuals, strict=True):
        if row.actual_at is not None and row.actual == value:
            continue  # a repeat: keep the first time it was recorded
        if row.actual_at is not None:
            relabelled.append((row, row.actual))
        row.actual, row.actual_at = value, now
        changed.append(row)
    if changed:
        PredictionLog.objects.bulk_update(changed, ["actual", "actual_at"])
    if relabelled:
        _relabel_audit(labeller=labeller, relabelled=relabelled)
    return len(changed)


def _relabel_audit(*, labeller: Labeller, relabelled: list[tuple[PredictionLog, Any]]) -> None:
    """One audit entry per relabelled request arm: who replaced which labels."""
    first, previous = relabelled[0]
    audit_event_record(
        action=AuditAction.RELABEL,
        actor=None if labeller.api_key is not None else labeller.user,
        actor_name=labeller.name,
        model_name=first.model_name,
        version=first.version,
        from_value=previous,
        to_value=first.actual,
        details={
            "request_id": first.request_id,
            "rows": [
                {"row": row.row_index, "from": old, "to": row.actual} for row, old in relabelled
            ][:100],
            "api_key": labeller.api_key.prefix if labeller.api_key is not None else None,
        },
    )


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
        labeller = _pending_labeller(item)
        try:
            with transaction.atomic():  # all arms or none
                applied += sum(
                    _feedback_apply(rows=rows, actual=item.actual, labeller=labeller)
                    for rows in _rows_by_arm(item.request_id).values()
                )
        except (InvalidInput, Forbidden) as exc:
            # Accepted before the rows were known; it cannot apply to them, so say so loudly.
            logger.warning("pending feedback for %s dropped: %s", item.request_id, exc.message)
        item.delete()
    return applied


def _pending_labeller(item: PendingFeedback) -> Labeller:
    """Who sent pending feedback, as far as the rows' checks need to know."""
    if item.by_labeller or item.api_key_id is None:
        return Labeller(permitted=True) if item.by_labeller else SYSTEM
    principal = api_key_principal_by_id(key_id=item.api_key_id)
    if principal is None:  # revoked (or deleted) since: it may label nothing
        principal = ApiKeyPrincipal(
            id=item.api_key_id, name="revoked", prefix="", allowed_models=frozenset()
        )
    return Labeller(api_key=principal)


def prediction_feedback_record(
    *,
    request_id: str,
    actual: Any,
    accept_pending: bool = False,
    labeller: Labeller = SYSTEM,
) -> FeedbackResult:
    """Store ground truth on the rows of ``request_id``; repeating it changes nothing.

    A later, different value replaces the earlier one (a correction). When no row
    exists yet, ``accept_pending`` (the Kafka path, where the consumer may lag) and
    the id is one this deployment issued (its signature checks out), the feedback is
    kept and applied when the rows arrive: status "pending". An id that was never
    issued here (forged, mistyped, or a client-chosen v2 id) has no rows coming.
    ``labeller`` is held to the rows (``Labeller.of`` a request's principal; the
    default is the system, which may label anything). Raises ``NotFound`` (no rows, and
    not accepted as pending), ``Forbidden`` (``labeller`` may not label these rows) and
    ``InvalidInput`` (a list whose length does not match the request's rows, or a label
    that does not fit the model's output type).
    """
    with transaction.atomic():
        arms = _rows_by_arm(request_id)
        if arms:
            changed = sum(
                _feedback_apply(rows=rows, actual=actual, labeller=labeller)
                for rows in arms.values()
            )
            rows = arms.get(request_id) or next(iter(arms.values()))
            return FeedbackResult(
                request_id=request_id, status="recorded", rows=len(rows), changed=changed
            )
        if not (accept_pending and request_id_is_ours(request_id)):
            raise NotFound(f"No prediction with request id {request_id!r}.")
        PendingFeedback.objects.update_or_create(
            request_id=request_id,
            defaults={
                "actual": actual,
                "received_at": timezone.now(),
                "api_key_id": labeller.api_key.id if labeller.api_key is not None else None,
                "by_labeller": labeller.trusted,
            },
        )
    return FeedbackResult(request_id=request_id, status="pending", rows=0, changed=0)


def prediction_feedback_submit(
    *, request_id: str, actual: Any, principal: object
) -> FeedbackResult:
    """The feedback endpoint's whole flow: authorize, record, and stream the ground truth.

    ``principal`` (a key or a signed-in user) must be allowed to label the request's
    rows (``Labeller``; ``Forbidden`` otherwise) and ``actual`` must fit the model's
    output type (``InvalidInput``). With Kafka the
    consumer may not have written the rows yet, so feedback for an id this deployment
    issued is kept pending; with the embedded backend the rows may still sit in this
    process's event buffer, which is flushed once before answering "not found". A stored
    change (or a pending one) is published to ``feedback-events`` with Kafka.
    Raises ``NotFound``, ``InvalidInput`` and ``Forbidden``.
    """
    labeller = Labeller.of(principal)
    if labeller.api_key is None and not labeller.permitted:
        _label_authorize(labeller=labeller, rows=[])  # a person without the permission
    kafka = settings.PHOENIX_EVENT_BACKEND == "kafka"
    try:
        result = prediction_feedback_record(
            request_id=request_id, actual=actual, accept_pending=kafka, labeller=labeller
        )
    except NotFound:
        if kafka:
            raise
        # Outside any transaction (the record's own has ended, and the view runs in
        # none): the flush writes other requests' rows too, which must not share this
        # request's fate, and on SQLite it must not wait for a lock this request holds.
        event_publishing_flush()
        result = prediction_feedback_record(request_id=request_id, actual=actual, labeller=labeller)
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
