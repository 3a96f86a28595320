"""Performance from labels: reports per version and window, the alert and retraining on a
drop (and none without labels), the regressor path, metrics, the command, the beat
entry, the chart on the model page, and the "why this prediction" panel."""

from __future__ import annotations

import importlib
import io
import json
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient
from sklearn.metrics import accuracy_score, mean_absolute_error, roc_auc_score

from models_registry.models import ModelVersion
from monitoring.models import Alert, PerformanceReport, PredictionLog, RetrainingJob
from tests.inference_support import FEATURES, onnx_classifier, onnx_regressor

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_inference_state", "media")]

HOLDOUT = {"accuracy": 0.9, "roc_auc": 0.85, "log_loss": 0.3, "holdout_rows": 400.0}
REFERENCE = np.random.default_rng(4).normal(size=(200, 3))
WINDOW = timedelta(hours=1)


@pytest.fixture(autouse=True)
def _clear_class_labels() -> Any:
    from monitoring.selectors.performance import performance_cache_clear

    performance_cache_clear()
    yield
    performance_cache_clear()


def _csv(matrix: np.ndarray) -> io.BytesIO:
    lines = [",".join(FEATURES)] + [",".join(f"{v:.6f}" for v in row) for row in matrix]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def _register(
    name: str, path: Path, *, metrics: dict[str, Any], stage: str = "production", **extra: Any
) -> ModelVersion:
    from models_registry.services import model_version_register

    return model_version_register(
        model_name=name,
        file=path,
        stage=stage,
        metrics=metrics,
        reference=_csv(REFERENCE),
        reference_filename="reference.csv",
        **extra,
    )


@pytest.fixture
def classifier(tmp_path: Path) -> ModelVersion:
    return _register("credit", onnx_classifier(tmp_path / "lr.onnx"), metrics=HOLDOUT)


def _classifier_rows(
    version: ModelVersion,
    *,
    n: int,
    accuracy: float,
    labelled: int,
    seed: int = 0,
    age: timedelta = timedelta(minutes=20),
    delay: timedelta = timedelta(minutes=3),
) -> list[PredictionLog]:
    """``n`` logged rows of a binary classifier; the first ``labelled`` get ground truth
    that agrees with the prediction in ``accuracy`` of them (exactly, not by chance)."""
    rng = np.random.default_rng(seed)
    p1 = rng.uniform(0, 1, size=n)
    predicted = (p1 >= 0.5).astype(int)
    right = np.zeros(n, dtype=bool)
    right[: round(labelled * accuracy)] = True
    rng.shuffle(right[:labelled])
    at = timezone.now() - age
    rows = [
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name=version.model.name,
            version=version.version,
            routed_by="single:champion",
            features=dict(zip(FEATURES, map(float, rng.normal(size=3)), strict=True)),
            prediction=int(predicted[i]),
            probabilities=[float(1 - p1[i]), float(p1[i])],
            confidence=float(max(p1[i], 1 - p1[i])),
            latency_ms=1.0,
            created_at=at,
            actual=(int(predicted[i]) if right[i] else int(1 - predicted[i]))
            if i < labelled
            else None,
            actual_at=at + delay if i < labelled else None,
        )
        for i in range(n)
    ]
    return PredictionLog.objects.bulk_create(rows)


def _compute(version: ModelVersion) -> PerformanceReport:
    from monitoring.services.performance import performance_check

    return performance_check(version=version, window=WINDOW)


def _gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


# --- classifier -------------------------------------------------------------------------


