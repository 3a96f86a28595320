"""The drift job tests outputs as well as inputs, on the regression and text demos: a
shifted output distribution is caught, an unshifted one is not; text inputs are tested
through their length, word count and unknown-word share; the model page shows it. And
the self-healing loop for each: drift -> the demo's recipe retrains on the recent
labelled rows -> a staging challenger that serves."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from inference.prediction.table_scoring import table_predict
from models_registry.models import ModelVersion
from monitoring.models import PredictionLog
from phoenix.demo import house_prices, support_tickets

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def artifacts() -> dict[str, Any]:
    X, y, names = house_prices.generate_houses(n=2000, seed=1)
    texts, labels, _ = support_tickets.generate_tickets(n=2000, seed=1)
    return {
        "house-prices": (
            house_prices.to_onnx_bytes(house_prices.train_challenger(X, y), names),
            _numeric_csv(X[:1500], names),
        ),
        "support-tickets": (
            support_tickets.to_onnx_bytes(support_tickets.train_champion(texts, labels)),
            support_tickets.reference_csv(texts[:1500]),
        ),
    }


def _numeric_csv(X: np.ndarray, names: list[str]) -> bytes:
    from phoenix.demo.credit_risk import reference_csv

    return reference_csv(X, names)


def _register(artifacts: dict[str, Any], name: str) -> ModelVersion:
    from models_registry.services import model_version_register

    model_bytes, reference = artifacts[name]
    return model_version_register(
        model_name=name,
        file=io.BytesIO(model_bytes),
        stage="production",
        alias="champion",
        reference=io.BytesIO(reference),
        reference_filename="reference.csv",
    )


def _log(
    version: ModelVersion,
    rows: list[dict[str, Any]],
    table: np.ndarray,
    actual: list[Any] | None = None,
) -> None:
    """The rows with the model's real answers, as the event log would hold them."""
    with version.file.open("rb") as handle:
        scored = table_predict(
            model_bytes=handle.read(), feature_names=version.feature_names, table=table
        )
    at = timezone.now() - timedelta(minutes=5)
    confidence = scored.confidence or [None] * len(rows)
    labels = actual if actual is not None else [None] * len(rows)
    PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name=version.model.name,
            version=version.version,
            routed_by="single",
            features=row,
            prediction=prediction,
            confidence=conf,
            latency_ms=1.0,
            created_at=at,
            actual=label,
            actual_at=at if label is not None else None,
        )
        for row, prediction, conf, label in zip(
            rows, scored.predictions, confidence, labels, strict=True
        )
    )


def _log_tickets(
    version: ModelVersion, *, seed: int, n: int = 400, labelled: bool = False, **shift: Any
) -> None:
    texts, labels, _ = support_tickets.generate_tickets(n=n, seed=seed, **shift)
    table = np.empty((len(texts), 1), dtype=object)
    table[:, 0] = texts
    _log(version, [{"text": t} for t in texts], table, labels if labelled else None)


def _log_houses(
    version: ModelVersion,
    *,
    seed: int,
    n: int = 400,
    labelled: bool = False,
    shift: dict[str, float] | None = None,
) -> None:
    X, y, names = house_prices.generate_houses(n=n, seed=seed, shift=shift)
    rows = [dict(zip(names, map(float, row), strict=True)) for row in X]
    _log(version, rows, X, [round(float(v), 3) for v in y] if labelled else None)


def _report(version: ModelVersion) -> Any:
    from monitoring.services.drift_reports import drift_report_compute

    return drift_report_compute(version=version, window=timedelta(hours=1))


def test_unshifted_tickets_are_ok_with_outputs_and_text_profiles_tested(artifacts: Any) -> None:
    version = _register(artifacts, "support-tickets")
    _log_tickets(version, seed=101)

    report = _report(version)

    assert report.status == "ok", (report.features, report.predictions)
    assert set(report.features) == {"text.length", "text.words", "text.unknown_word_share"}
    assert all(f["test"] == "ks" for f in report.features.values())
    assert report.predictions["prediction"]["test"] == "chi2"
    assert report.predictions["prediction"]["kind"] == "class_shares"
    assert report.predictions["confidence"]["test"] == "ks"
    assert report.predictions["prediction"]["rows"] == 400


def test_shifted_class_shares_are_prediction_drift(artifacts: Any) -> None:
    version = _register(artifacts, "support-tickets")
    # Mostly billing tickets: the same kind of texts, another mix of teams.
    _log_tickets(version, seed=102, class_weights=[6.0, 1.0, 1.0, 1.0])

    report = _report(version)

    assert report.status == "drift"
    assert report.predictions["prediction"]["drift"]
    assert report.predictions["prediction"]["p_adjusted"] < 1e-6


def test_texts_in_new_words_are_input_drift(artifacts: Any) -> None:
    version = _register(artifacts, "support-tickets")
    texts, _, _ = support_tickets.generate_tickets(n=400, seed=103)
    texts = [f"{t} zorblax quintessa" for t in texts]  # words no ticket ever used
    table = np.empty((len(texts), 1), dtype=object)
    table[:, 0] = texts
    _log(version, [{"text": t} for t in texts], table)

    report = _report(version)

    assert report.status == "drift"
    assert report.features["text.unknown_word_share"]["drift"]


