"""Operator commands: revoke_api_key, purge_predictions, export_predictions."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from inference import api_keys
from inference.models import ApiKey
from monitoring.models import PredictionLog
from monitoring.services.retention import duration_parse


def _log(model: str, age: timedelta, *, actual: Any = None, row: int = 0) -> PredictionLog:
    created = timezone.now() - age
    return PredictionLog.objects.create(
        event_id=uuid.uuid4(),
        request_id=f"r-{uuid.uuid4().hex[:8]}",
        row_index=row,
        model_name=model,
        version="1",
        routed_by="single:champion",
        features={"x1": 1.5, "x2": -2.0},
        prediction=1,
        probabilities=[0.25, 0.75],
        confidence=0.75,
        latency_ms=1.25,
        created_at=created,
        actual=actual,
        actual_at=created if actual is not None else None,
    )


def _ours() -> Any:
    """This file's rows only: other tests' publishers may still be writing theirs."""
    return PredictionLog.objects.filter(model_name__startswith="maint-")


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("2w", 1209600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert duration_parse(text) == timedelta(seconds=seconds)


@pytest.mark.django_db
def test_revoke_api_key_by_prefix_or_name(client: Any) -> None:
    first, key = api_keys.api_key_create(name="batch-job", all_models=True)
    api_keys.api_key_create(name="twice", all_models=True)
    api_keys.api_key_create(name="twice", all_models=True)

    said = _run("revoke_api_key", first.prefix)

    assert "is revoked" in said
    assert ApiKey.objects.get(pk=first.pk).revoked_at is not None
    assert "already revoked" in _run("revoke_api_key", "batch-job")
    with pytest.raises(CommandError, match="2 keys are named 'twice'"):
        _run("revoke_api_key", "twice")
    with pytest.raises(CommandError, match="No API key"):
        _run("revoke_api_key", "phx_nothing")
    answer = client.post(
        "/api/v1/models/any/predict",
        {"features": {}},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert answer.status_code == 401


@pytest.mark.django_db
def test_purge_deletes_only_old_rows_of_the_model_in_batches() -> None:
    old = [_log("maint-credit", timedelta(days=40)) for _ in range(7)]
    recent = _log("maint-credit", timedelta(days=2))
    other_old = _log("maint-churn", timedelta(days=40))

    dry = _run("purge_predictions", "--older-than", "30d", "--model", "maint-credit", "--dry-run")
    assert dry.startswith("7 row(s) would be deleted")
    assert _ours().count() == 9

    said = _run(
        "purge_predictions", "--older-than", "30d", "--model", "maint-credit", "--batch-size", "3"
    )

    assert "Deleted 7 row(s)" in said
    assert "in 3 batch(es)" in said
    remaining = set(_ours().values_list("pk", flat=True))
    assert remaining == {recent.pk, other_old.pk}
    assert not remaining & {row.pk for row in old}


@pytest.mark.django_db
def test_purge_refuses_a_bad_duration() -> None:
    with pytest.raises(CommandError, match="not a duration"):
        _run("purge_predictions", "--older-than", "soon")


@pytest.mark.django_db
def test_export_csv_streams_every_column_oldest_first(tmp_path: Path) -> None:
    newer = _log("maint-credit", timedelta(hours=1), actual=1)
    older = _log("maint-credit", timedelta(days=3))
    _log("maint-credit", timedelta(days=30))  # before --since
    _log("maint-churn", timedelta(hours=1))  # another model

    out = tmp_path / "export.csv"
    call_command(
        "export_predictions",
        "--model",
        "maint-credit",
        "--since",
        "7d",
        "--output",
        str(out),
        stderr=io.StringIO(),
    )

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["event_id"] for r in rows] == [str(older.event_id), str(newer.event_id)]
    assert rows[1]["features"] == '{"x1":1.5,"x2":-2.0}'
    assert rows[1]["probabilities"] == "[0.25,0.75]"
    assert rows[1]["actual"] == "1"
    assert rows[0]["actual"] == ""


@pytest.mark.django_db
def test_export_parquet_has_the_same_rows(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    logged = [_log("maint-credit", timedelta(minutes=m), row=m) for m in range(5)]
    out = tmp_path / "export.parquet"

    call_command(
        "export_predictions",
        "--model",
        "maint-credit",
        "--format",
        "parquet",
        "--output",
        str(out),
        stderr=io.StringIO(),
    )

    table = pq.read_table(out)
    assert table.num_rows == 5
    assert set(table.column("event_id").to_pylist()) == {str(r.event_id) for r in logged}
    assert table.column("confidence").to_pylist() == [0.75] * 5
    assert table.schema.field("created_at").type.tz == "UTC"


@pytest.mark.django_db
def test_export_parquet_needs_a_file() -> None:
    with pytest.raises(CommandError, match="parquet needs --output"):
        call_command("export_predictions", "--format", "parquet", stderr=io.StringIO())


@pytest.mark.django_db
def test_daily_task_purges_past_the_configured_retention(settings: Any) -> None:
    from django_celery_beat.models import PeriodicTask

    from monitoring.tasks import purge_predictions

    old, recent = _log("maint-credit", timedelta(days=100)), _log("maint-credit", timedelta(days=1))
    settings.PHOENIX_PREDICTION_RETENTION = ""
    assert purge_predictions() == 0  # unset: everything is kept
    settings.PHOENIX_PREDICTION_RETENTION = "90d"

    purge_predictions()

    assert set(_ours().values_list("pk", flat=True)) == {recent.pk}
    assert not _ours().filter(pk=old.pk).exists()
    scheduled = PeriodicTask.objects.get(task="monitoring.tasks.purge_predictions")
    assert scheduled.enabled
    assert scheduled.crontab is not None