def test_report_metrics_equal_sklearn_with_labelled_share_and_delay(
    classifier: ModelVersion,
) -> None:
    rows = _classifier_rows(classifier, n=400, accuracy=0.88, labelled=300)
    labelled = [r for r in rows if r.actual is not None]

    report = _compute(classifier)

    y = [r.actual for r in labelled]
    assert report.task == "classification"
    assert report.status == "ok"
    assert (report.rows, report.labelled) == (400, 300)
    assert report.labelled_share == pytest.approx(0.75)
    assert report.label_delay_p50_s == pytest.approx(180.0)
    assert report.label_delay_p95_s == pytest.approx(180.0)
    assert report.metrics["accuracy"] == pytest.approx(
        accuracy_score(y, [r.prediction for r in labelled])
    )
    assert report.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y, [r.probabilities[1] for r in labelled])
    )
    assert 0.0 <= report.metrics["ece"] <= 1.0
    assert report.holdout == {"accuracy": 0.9, "roc_auc": 0.85}
    labels = {"model": "credit", "version": classifier.version}
    assert _gauge("phoenix_performance_metric", **labels, metric="accuracy") == pytest.approx(
        report.metrics["accuracy"]
    )
    assert _gauge("phoenix_performance_degraded", **labels) == 0.0
    assert _gauge("phoenix_performance_labelled_share", **labels) == pytest.approx(0.75)
    assert _gauge("phoenix_performance_label_delay_seconds", **labels, quantile="0.5") == 180.0
    # Bounded labels: the metric label takes only the module's metric names.
    exported = {
        sample.labels["metric"]
        for family in REGISTRY.collect()
        if family.name == "phoenix_performance_metric"
        for sample in family.samples
    }
    assert exported <= {"accuracy", "roc_auc", "ece", "mae", "rmse"}


def test_accuracy_drop_with_labels_raises_an_alert_and_requests_retraining(
    classifier: ModelVersion,
) -> None:
    _classifier_rows(classifier, n=300, accuracy=0.6, labelled=200)

    report = _compute(classifier)

    assert report.status == "degraded"
    assert report.metrics["accuracy"] == pytest.approx(0.6)
    dropped = [c for c in report.comparisons if c["degraded"]]
    assert [c["metric"] for c in dropped][:1] == ["accuracy"]
    assert dropped[0]["change"] == pytest.approx(-0.3)
    alert = Alert.objects.get(kind="performance")
    assert alert.model_version == classifier
    assert "accuracy 0.600 vs 0.900 holdout" in alert.message
    assert alert.payload["degraded_metrics"][0] == "accuracy"
    # The model has no recipe: the retraining request is a manual job, with its own alert.
    job = RetrainingJob.objects.get(model=classifier.model)
    assert job.status == "manual"
    assert "lost performance" in Alert.objects.get(kind="retraining").message
    labels = {"model": "credit", "version": classifier.version}
    assert _gauge("phoenix_performance_degraded", **labels) == 1.0


def test_same_drop_without_labels_raises_nothing(classifier: ModelVersion) -> None:
    _classifier_rows(classifier, n=300, accuracy=0.6, labelled=0)

    report = _compute(classifier)

    assert report.status == "insufficient_data"
    assert (report.rows, report.labelled, report.labelled_share) == (300, 0, 0.0)
    assert report.metrics == {}
    assert not Alert.objects.exists()
    assert not RetrainingJob.objects.exists()


def test_too_few_labels_give_metrics_but_no_verdict(
    classifier: ModelVersion, settings: Any
) -> None:
    settings.PHOENIX_PERFORMANCE_MIN_LABELS = 100
    _classifier_rows(classifier, n=300, accuracy=0.5, labelled=99)

    report = _compute(classifier)

    assert report.status == "insufficient_data"
    assert report.metrics["accuracy"] == pytest.approx(50 / 99)
    assert not Alert.objects.exists()


def test_a_drop_within_the_threshold_is_ok(classifier: ModelVersion, settings: Any) -> None:
    settings.PHOENIX_PERFORMANCE_MAX_DROP = 0.05
    _classifier_rows(classifier, n=200, accuracy=0.86, labelled=200)

    assert _compute(classifier).status == "ok"
    assert not Alert.objects.exists()


def test_a_lasting_drop_alerts_once(classifier: ModelVersion) -> None:
    _classifier_rows(classifier, n=200, accuracy=0.6, labelled=200)

    first, second = _compute(classifier), _compute(classifier)

    assert first.status == second.status == "degraded"
    assert Alert.objects.filter(kind="performance").count() == 1
    assert RetrainingJob.objects.count() == 1  # the cooldown holds the second request


