"""The prediction event's shape, checked the same way by publisher and consumer.

Pure module (no Django): the consumer uses it to decide what is a poison message
(dead-lettered with the reason) and what becomes a ``PredictionLog`` row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

REQUIRED_FIELDS: tuple[str, ...] = (
    "event_id",
    "request_id",
    "model",
    "version",
    "features",
    "prediction",
    "created_at",
)


class InvalidEvent(ValueError):
    """A message that can never become a row; ``reason`` is what the DLQ records."""

    def __init__(self, reason: str, *, kind: str = "invalid_field") -> None:
        super().__init__(reason)
        self.reason = reason
        # Low-cardinality category for metrics: not_json, not_object, missing_fields, invalid_field.
        self.kind = kind


@dataclass(frozen=True)
class PredictionEvent:
    event_id: uuid.UUID
    request_id: str
    row_index: int
    model: str
    version: str
    routed_by: str
    features: Any
    prediction: Any
    probabilities: Any
    confidence: float | None
    latency_ms: float
    created_at: datetime


def encode_event(event: dict[str, Any]) -> bytes:
    """JSON bytes; numpy scalars and arrays from the model output serialize as numbers."""
    return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY, default=str)


def _optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"field {name!r} must be a number or null")
    return float(value)


def parse_event(raw: bytes | dict[str, Any]) -> PredictionEvent:
    """Validate one message. Raises ``InvalidEvent`` with a human-readable reason."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            data = orjson.loads(bytes(raw))
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not JSON: {exc}", kind="not_json") from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise InvalidEvent("not a JSON object", kind="not_object")
    missing = [name for name in REQUIRED_FIELDS if name not in data or data[name] is None]
    if missing:
        raise InvalidEvent(f"missing fields: {', '.join(missing)}", kind="missing_fields")
    try:
        event_id = uuid.UUID(str(data["event_id"]))
    except ValueError as exc:
        raise InvalidEvent("field 'event_id' is not a UUID") from exc
    try:
        created_at = datetime.fromisoformat(str(data["created_at"]))
    except ValueError as exc:
        raise InvalidEvent("field 'created_at' is not an ISO 8601 timestamp") from exc
    if created_at.tzinfo is None:
        # Publishers write UTC; a naive stamp is read as UTC rather than local time.
        created_at = created_at.replace(tzinfo=UTC)
    row_index = data.get("row_index", 0)
    if isinstance(row_index, bool) or not isinstance(row_index, int) or row_index < 0:
        raise InvalidEvent("field 'row_index' must be a non-negative integer")
    request_id = str(data["request_id"])
    if not request_id or len(request_id) > 64:
        raise InvalidEvent("field 'request_id' must be 1 to 64 characters")
    latency = _optional_float(data.get("latency_ms", 0.0), "latency_ms")
    return PredictionEvent(
        event_id=event_id,
        request_id=request_id,
        row_index=row_index,
        model=str(data["model"])[:128],
        version=str(data["version"])[:64],
        routed_by=str(data.get("routed_by") or "single")[:32],
        features=data["features"],
        prediction=data["prediction"],
        probabilities=data.get("probabilities"),
        confidence=_optional_float(data.get("confidence"), "confidence"),
        latency_ms=latency if latency is not None else 0.0,
        created_at=created_at,
    )


# Kafka's default message.max.bytes is 1 MB; stay under it with room for headers.
MAX_MESSAGE_BYTES = 900_000


def pack_events(
    encoded: list[bytes], *, max_bytes: int = MAX_MESSAGE_BYTES
) -> tuple[list[bytes], int]:
    """Join encoded events into JSON-array messages of at most ``max_bytes``.

    One message per few hundred events instead of one per event: kafka-python
    spends tens of microseconds of Python per record, under the GIL of the API
    process. Returns (messages, events too large to fit any message).
    """
    messages: list[bytes] = []
    chunk: list[bytes] = []
    size = 2  # the brackets
    too_large = 0
    for event in encoded:
        if len(event) + 2 > max_bytes:
            too_large += 1
            continue
        if chunk and size + len(event) + 1 > max_bytes:
            messages.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        chunk.append(event)
        size += len(event) + 1
    if chunk:
        messages.append(b"[" + b",".join(chunk) + b"]")
    return messages, too_large


def unpack_message(raw: bytes | bytearray | memoryview | None) -> tuple[list[Any], bool]:
    """The events a message carries and whether it was an array (else one event object).

    Raises ``InvalidEvent`` (kind ``not_json``) when the message is not JSON at all.
    """
    try:
        data = orjson.loads(bytes(raw or b""))
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}", kind="not_json") from exc
    return (data, True) if isinstance(data, list) else ([data], False)
