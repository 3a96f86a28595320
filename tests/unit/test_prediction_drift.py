"""Prediction drift and text drift in monitoring.drift, with plain numbers: caught on a
shifted output (or text) distribution, false alarms within alpha's binomial bounds
over seeded runs of an unshifted one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitoring import drift

CLASSES = ["billing", "technical", "account"]
SHARES = [0.5, 0.3, 0.2]
TRIALS = 300


def _bounds(trials: int, alpha: float) -> tuple[float, float]:
    # A 99.9% two-sided interval of the alarm count when the true rate is alpha.
    return stats.binom.ppf(0.0005, trials, alpha), stats.binom.isf(0.0005, trials, alpha)


def _classifier_outputs(
    rng: np.random.Generator, n: int, shares: list[float], confidence_a: float = 5.0
) -> tuple[list[str], list[float]]:
    labels = rng.choice(CLASSES, size=n, p=shares).tolist()
    confidence = (1 / 3 + (2 / 3) * rng.beta(confidence_a, 2.0, size=n)).tolist()
    return labels, confidence


def _classifier_drift(
    seed: int, *, shares: list[float], confidence_a: float = 5.0
) -> drift.DatasetDrift:
    rng = np.random.default_rng(seed)
    ref_labels, ref_conf = _classifier_outputs(rng, 2000, SHARES)
    cur_labels, cur_conf = _classifier_outputs(rng, 400, shares, confidence_a)
    return drift.prediction_drift(
        reference_predictions=ref_labels,
        current_predictions=cur_labels,
        categorical=True,
        reference_confidence=ref_conf,
        current_confidence=cur_conf,
        alpha=0.05,
        correction="bh",
    )


def _regressor_drift(seed: int, *, shift: float) -> drift.DatasetDrift:
    rng = np.random.default_rng(seed)
    reference = rng.lognormal(np.log(300), 0.4, size=2000)
    current = rng.lognormal(np.log(300), 0.4, size=400) + shift * reference.std()
    return drift.prediction_drift(
        reference_predictions=reference.tolist(),
        current_predictions=current.tolist(),
        categorical=False,
        alpha=0.05,
        correction="bh",
    )


def test_unshifted_class_shares_and_confidence_alarm_at_alpha() -> None:
    low, high = _bounds(TRIALS, 0.05)

    alarms = sum(_classifier_drift(seed, shares=SHARES).drift for seed in range(TRIALS))

    assert low <= alarms <= high


def test_unshifted_predicted_values_alarm_at_alpha() -> None:
    low, high = _bounds(TRIALS, 0.05)

    alarms = sum(_regressor_drift(seed, shift=0.0).drift for seed in range(TRIALS))

    assert low <= alarms <= high


def test_shifted_class_shares_are_caught_by_chi_squared() -> None:
    result = _classifier_drift(7, shares=[0.3, 0.3, 0.4])

    assert result.drift
    by_name = {f.name: f for f in result.features}
    assert by_name["prediction"].test == "chi2"
    assert by_name["prediction"].drift
    assert not by_name["confidence"].drift


def test_lower_confidence_alone_is_caught_by_ks() -> None:
    result = _classifier_drift(7, shares=SHARES, confidence_a=2.0)

    by_name = {f.name: f for f in result.features}
    assert by_name["confidence"].test == "ks"
    assert by_name["confidence"].drift
    assert not by_name["prediction"].drift


def test_shifted_predicted_values_are_caught_by_ks() -> None:
    result = _regressor_drift(7, shift=0.3)

    (prediction,) = result.features
    assert (prediction.name, prediction.test, prediction.drift) == ("prediction", "ks", True)
    assert prediction.wasserstein is not None


def test_labels_are_classes_whatever_their_json_type() -> None:
    result = drift.prediction_drift(
        reference_predictions=[0, 1] * 200,
        current_predictions=["0", "1"] * 100,
        categorical=True,
    )
    assert result.features[0].p_value == pytest.approx(1.0)


def test_too_few_current_outputs_are_skipped_not_tested() -> None:
    result = drift.prediction_drift(
        reference_predictions=[1.0, 2.0, 3.0],
        current_predictions=[1.0],
        categorical=False,
        min_rows=10,
    )
    assert result.features[0].test == "skipped"
    assert not result.drift


@pytest.mark.parametrize(
    ("values", "has_probabilities", "expected"),
    [
        ([0.2, 1.5, 3.7], False, False),
        ([1, 0, 1, 1], False, True),
        (list(range(50)), False, False),
        (["a", "b"], False, True),
        ([0.2, 1.5], True, True),
    ],
)
def test_outputs_are_classes_or_values(
    values: list[object], has_probabilities: bool, expected: bool
) -> None:
    assert drift.predictions_categorical(values, has_probabilities=has_probabilities) is expected


# --- text ------------------------------------------------------------------------------

VOCABULARY = [f"w{i}" for i in range(3000)]
# Zipf-like word frequencies: many rare words, so a window always holds some words the
# reference never used, which is why the reference sample is judged against half of it.
WEIGHTS = 1.0 / np.arange(1, len(VOCABULARY) + 1)
WEIGHTS /= WEIGHTS.sum()


def _texts(rng: np.random.Generator, n: int, *, new_words: float = 0.0) -> list[str]:
    lengths = rng.integers(3, 12, size=n)
    words = np.asarray(VOCABULARY, dtype=object)[
        rng.choice(len(VOCABULARY), size=int(lengths.sum()), p=WEIGHTS)
    ]
    fresh = rng.uniform(size=words.size) < new_words
    words[fresh] = [f"new{k}" for k in rng.integers(10_000, size=int(fresh.sum()))]
    ends = np.cumsum(lengths)
    return [" ".join(words[end - size : end]) for end, size in zip(ends, lengths, strict=True)]


def _text_drift(seed: int, *, new_words: float = 0.0) -> drift.DatasetDrift:
    rng = np.random.default_rng(seed)
    reference, current = _texts(rng, 1200), _texts(rng, 300, new_words=new_words)
    ref, cur = drift.text_profiles(reference, current)
    return drift.dataset_drift(
        ref, cur, feature_names=drift.text_profile_names("text"), categorical=(), correction="bh"
    )


def test_text_profiles_count_characters_words_and_unknown_words() -> None:
    ref, cur = drift.text_profiles(["a b", "a c", "b b", "zz"], ["a b new", None, ""])

    # Vocabulary: words of the even positions ("a b", "b b"); sample: the odd ones.
    assert ref.tolist() == [[3.0, 2.0, 0.5], [2.0, 1.0, 1.0]]
    assert cur[0].tolist() == [7.0, 3.0, pytest.approx(1 / 3)]
    assert np.isnan(cur[1]).all()
    assert cur[2].tolist() == [0.0, 0.0, 0.0]


def test_unshifted_texts_alarm_no_more_often_than_alpha() -> None:
    # Lengths and word counts are integers with many ties, where KS is conservative (about
    # 1-2 % per feature here): the bound that matters for false alarms is the upper one.
    trials = 200
    _, high = _bounds(trials, 0.05)

    alarms = sum(_text_drift(seed).drift for seed in range(trials))

    assert alarms <= high


def test_judging_the_reference_by_its_own_words_would_alarm_on_every_window() -> None:
    # Why text_profiles splits the reference: its own words are all known to it.
    rng = np.random.default_rng(11)
    reference, current = _texts(rng, 1200), _texts(rng, 300)
    ref, cur = drift.text_profiles(reference, current)
    known = {w for t in reference for w in t.split()}
    naive = np.array([0.0 for _ in reference])
    unknown = np.array([np.mean([w not in known for w in t.split()]) for t in current])

    assert stats.ks_2samp(naive, unknown).pvalue < 1e-6
    fair = drift.dataset_drift(
        ref, cur, feature_names=drift.text_profile_names("text"), categorical=()
    )
    assert not fair.drift


def test_texts_with_words_the_reference_never_used_are_caught() -> None:
    result = _text_drift(7, new_words=0.15)

    assert "text.unknown_word_share" in result.drifted_features
    assert "text.length" not in result.drifted_features or result.drift


def test_families_combined_correct_across_all_tests() -> None:
    rng = np.random.default_rng(3)
    first = drift.dataset_drift(
        rng.normal(size=(500, 2)),
        rng.normal(size=(300, 2)),
        feature_names=["a", "b"],
        correction="none",
        categorical=(),
    )
    second = drift.dataset_drift(
        rng.normal(size=(200, 1)),
        rng.normal(size=(300, 1)) + 1.0,
        feature_names=["c"],
        correction="none",
        categorical=(),
    )

    combined = drift.families_combined([first, second], alpha=0.05, correction="bonferroni")

    p = [f.p_value for f in combined.features]
    assert [f.p_adjusted for f in combined.features] == [min(1.0, v * 3) for v in p]
    assert combined.drifted_features == ["c"]