def test_rows_outside_the_window_or_of_another_version_do_not_count(
    classifier: ModelVersion, tmp_path: Path
) -> None:
    other = _register(
        "credit", onnx_classifier(tmp_path / "b.onnx", flip=True), metrics=HOLDOUT, stage="staging"
    )
    _classifier_rows(classifier, n=150, accuracy=0.95, labelled=150)
    _classifier_rows(classifier, n=150, accuracy=0.1, labelled=150, age=timedelta(hours=3))
    _classifier_rows(other, n=150, accuracy=0.1, labelled=150)

    report = _compute(classifier)

    assert report.labelled == 150
    assert report.metrics["accuracy"] == pytest.approx(0.95, abs=0.01)


def test_labels_from_the_feedback_service_are_measured(classifier: ModelVersion) -> None:
    from monitoring.services.feedback import prediction_feedback_record

    rows = _classifier_rows(classifier, n=120, accuracy=1.0, labelled=0)
    for i, row in enumerate(rows):
        wrong = i % 2 == 0  # half of the labels disagree with the prediction
        prediction_feedback_record(
            request_id=row.request_id, actual=1 - row.prediction if wrong else row.prediction
        )

    report = _compute(classifier)

    assert report.labelled == 120
    assert report.metrics["accuracy"] == pytest.approx(0.5)
    assert report.status == "degraded"
    # Logged 20 minutes ago, labelled now.
    assert 20 * 60 - 1 <= report.label_delay_p50_s <= 30 * 60


# --- regressor ----------------------------------------------------------------------------


@pytest.fixture
def regressor(tmp_path: Path) -> ModelVersion:
    return _register(
        "prices",
        onnx_regressor(tmp_path / "reg.onnx"),
        metrics={"mae": 1.0, "rmse": 1.2, "r2": 0.9},
    )


def _regression_rows(version: ModelVersion, *, n: int, error: float) -> list[tuple[float, float]]:
    rng = np.random.default_rng(8)
    at = timezone.now() - timedelta(minutes=10)
    pairs = [(float(y), float(y + rng.choice([-error, error]))) for y in rng.normal(5, 2, size=n)]
    PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name=version.model.name,
            version=version.version,
            routed_by="single:champion",
            features=dict(zip(FEATURES, [0.0, 0.0, 0.0], strict=True)),
            prediction=predicted,
            latency_ms=1.0,
            created_at=at,
            actual=actual,
            actual_at=at + timedelta(seconds=30),
        )
        for actual, predicted in pairs
    )
    return pairs


def test_regressor_is_measured_by_mae_and_rmse_and_alerts_on_a_larger_error(
    regressor: ModelVersion,
) -> None:
    pairs = _regression_rows(regressor, n=200, error=1.5)

    report = _compute(regressor)

    assert report.task == "regression"
    assert report.metrics["mae"] == pytest.approx(
        mean_absolute_error([a for a, _ in pairs], [p for _, p in pairs])
    )
    assert report.metrics["rmse"] == pytest.approx(1.5)
    assert report.holdout == {"mae": 1.0, "rmse": 1.2}
    assert report.status == "degraded"
    assert {c["metric"] for c in report.comparisons if c["degraded"]} == {"mae", "rmse"}
    assert Alert.objects.filter(kind="performance", model_version=regressor).count() == 1


def test_regressor_within_its_holdout_error_is_ok(regressor: ModelVersion) -> None:
    _regression_rows(regressor, n=200, error=1.1)

    report = _compute(regressor)

    assert report.status == "ok"
    assert not Alert.objects.exists()


# --- entry points -------------------------------------------------------------------------


def test_check_performance_command_prints_each_served_version(
    classifier: ModelVersion, capsys: pytest.CaptureFixture[str]
) -> None:
    _classifier_rows(classifier, n=200, accuracy=0.6, labelled=200)

    call_command("check_performance", "--model", "credit", "--window", "1h")

    out = capsys.readouterr().out
    assert "credit v1 (classification): DEGRADED (200 of 200 predictions labelled" in out
    assert re.search(r"accuracy\s+0\.6000\s+holdout 0\.9000\s+DROP", out)
    assert PerformanceReport.objects.filter(model_version=classifier).count() == 1


