"""simulate_traffic against a live server: real predictions and feedback, then drift is caught."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from inference.api_keys import api_key_create
from inference.auth import api_key_cache_clear
from inference.session_cache import session_cache
from monitoring.models import PredictionLog
from phoenix.demo import credit_risk as demo


@pytest.fixture
def served(live_server: Any) -> Any:
    from models_registry.services import model_version_register

    session_cache.clear()
    api_key_cache_clear()
    X, y, names = demo.generate_customers(n=2000, seed=demo.DEFAULT_SEED)
    version = model_version_register(
        model_name=demo.MODEL_NAME,
        file=io.BytesIO(demo.to_onnx_bytes(demo.train_champion(X, y), names)),
        stage="production",
        reference=io.BytesIO(demo.reference_csv(X, names)),
        reference_filename="reference.csv",
    )
    key = api_key_create(name="traffic", model_names=[demo.MODEL_NAME])[1]
    session_cache.refresh(reason="test start")
    yield {"url": live_server.url, "key": key, "version": version}
    session_cache.clear()


def test_simulated_drifting_traffic_is_logged_with_feedback_and_caught(
    served: dict[str, Any], settings: Any
) -> None:
    from inference.events import get_publisher
    from monitoring.services.drift_reports import drift_report_compute

    settings.PHOENIX_DRIFT_MIN_ROWS = 50
    out = io.StringIO()

    call_command(
        "simulate_traffic",
        "--url",
        served["url"],
        "--api-key",
        served["key"],
        "--rps",
        "60",
        "--duration",
        "2",
        "--drift",
        "income:2.0",
        "--feedback-share",
        "0.5",
        "--seed",
        "3",
        stdout=out,
    )
    logged = PredictionLog.objects.filter(model_name=demo.MODEL_NAME)
    # On SQLite the event writer may meet a locked table and journal a batch; it
    # replays after a short backoff, so wait for it (nothing is lost).
    deadline = time.monotonic() + 20
    while logged.count() < 120 and time.monotonic() < deadline:
        get_publisher().flush()
        time.sleep(0.2)

    summary = out.getvalue()
    assert "sent 120 predictions" in summary
    assert "120 ok" in summary
    assert logged.count() == 120
    labelled = logged.exclude(actual__isnull=True).count()
    assert 30 <= labelled <= 90
    # Every accepted feedback is on its logged row. (On SQLite a feedback may race the
    # event writer and be refused as unknown; the summary counts it as not accepted.)
    assert f", {labelled} accepted" in summary

    report = drift_report_compute(version=served["version"], window=timedelta(minutes=10))
    assert report.status == "drift"
    assert report.features["income"]["drift"]


def test_simulate_traffic_refuses_bad_arguments_and_reports_a_dead_server(
    served: dict[str, Any],
) -> None:
    with pytest.raises(CommandError, match="FEATURE:SHIFT"):
        call_command("simulate_traffic", "--drift", "salary:1")
    with pytest.raises(CommandError, match="rps"):
        call_command("simulate_traffic", "--rps", "0")
    with pytest.raises(CommandError, match="No prediction succeeded"):
        call_command(
            "simulate_traffic",
            "--url",
            "http://127.0.0.1:9",
            "--rps",
            "5",
            "--duration",
            "0.4",
            stdout=io.StringIO(),
        )
