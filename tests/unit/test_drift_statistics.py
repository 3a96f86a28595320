"""monitoring.drift with plain numbers: scipy equality, error rates, power, corrections."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitoring import drift

FEATURES = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "shift"),
    [(300, 200, 0.1), (50, 50, 0.5), (12_000, 20_000, 0.02), (15_000, 15_000, 0.0)],
)
def test_ks_equals_scipy_ks_2samp_exactly(n_ref: int, n_cur: int, shift: float) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    ref = rng.normal(size=(n_ref, 4))
    cur = rng.normal(loc=shift, size=(n_cur, 4))
    # Ties, as integer-valued features have them.
    ref[:, 3] = np.round(ref[:, 3] * 2)
    cur[:, 3] = np.round(cur[:, 3] * 2)

    d, p, w = drift.ks_two_sample(ref, cur)

    for j in range(4):
        expected = stats.ks_2samp(ref[:, j], cur[:, j])
        assert d[j] == expected.statistic
        assert p[j] == expected.pvalue
        assert w[j] == pytest.approx(stats.wasserstein_distance(ref[:, j], cur[:, j]), rel=1e-12)


def test_dataset_drift_reports_the_scipy_numbers_per_feature() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(11_000, 3))
    cur = rng.normal(size=(10_500, 3))

    result = drift.dataset_drift(ref, cur, feature_names=["a", "b", "c"], correction="none")

    for j, feature in enumerate(result.features):
        expected = stats.ks_2samp(ref[:, j], cur[:, j])
        assert feature.test == "ks"
        assert feature.statistic == expected.statistic
        assert feature.p_value == expected.pvalue
        assert feature.p_adjusted == expected.pvalue


def _false_alarms(trials: int, correction: drift.Correction, n_features: int) -> int:
    alarms = 0
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        ref = rng.normal(size=(1000, n_features))
        cur = rng.normal(size=(500, n_features))
        result = drift.dataset_drift(
            ref,
            cur,
            feature_names=FEATURES[:n_features],
            alpha=0.05,
            correction=correction,
            categorical=(),
        )
        alarms += result.drift
    return alarms


def _binomial_bounds(trials: int, alpha: float) -> tuple[float, float]:
    # A 99.9% two-sided interval of the alarm count when the true rate is alpha.
    return stats.binom.ppf(0.0005, trials, alpha), stats.binom.isf(0.0005, trials, alpha)


@pytest.mark.parametrize(("correction", "n_features"), [("none", 1), ("bonferroni", 5), ("bh", 5)])
def test_false_alarm_rate_without_shift_is_within_alphas_binomial_bounds(
    correction: drift.Correction, n_features: int
) -> None:
    low, high = _binomial_bounds(500, 0.05)

    alarms = _false_alarms(500, correction, n_features)

    assert low <= alarms <= high


def test_uncorrected_tests_over_many_features_alarm_far_more_often() -> None:
    # Why the correction exists: five uncorrected tests alarm ~23% of the time.
    _, high = _binomial_bounds(200, 0.05)

    assert _false_alarms(200, "none", 5) > high


def test_a_mean_shift_of_a_fifth_of_a_standard_deviation_on_one_feature_is_caught() -> None:
    rng = np.random.default_rng(42)
    ref = rng.normal(size=(5000, 5))
    cur = rng.normal(size=(5000, 5))
    cur[:, 2] += 0.2

    result = drift.dataset_drift(ref, cur, feature_names=FEATURES, correction="bonferroni")

    assert result.drift
    assert "c" in result.drifted_features
    p_adjusted = {f.name: f.p_adjusted for f in result.features}
    assert min(p_adjusted, key=lambda name: p_adjusted[name] or 1.0) == "c"
    shifted = result.features[2]
    assert shifted.psi is not None
    assert shifted.psi > 0.01
    assert shifted.wasserstein == pytest.approx(0.2, abs=0.05)


def test_bonferroni_on_hand_checked_numbers() -> None:
    adjusted = drift.p_adjust([0.01, 0.04, 0.03, 0.005], "bonferroni")

    np.testing.assert_allclose(adjusted, [0.04, 0.16, 0.12, 0.02])
    np.testing.assert_allclose(drift.p_adjust([0.3, 0.6], "bonferroni"), [0.6, 1.0])


def test_benjamini_hochberg_on_hand_checked_numbers() -> None:
    # Ranked: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04.
    np.testing.assert_allclose(
        drift.p_adjust([0.01, 0.04, 0.03, 0.005], "bh"), [0.02, 0.04, 0.04, 0.02]
    )
    # The step-up keeps adjusted values monotone: 0.02*3/1=0.06 falls to 0.03*3/2=0.045.
    np.testing.assert_allclose(drift.p_adjust([0.02, 0.5, 0.03], "bh"), [0.045, 0.5, 0.045])


def test_no_correction_and_bad_input() -> None:
    np.testing.assert_allclose(drift.p_adjust([0.2, 0.01], "none"), [0.2, 0.01])
    assert drift.p_adjust([], "bh").size == 0
    with pytest.raises(ValueError, match="lie in"):
        drift.p_adjust([1.2], "bh")
    with pytest.raises(ValueError, match="unknown correction"):
        drift.p_adjust([0.1], "holm")  # type: ignore[arg-type]


def test_verdict_uses_the_corrected_p_value() -> None:
    # A mild shift whose raw p-value is below alpha but not after Bonferroni over 5 features.
    rng = np.random.default_rng(11)
    ref = rng.normal(size=(2000, 5))
    cur = rng.normal(size=(2000, 5))
    for shift in np.linspace(0.0, 0.2, 41):
        shifted = cur.copy()
        shifted[:, 0] += shift
        raw = drift.dataset_drift(ref, shifted, feature_names=FEATURES, correction="none")
        p = raw.features[0].p_value
        assert p is not None
        if 0.01 < p < 0.05 and all((f.p_value or 1) > 0.05 for f in raw.features[1:]):
            corrected = drift.dataset_drift(
                ref, shifted, feature_names=FEATURES, correction="bonferroni"
            )
            assert raw.drift
            assert not corrected.drift
            assert corrected.features[0].p_adjusted == pytest.approx(min(p * 5, 1.0))
            return
    pytest.fail("no shift gave a raw p-value between 0.01 and 0.05")


def test_psi_on_hand_checked_numbers() -> None:
    ref = np.arange(1000, dtype=float)
    # Every current value falls in the first of ten reference deciles.
    cur = np.arange(100, dtype=float)

    psi = drift.psi_numeric(ref, cur, bins=10, eps=1e-4)

    expected = 0.9 * math.log(10) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi[0] == pytest.approx(expected)
    assert drift.psi_numeric(ref, ref)[0] == pytest.approx(0.0)


def test_categorical_features_get_chi_squared_on_their_counts() -> None:
    rng = np.random.default_rng(5)
    ref = np.column_stack([rng.integers(0, 4, 3000), rng.normal(size=3000)])
    cur = np.column_stack([rng.choice(4, 1000, p=[0.4, 0.3, 0.2, 0.1]), rng.normal(size=1000)])

    result = drift.dataset_drift(ref, cur, feature_names=["tier", "x"], correction="none")

    tier = result.features[0]
    assert tier.test == "chi2"
    table = np.array([np.bincount(ref[:, 0].astype(int)), np.bincount(cur[:, 0].astype(int))])
    expected = stats.chi2_contingency(table)
    assert tier.statistic == pytest.approx(expected.statistic)
    assert tier.p_value == pytest.approx(expected.pvalue)
    assert tier.drift
    assert result.features[1].test == "ks"
    assert drift.categorical_columns(ref) == [0]


def test_chi_squared_binned_numeric_column_detects_a_scale_change() -> None:
    rng = np.random.default_rng(9)
    statistic, p = drift.chi_squared_binned(rng.normal(size=4000), rng.normal(scale=1.3, size=4000))

    assert statistic > 0
    assert p < 1e-6


def test_missing_values_are_dropped_per_feature_and_empty_features_are_skipped() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(800, 3))
    cur = rng.normal(size=(400, 3))
    cur[:100, 1] = np.nan
    cur[:, 2] = np.nan

    result = drift.dataset_drift(ref, cur, feature_names=["a", "b", "c"], correction="bonferroni")

    a, b, c = result.features
    assert b.current_rows == 300
    assert b.p_value == stats.ks_2samp(ref[:, 1], cur[100:, 1]).pvalue
    assert c.test == "skipped"
    assert c.p_value is None
    assert not c.drift
    # Two features were tested, so Bonferroni multiplies by two, not three.
    assert a.p_adjusted == pytest.approx(min(1.0, 2 * (a.p_value or 0)))


def test_dataset_drift_rejects_mismatched_shapes_and_bad_alpha() -> None:
    ref = np.zeros((10, 2))
    with pytest.raises(ValueError, match="columns"):
        drift.dataset_drift(ref, np.zeros((10, 3)), feature_names=["a", "b"])
    with pytest.raises(ValueError, match="alpha"):
        drift.dataset_drift(ref, ref, feature_names=["a", "b"], alpha=1.5)


def test_duplicate_rows_counts_repeats_and_names_who_sent_most() -> None:
    rows = np.array([[1.0, 2.0]] * 8 + [[3.0, np.nan], [3.0, np.nan], [5.0, 6.0]])
    sources = [7] * 8 + [9, 9, 7]

    found = drift.duplicate_rows(rows, sources)

    # 11 rows, 3 distinct: 8 of them repeat an earlier row (7 from key 7, 1 from key 9).
    assert (found.rows, found.share) == (11, 8 / 11)
    assert (found.source, found.source_share) == (7, 7 / 8)


def test_duplicate_rows_of_distinct_rows_or_none() -> None:
    rng = np.random.default_rng(5)

    assert drift.duplicate_rows(rng.normal(size=(500, 4))).share == 0.0
    assert drift.duplicate_rows(np.empty((0, 3))).share == 0.0
    assert drift.duplicate_rows(np.ones((4, 2)), None).source is None