def test_beat_runs_the_check_every_five_minutes(db: None) -> None:
    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    # migrate ran it; a transactional test before this one may have flushed its row,
    # so run it again: it only creates what is missing.
    migration = importlib.import_module("monitoring.migrations.0011_performance_reports")
    migration.create_schedule(apps, None)
    migration.create_schedule(apps, None)

    task = PeriodicTask.objects.get(task="monitoring.tasks.check_performance")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (5, "minutes")
    assert task.expire_seconds == 240


def test_the_beat_task_checks_served_versions_only(
    classifier: ModelVersion, tmp_path: Path
) -> None:
    from monitoring.tasks import check_performance

    _register("credit", onnx_classifier(tmp_path / "dev.onnx", seed=2), metrics={}, stage="dev")

    # Celery runs eagerly in the test settings: each queued check runs at once.
    assert check_performance() == 1
    assert list(PerformanceReport.objects.values_list("model_version", flat=True)) == [
        classifier.pk
    ]


# --- the model page -----------------------------------------------------------------------


def _operator() -> Client:
    user = User.objects.create_user("olivia", password="pw-1-phoenix")
    user.groups.add(Group.objects.get_or_create(name="Operators")[0])
    client = Client()
    client.force_login(user)
    return client


def _chart_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="performance-data" type="application/json">(.*?)</script>', html)
    assert found, "the page carries the chart's data"
    return json.loads(found.group(1))


def test_model_page_charts_the_metric_over_time(classifier: ModelVersion) -> None:
    from monitoring.services.performance import performance_check

    now = timezone.now()
    _classifier_rows(classifier, n=100, accuracy=0.9, labelled=100, age=timedelta(minutes=90))
    _classifier_rows(classifier, n=100, accuracy=0.7, labelled=100, age=timedelta(minutes=20))
    older = performance_check(version=classifier, window=WINDOW, now=now - timedelta(hours=1))
    newer = performance_check(version=classifier, window=WINDOW, now=now)

    html = _operator().get("/models/credit/").content.decode()

    (series,) = _chart_data(html)["series"]
    assert (series["version"], series["arm"], series["metric"]) == ("1", "champion", "accuracy")
    assert series["holdout"] == 0.9
    assert [p["accuracy"] for p in series["points"]] == pytest.approx([0.9, 0.7])
    assert [p["t"] for p in series["points"]] == [
        older.window_end.timestamp(),
        newer.window_end.timestamp(),
    ]
    assert 'id="chart-performance"' in html
    assert 'data-points="2"' in html
    assert "Degraded" in html


def test_model_page_without_reports_has_an_empty_series(classifier: ModelVersion) -> None:
    html = _operator().get("/models/credit/").content.decode()

    (series,) = _chart_data(html)["series"]
    assert series["points"] == []
    assert "Not checked yet" in html


# --- why this prediction ------------------------------------------------------------------


def _explain(client: Client, model: str, row_id: int) -> Any:
    return client.get(f"/models/{model}/predictions/{row_id}/explain/")


def test_panel_lists_recent_predictions_with_an_explain_button(classifier: ModelVersion) -> None:
    rows = _classifier_rows(classifier, n=3, accuracy=1.0, labelled=1)

    html = _operator().get("/models/credit/").content.decode()

    assert 'id="explain-panel"' in html
    for row in rows:
        assert f'data-row-id="{row.pk}"' in html
    assert 'data-explain-url="/models/credit/predictions/"' in html