def test_regressor_outputs_get_ks_on_the_predicted_value(artifacts: Any) -> None:
    version = _register(artifacts, "house-prices")
    _log_houses(version, seed=101)

    unshifted = _report(version)

    assert unshifted.status == "ok", (unshifted.features, unshifted.predictions)
    assert unshifted.predictions["prediction"]["test"] == "ks"
    assert unshifted.predictions["prediction"]["kind"] == "value"
    assert "confidence" not in unshifted.predictions

    PredictionLog.objects.all().delete()
    _log_houses(version, seed=102, shift={"living_area_m2": 0.6})
    shifted = _report(version)

    assert shifted.status == "drift"
    assert shifted.predictions["prediction"]["drift"]
    assert shifted.features["living_area_m2"]["drift"]


def test_check_drift_command_prints_the_output_tests(artifacts: Any) -> None:
    from django.core.management import call_command

    version = _register(artifacts, "support-tickets")
    _log_tickets(version, seed=102, class_weights=[6.0, 1.0, 1.0, 1.0])
    out = io.StringIO()

    call_command("check_drift", "--model", "support-tickets", "--window", "1h", stdout=out)

    lines = [line.split() for line in out.getvalue().splitlines()]
    output = next(r for r in lines if r[:1] == ["output:prediction"])
    assert output[:2] == ["output:prediction", "chi2"]
    assert output[-1] == "YES"
    assert any(r[:1] == ["text.length"] for r in lines)


def test_model_page_shows_prediction_drift(artifacts: Any) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    version = _register(artifacts, "support-tickets")
    _log_tickets(version, seed=102, class_weights=[6.0, 1.0, 1.0, 1.0])
    _report(version)
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password="pw-1-phoenix"))

    page = client.get("/models/support-tickets/").content.decode()

    assert "Prediction drift" in page
    assert "text.unknown_word_share" in page
    assert "chi2" in page
    history = client.get("/drift/?model=support-tickets").content.decode()
    assert "Drifted outputs" in history
    assert "prediction" in history


# --- the self-healing loop ---------------------------------------------------------------


def _drift_and_retrain(name: str, log: Any, capture: Any) -> ModelVersion:
    """Train the demo, log drifted labelled traffic with ``log(champion)``, run the drift
    job (its on-commit retraining included); returns the challenger it registered."""
    from django.core.management import call_command

    from monitoring.models import DriftReport, RetrainingJob
    from monitoring.tasks import check_drift

    call_command("train_demo_models", rows=1200, reference_rows=400, models=[name])
    champion = ModelVersion.objects.get(model__name=name, stage="production")
    log(champion)

    with capture(execute=True):
        check_drift()

    assert DriftReport.objects.get(model_version=champion).status == "drift"
    job = RetrainingJob.objects.get(model=champion.model)
    assert job.status == "succeeded", job.error
    challenger = job.new_version
    assert challenger is not None
    assert challenger.stage == "staging"
    assert challenger.tags["retrained_from"] == champion.version
    assert challenger.metrics["labelled_rows"] == 800
    assert challenger.tags["holdout"] == "recent"
    return challenger


def _serves(version: ModelVersion, table: np.ndarray) -> Any:
    from models_registry.selectors import reference_data_load

    reference, names = reference_data_load(version=version)
    assert names == version.feature_names
    assert len(reference) > 0
    with version.file.open("rb") as handle:
        return table_predict(model_bytes=handle.read(), feature_names=names, table=table)


def test_house_prices_retrains_into_a_staging_challenger_on_labelled_prices(
    django_capture_on_commit_callbacks: Any,
) -> None:
    def log(champion: ModelVersion) -> None:
        _log_houses(champion, seed=201, n=800, labelled=True, shift={"distance_km": 1.0})

    challenger = _drift_and_retrain("house-prices", log, django_capture_on_commit_callbacks)

    assert challenger.model.retraining_recipe == "demo.house_prices"
    assert challenger.metrics["r2"] > 0.7
    assert challenger.metrics["mae"] > 0
    X, _, _ = house_prices.generate_houses(n=5, seed=3)
    scored = _serves(challenger, X)
    assert all(isinstance(v, float) for v in scored.predictions)


def test_support_tickets_retrains_into_a_staging_challenger_on_labelled_texts(
    django_capture_on_commit_callbacks: Any,
) -> None:
    def log(champion: ModelVersion) -> None:
        _log_tickets(champion, seed=202, n=800, labelled=True, class_weights=[1, 1, 1, 6])

    challenger = _drift_and_retrain("support-tickets", log, django_capture_on_commit_callbacks)

    assert challenger.model.retraining_recipe == "demo.support_tickets"
    assert challenger.metrics["accuracy"] > 0.7
    # Its reference is the recent texts, kept as text (a unicode .npy).
    assert challenger.reference_data.name.endswith(".npy")
    table = np.empty((2, 1), dtype=object)
    table[:, 0] = ["refund my invoice please", "parcel lost by the courier"]
    scored = _serves(challenger, table)
    assert scored.predictions == ["billing", "shipping"]
