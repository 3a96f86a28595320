"""monitoring.performance: metrics equal scikit-learn's on fixed data, ECE by hand, the
task read from a signature, and the verdict against holdout metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

from monitoring import performance

RNG = np.random.default_rng(12)
Y = RNG.integers(0, 2, size=400)
P1 = np.clip(0.35 * Y + RNG.uniform(0, 0.65, size=400), 0, 1)
PROBA = np.column_stack([1 - P1, P1])
PRED = PROBA.argmax(axis=1)


def test_binary_metrics_equal_sklearn_on_fixed_data() -> None:
    metrics = performance.classification_metrics(
        Y.tolist(), PRED.tolist(), PROBA.tolist(), classes=[0, 1]
    )

    assert metrics["accuracy"] == pytest.approx(accuracy_score(Y, PRED), abs=1e-12)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(Y, P1), abs=1e-12)


def test_ece_equals_the_calibration_curve_weighted_by_bin_counts() -> None:
    correct = (PRED == Y).astype(float)
    confidence = PROBA.max(axis=1)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    edges = np.linspace(0, 1, 11)
    counts = np.bincount(np.searchsorted(edges[1:-1], confidence, side="right"), minlength=10)
    weights = counts[counts > 0] / len(correct)

    ece = performance.expected_calibration_error(correct, confidence)

    assert ece == pytest.approx(float(np.sum(weights * np.abs(prob_true - prob_pred))), abs=1e-12)


def test_ece_by_hand_on_four_rows() -> None:
    # Bin [0.9, 1.0]: confidences .95 and .95, one right -> |0.5 - 0.95| x 2/4;
    # bin [0.6, 0.7): .65 right -> |1 - .65| x 1/4; bin [0.5, 0.6): .55 wrong -> .55 x 1/4.
    ece = performance.expected_calibration_error(
        np.array([1, 0, 1, 0]), np.array([0.95, 0.95, 0.65, 0.55])
    )
    assert ece == pytest.approx(0.45 * 0.5 + 0.35 * 0.25 + 0.55 * 0.25)


def test_multiclass_roc_auc_is_sklearn_one_vs_rest_macro() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array(["billing", "login", "shipping"])

    metrics = performance.classification_metrics(
        labels[y].tolist(), labels[proba.argmax(axis=1)].tolist(), proba.tolist(),
        classes=labels.tolist(),
    )  # fmt: skip

    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(axis=1)))
    assert metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )


def test_roc_auc_is_none_for_one_class_and_without_probabilities() -> None:
    one_class = performance.classification_metrics(
        [1, 1, 1], [1, 0, 1], [[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]], classes=[0, 1]
    )
    assert one_class["roc_auc"] is None
    assert one_class["accuracy"] == pytest.approx(2 / 3)
    assert one_class["ece"] is not None
    labels_only = performance.classification_metrics([1, 0], [1, 1])
    assert labels_only == {"accuracy": 0.5, "roc_auc": None, "ece": None}


def test_json_labels_compare_as_the_same_class() -> None:
    metrics = performance.classification_metrics(["1", 0, 1.0, True], [1, "0", 1, 1])
    assert metrics["accuracy"] == 1.0


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(200_000, 50_000, size=250)
    p = y + rng.normal(0, 20_000, size=250)

    metrics = performance.regression_metrics(y.tolist(), p.tolist())

    assert metrics["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert metrics["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)))


def test_empty_or_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="as many"):
        performance.classification_metrics([], [])
    with pytest.raises(ValueError, match="as many"):
        performance.regression_metrics([1.0], [1.0, 2.0])


def test_label_delay_quantiles() -> None:
    summary = performance.label_delay_summary([10, 20, 30, 40, -5])
    assert summary["p50"] == 20.0
    assert summary["p95"] == pytest.approx(np.percentile([10, 20, 30, 40, 0], 95))
    assert performance.label_delay_summary([]) == {"p50": None, "p95": None, "mean": None}


@pytest.mark.parametrize(
    ("outputs", "declared", "task"),
    [
        ([{"name": "label", "dtype": "int64"}, {"name": "probabilities", "dtype": "float32"}],
         [], "classification"),
        ([{"name": "label", "dtype": "string"}], [], "classification"),
        ([{"name": "variable", "dtype": "float32"}], [], "regression"),
        ([{"name": "variable", "dtype": "float32"}], [None, "classifier"], "classification"),
        ([{"name": "label", "dtype": "int64"}], ["Regression"], "regression"),
    ],
)  # fmt: skip
def test_task_is_read_from_the_signature_or_declared(
    outputs: list[dict[str, str]], declared: list[str | None], task: str
) -> None:
    assert performance.task_detect(outputs=outputs, declared=declared) == task


def test_accuracy_drop_beyond_the_threshold_is_degraded() -> None:
    holdout = {"accuracy": 0.74, "roc_auc": 0.72, "log_loss": 0.5}

    fine = performance.performance_verdict(
        {"accuracy": 0.70, "roc_auc": 0.71, "ece": 0.1}, holdout,
        max_drop=0.05, max_error_increase=0.2,
    )  # fmt: skip
    dropped = performance.performance_verdict(
        {"accuracy": 0.60, "roc_auc": 0.70, "ece": 0.1}, holdout,
        max_drop=0.05, max_error_increase=0.2,
    )  # fmt: skip

    assert not fine.degraded
    assert [c.metric for c in fine.comparisons] == ["accuracy", "roc_auc"]
    assert dropped.degraded
    assert dropped.degraded_metrics == ["accuracy"]
    assert dropped.comparisons[0].change == pytest.approx(-0.14)


def test_error_increase_is_relative_to_the_holdout_error() -> None:
    holdout = {"mae": 10_000.0, "rmse": 14_000.0, "r2": 0.8}

    verdict = performance.performance_verdict(
        {"mae": 12_500.0, "rmse": 15_000.0}, holdout, max_drop=0.05, max_error_increase=0.2
    )

    assert verdict.degraded_metrics == ["mae"]
    assert verdict.comparisons[0].change == pytest.approx(0.25)


def test_metrics_missing_on_either_side_are_not_judged() -> None:
    verdict = performance.performance_verdict(
        {"accuracy": 0.1, "roc_auc": None}, {"roc_auc": 0.9}, max_drop=0.05, max_error_increase=0.2
    )
    assert verdict.comparisons == []
    assert not verdict.degraded
    with pytest.raises(ValueError, match="negative"):
        performance.performance_verdict({}, {}, max_drop=-1, max_error_increase=0)


def test_numpy_labels_compare_as_python_ones() -> None:
    metrics = performance.classification_metrics(
        np.array([0, 1, 1]).tolist(), list(np.array([0, 1, 0], dtype=np.int64))
    )
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert performance.label_key(np.float32(2.0)) == 2
    assert performance.label_key(np.float64(0.5)) == 0.5


# --- significance: a drop counts when the labels show it beyond chance --------------------

RUNS = 1000
HOLDOUT_ACCURACY = 0.75
MAX_DROP = 0.05


def _alarm_rate(true_accuracy: float, labels: int, *, evidence: bool, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(RUNS):
        correct = rng.random(labels) < true_accuracy
        verdict = performance.performance_verdict(
            {"accuracy": float(correct.mean())},
            {"accuracy": HOLDOUT_ACCURACY},
            max_drop=MAX_DROP,
            max_error_increase=0.2,
            evidence=performance.Evidence(correct=correct) if evidence else None,
            alpha=0.05,
        )
        alarms += verdict.degraded
    return alarms / RUNS


def _binomial_upper(rate: float, runs: int = RUNS) -> float:
    # The rate plus 3 standard errors: what 1,000 seeded runs can show of a true rate.
    return rate + 3 * math.sqrt(rate * (1 - rate) / runs)


def test_a_model_at_its_limit_alarms_at_most_alpha_of_the_time() -> None:
    # Exactly at the limit (holdout - max_drop), 100 labels per check.
    with_test = _alarm_rate(HOLDOUT_ACCURACY - MAX_DROP, 100, evidence=True)
    value_only = _alarm_rate(HOLDOUT_ACCURACY - MAX_DROP, 100, evidence=False)

    assert with_test <= _binomial_upper(0.05)
    assert value_only > 0.4  # the bare threshold: nearly a coin toss


def test_an_unchanged_model_rarely_alarms() -> None:
    assert _alarm_rate(HOLDOUT_ACCURACY, 100, evidence=True) <= _binomial_upper(0.01)
    assert _alarm_rate(HOLDOUT_ACCURACY, 100, evidence=False) > 0.05


def test_a_real_drop_is_found_with_a_few_hundred_labels() -> None:
    # Ten points below the limit: 400 labels find it nearly always.
    assert _alarm_rate(0.60, 400, evidence=True) >= 0.98


def test_error_increase_is_tested_on_the_errors() -> None:
    rng = np.random.default_rng(1)
    actual = rng.normal(size=400)
    # Errors N(0, 2): MAE 1.6 and RMSE 2.0, against limits of 1.2 and 1.5.
    noisy = performance.regression_evidence(actual, actual + rng.normal(0, 2.0, size=400))
    small = performance.regression_evidence(actual[:3], actual[:3] + rng.normal(0, 2.0, size=3))
    holdout = {"mae": 1.0, "rmse": 1.25}

    def judge(evidence: performance.Evidence) -> performance.Verdict:
        errors = evidence.errors
        assert errors is not None
        return performance.performance_verdict(
            {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt((errors**2).mean()))},
            holdout,
            max_drop=0.05,
            max_error_increase=0.2,
            evidence=evidence,
        )

    found = judge(noisy)
    assert found.degraded_metrics == ["mae", "rmse"]
    assert all(c.p_value is not None and c.p_value < 1e-6 for c in found.comparisons)
    # Three rows cannot show it, whatever their mean says.
    assert not judge(small).degraded


def test_binary_roc_auc_drop_is_tested_with_hanley_mcneil() -> None:
    evidence = performance.classification_evidence(
        [0, 1] * 150, [0, 1] * 150, binary_classes=[0, 1]
    )
    assert (evidence.auc_positives, evidence.auc_negatives) == (150, 150)

    clear = performance.performance_verdict(
        {"roc_auc": 0.70}, {"roc_auc": 0.85}, max_drop=0.05, max_error_increase=0.2,
        evidence=evidence,
    )  # fmt: skip
    marginal = performance.performance_verdict(
        {"roc_auc": 0.78}, {"roc_auc": 0.85}, max_drop=0.05, max_error_increase=0.2,
        evidence=evidence,
    )  # fmt: skip

    assert clear.degraded
    assert (clear.comparisons[0].p_value or 1.0) < 0.001
    assert not marginal.degraded  # 0.78 vs a limit of 0.80: within the noise of 300 rows
    assert (marginal.comparisons[0].p_value or 0.0) > 0.05