def test_panel_attributions_add_up_to_prediction_minus_baseline(
    classifier: ModelVersion,
) -> None:
    (row,) = _classifier_rows(classifier, n=1, accuracy=1.0, labelled=1)

    answer = _explain(_operator(), "credit", row.pk)

    assert answer.status_code == 200
    body = answer.json()
    assert (body["row_id"], body["version"], body["method"]) == (row.pk, "1", "linear-exact")
    assert {a["feature"] for a in body["attributions"]} == set(FEATURES)
    total = sum(a["attribution"] for a in body["attributions"])
    assert abs(total - (body["value"] - body["baseline"])) <= body["tolerance"] == 1e-6
    magnitudes = [abs(a["attribution"]) for a in body["attributions"]]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_panel_answers_what_the_explain_api_answers_for_the_same_row(
    classifier: ModelVersion,
) -> None:
    from inference import api_keys

    (row,) = _classifier_rows(classifier, n=1, accuracy=1.0, labelled=0)
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Bearer {api_keys.api_key_create(name='k', all_models=True)[1]}"
    )

    panel = _explain(_operator(), "credit", row.pk).json()
    rest = api.post(
        "/api/v1/models/credit/explain",
        {"features": row.features, "version": row.version},
        format="json",
    ).json()["explanations"][0]

    assert panel["value"] == pytest.approx(rest["value"])
    assert panel["baseline"] == pytest.approx(rest["baseline"])
    assert {a["feature"]: a["attribution"] for a in panel["attributions"]} == pytest.approx(
        rest["attributions"]
    )


def test_panel_explains_a_regressor_row(regressor: ModelVersion) -> None:
    _regression_rows(regressor, n=1, error=1.0)
    row = PredictionLog.objects.get(model_name="prices")
    row.features = {"x1": 0.5, "x2": -1.0, "x3": 2.0}
    row.save(update_fields=["features"])

    body = _explain(_operator(), "prices", row.pk).json()

    assert body["explained"] == "value"
    total = sum(a["attribution"] for a in body["attributions"])
    assert total == pytest.approx(body["value"] - body["baseline"], abs=body["tolerance"])
    # 0.5 + 2 * (-1.0) - 2.0 + 0.5: the linear model's own value.
    assert body["value"] == pytest.approx(-3.0, abs=1e-4)


def test_panel_refuses_people_outside_the_dashboard_groups(classifier: ModelVersion) -> None:
    (row,) = _classifier_rows(classifier, n=1, accuracy=1.0, labelled=0)
    outsider = Client()
    outsider.force_login(User.objects.create_user("eve", password="pw-1-phoenix"))

    assert _explain(outsider, "credit", row.pk).status_code == 403
    anonymous = _explain(Client(), "credit", row.pk)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


def test_panel_answers_404_for_a_row_of_another_model(
    classifier: ModelVersion, regressor: ModelVersion
) -> None:
    (row,) = _classifier_rows(classifier, n=1, accuracy=1.0, labelled=0)

    answer = _explain(_operator(), "prices", row.pk)

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


# --- the demo model, scored for real ------------------------------------------------------


@pytest.fixture(scope="module")
def demo_model() -> dict[str, Any]:
    """The demo champion trained from its seed, its holdout metrics as train_demo_models
    records them, and 800 new customers scored by the ONNX model (labels, probabilities)."""
    import onnxruntime as ort

    from phoenix.demo import credit_risk as demo

    X, y, names = demo.generate_customers(n=3000, seed=demo.DEFAULT_SEED)
    model_bytes = demo.to_onnx_bytes(demo.train_champion(X[:2400], y[:2400]), names)
    holdout = demo.evaluate_onnx(model_bytes, X[2400:], y[2400:])
    new_X, new_y, _ = demo.generate_customers(n=800, seed=7)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {session.get_inputs()[0].name: new_X.astype(np.float32)})
    return {
        "bytes": model_bytes,
        "holdout": holdout,
        "names": names,
        "X": new_X,
        "y": new_y,
        "labels": np.asarray(labels),
        "proba": np.asarray(proba),
    }


def _demo_logged(demo_model: dict[str, Any], *, flip_share: float) -> ModelVersion:
    from models_registry.services import model_version_register

    version = model_version_register(
        model_name="credit-risk",
        file=io.BytesIO(demo_model["bytes"]),
        stage="production",
        metrics=demo_model["holdout"],
    )
    y = demo_model["y"].copy()
    flipped = np.random.default_rng(3).random(len(y)) < flip_share
    y[flipped] = 1 - y[flipped]
    at = timezone.now() - timedelta(minutes=30)
    PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name="credit-risk",
            version=version.version,
            routed_by="single:champion",
            features=dict(zip(demo_model["names"], map(float, row), strict=True)),
            prediction=int(label),
            probabilities=[float(p) for p in probs],
            confidence=float(max(probs)),
            latency_ms=1.0,
            created_at=at,
            actual=int(truth),
            actual_at=at + timedelta(minutes=5),
        )
        for row, label, probs, truth in zip(
            demo_model["X"], demo_model["labels"], demo_model["proba"], y, strict=True
        )
    )
    return version


