"""The prediction log over time: purging old rows in bounded batches, exporting rows.

Purging deletes in batches of primary keys (one short transaction each), so a purge of
millions of rows never holds a long lock or one huge transaction while predictions
are being written. Exports stream: rows are read in chunks from a server-side cursor
(``iterator``) and written as they come, CSV or Parquet, so memory stays flat whatever
the period.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

import orjson
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from phoenix.exceptions import InvalidInput

from ..models import PredictionLog

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

EXPORT_COLUMNS = (
    "event_id",
    "request_id",
    "row_index",
    "model_name",
    "version",
    "routed_by",
    "created_at",
    "features",
    "prediction",
    "probabilities",
    "confidence",
    "latency_ms",
    "actual",
    "actual_at",
)
EXPORT_FORMATS = ("csv", "parquet")


def duration_parse(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` as a timedelta. Raises InvalidInput."""
    match = _DURATION.match(text or "")
    if match is None:
        raise InvalidInput(
            f"{text!r} is not a duration; use a number and s, m, h, d or w (e.g. 30d).",
            details={"duration": text},
        )
    return timedelta(seconds=float(match[1]) * _SECONDS[match[2]])


def _rows(
    *, model_name: str | None, since: datetime | None, until: datetime | None
) -> QuerySet[PredictionLog]:
    rows = PredictionLog.objects.all()
    if model_name:
        rows = rows.filter(model_name=model_name)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lt=until)
    return rows


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    batches: int
    cutoff: datetime


def predictions_purge(
    *, older_than: timedelta, model_name: str | None = None, batch_size: int = 5000
) -> PurgeResult:
    """Delete prediction rows created before now - ``older_than`` (one model or all),
    ``batch_size`` rows per transaction. Returns what was deleted."""
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1.", details={"batch_size": batch_size})
    cutoff = timezone.now() - older_than
    old = _rows(model_name=model_name, since=None, until=cutoff).order_by("pk")
    deleted = batches = 0
    while True:
        with transaction.atomic():
            ids = list(old.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            count, _ = PredictionLog.objects.filter(pk__in=ids).delete()
        deleted += count
        batches += 1
    return PurgeResult(deleted=deleted, batches=batches, cutoff=cutoff)


def predictions_count(
    *, model_name: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> int:
    return _rows(model_name=model_name, since=since, until=until).count()


def _records(
    *, model_name: str | None, since: datetime | None, until: datetime | None, chunk: int
) -> Iterator[dict[str, Any]]:
    rows = _rows(model_name=model_name, since=since, until=until).order_by("created_at", "pk")
    for values in rows.values(*EXPORT_COLUMNS).iterator(chunk_size=chunk):
        values["event_id"] = str(values["event_id"])
        yield values


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def predictions_export(
    out: IO[Any],
    *,
    export_format: str,
    model_name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk: int = 2000,
) -> int:
    """Write the matching rows to ``out`` (text for csv, binary for parquet), oldest
    first; JSON columns as JSON text. Returns the number of rows written."""
    if export_format not in EXPORT_FORMATS:
        raise InvalidInput(
            f"Unknown format {export_format!r}; use csv or parquet.",
            details={"format": export_format},
        )
    records = _records(model_name=model_name, since=since, until=until, chunk=chunk)
    if export_format == "csv":
        return _csv_write(out, records)
    return _parquet_write(out, records, chunk=chunk)


_JSON_COLUMNS = ("features", "prediction", "probabilities", "actual")


def _csv_write(out: IO[str], records: Iterator[dict[str, Any]]) -> int:
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    written = 0
    for record in records:
        for column in _JSON_COLUMNS:
            record[column] = _json_text(record[column])
        for column in ("created_at", "actual_at"):
            record[column] = record[column].isoformat() if record[column] else ""
        writer.writerow(record)
        written += 1
    return written


def _parquet_write(out: IO[bytes], records: Iterator[dict[str, Any]], *, chunk: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("request_id", pa.string()),
            ("row_index", pa.int64()),
            ("model_name", pa.string()),
            ("version", pa.string()),
            ("routed_by", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("features", pa.string()),
            ("prediction", pa.string()),
            ("probabilities", pa.string()),
            ("confidence", pa.float64()),
            ("latency_ms", pa.float64()),
            ("actual", pa.string()),
            ("actual_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    written = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in records:
            for column in _JSON_COLUMNS:
                record[column] = _json_text(record[column])
            batch.append(record)
            if len(batch) >= chunk:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                written += len(batch)
                batch = []
        if batch or not written:
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            written += len(batch)
    return written


def predictions_purge_by_policy() -> int:
    """The daily purge: rows older than ``PHOENIX_PREDICTION_RETENTION`` (e.g. ``90d``);
    nothing when it is unset. Returns how many rows were deleted."""
    import logging

    from django.conf import settings

    retention = settings.PHOENIX_PREDICTION_RETENTION
    if not retention:
        return 0
    result = predictions_purge(older_than=duration_parse(retention))
    logging.getLogger(__name__).info(
        "retention %s: deleted %d prediction row(s) created before %s",
        retention,
        result.deleted,
        result.cutoff.isoformat(),
    )
    return result.deleted