def test_demo_model_on_its_own_world_holds_its_holdout_metrics(demo_model: dict[str, Any]) -> None:
    version = _demo_logged(demo_model, flip_share=0.0)

    report = _compute(version)

    assert report.status == "ok", report.comparisons
    assert report.metrics["accuracy"] == pytest.approx(
        accuracy_score(demo_model["y"], demo_model["labels"])
    )
    assert report.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(demo_model["y"], demo_model["proba"][:, 1])
    )
    assert abs(report.metrics["accuracy"] - demo_model["holdout"]["accuracy"]) < 0.05
    assert not Alert.objects.exists()


def test_demo_model_in_a_changed_world_loses_accuracy_and_alerts(
    demo_model: dict[str, Any],
) -> None:
    version = _demo_logged(demo_model, flip_share=0.35)

    report = _compute(version)

    assert report.status == "degraded"
    assert "accuracy" in [c["metric"] for c in report.comparisons if c["degraded"]]
    assert Alert.objects.filter(kind="performance", model_version=version).exists()
    assert RetrainingJob.objects.filter(model=version.model).exists()


def test_multiclass_columns_follow_the_graphs_class_labels(tmp_path: Path) -> None:
    from models_registry.services import model_version_register
    from monitoring.selectors.performance import version_class_labels
    from tests.inference_support import onnx_text_classifier

    version = model_version_register(
        model_name="tickets",
        file=onnx_text_classifier(tmp_path / "text.onnx"),
        stage="production",
        metrics={"accuracy": 0.9},
    )
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3)) + 1.2 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    at = timezone.now() - timedelta(minutes=5)
    PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name="tickets",
            version=version.version,
            routed_by="single:champion",
            features={"text": "refund my order"},
            prediction=int(p.argmax()),
            probabilities=p.tolist(),
            confidence=float(p.max()),
            latency_ms=1.0,
            created_at=at,
            actual=int(truth),
            actual_at=at,
        )
        for p, truth in zip(proba, y, strict=True)
    )

    report = _compute(version)

    assert version_class_labels(version) == (0, 1, 2)
    assert report.task == "classification"
    assert report.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )


def test_admin_lists_performance_reports(classifier: ModelVersion) -> None:
    _classifier_rows(classifier, n=150, accuracy=0.6, labelled=150)
    report = _compute(classifier)
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="pw-root-1"))

    listing = admin.get("/admin/monitoring/performancereport/")
    detail = admin.get(f"/admin/monitoring/performancereport/{report.pk}/change/")

    assert listing.status_code == 200
    assert "Degraded" in listing.content.decode()
    assert detail.status_code == 200


def test_panel_explains_a_text_row_per_token(tmp_path: Path) -> None:
    from models_registry.services import model_version_register
    from tests.inference_support import onnx_text_classifier

    version = model_version_register(
        model_name="tickets", file=onnx_text_classifier(tmp_path / "t.onnx"), stage="production"
    )
    row = PredictionLog.objects.create(
        event_id=uuid.uuid4(),
        request_id=uuid.uuid4().hex,
        model_name="tickets",
        version=version.version,
        routed_by="single:champion",
        features={"text": "card was charged twice"},
        prediction=0,
        latency_ms=1.0,
        created_at=timezone.now(),
    )

    body = _explain(_operator(), "tickets", row.pk).json()

    assert {a["feature"] for a in body["attributions"]} == {
        "0:card",
        "1:was",
        "2:charged",
        "3:twice",
    }
    total = sum(a["attribution"] for a in body["attributions"])
    assert total == pytest.approx(body["value"] - body["baseline"], abs=body["tolerance"])
