"""monitoring.experiments with plain numbers: calibration under continuous monitoring by
simulation, power against a 5-point accuracy difference, intervals, guards, decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from monitoring import experiments as ex

ALPHA = 0.05
RUNS = 1_000
LOOKS = 40  # a look after every batch of 50 labels, 2,000 labels
BATCH = 50
# The false-positive count of RUNS runs at level ALPHA may exceed ALPHA * RUNS by
# chance; more than this upper 99.9 % binomial quantile means the test is miscalibrated.
FP_BOUND = int(stats.binom.ppf(0.999, RUNS, ALPHA))


def _ab_looks(
    rng: np.random.Generator, p_champion: float, p_challenger: float
) -> tuple[np.ndarray, ...]:
    """Cumulative (correct, n) per arm at each look of RUNS A/B experiments (50/50)."""
    to_challenger = rng.binomial(BATCH, 0.5, size=(RUNS, LOOKS))
    to_champion = BATCH - to_challenger
    return (
        np.cumsum(rng.binomial(to_champion, p_champion), axis=1),
        np.cumsum(to_champion, axis=1),
        np.cumsum(rng.binomial(to_challenger, p_challenger), axis=1),
        np.cumsum(to_challenger, axis=1),
    )


def _paired_looks(
    rng: np.random.Generator, p_champion: float, p_challenger: float, disagree: float
) -> tuple[np.ndarray, ...]:
    """Cumulative (champion only right, challenger only right, pairs) per look, shadow mode."""
    discordant = abs(p_challenger - p_champion) + disagree
    c = (discordant + p_challenger - p_champion) / 2
    b = discordant - c
    draws = rng.multinomial(BATCH, [b, c, 1 - b - c], size=(RUNS, LOOKS))
    pairs = np.broadcast_to(np.arange(1, LOOKS + 1) * BATCH, (RUNS, LOOKS))
    return np.cumsum(draws[..., 0], axis=1), np.cumsum(draws[..., 1], axis=1), pairs


@pytest.mark.parametrize("accuracy", [0.5, 0.8, 0.95])
def test_accuracy_test_false_positive_rate_stays_at_alpha_when_looked_at_every_batch(
    accuracy: float,
) -> None:
    rng = np.random.default_rng(1_000 + int(accuracy * 100))
    looks = _ab_looks(rng, accuracy, accuracy)

    rejected = ex.accuracy_rejections(*looks, alpha=ALPHA, min_samples=100).any(axis=1)

    assert rejected.sum() <= FP_BOUND, f"false-positive rate {rejected.mean():.3f}"


def test_a_naive_z_test_at_every_look_does_exceed_the_bound() -> None:
    # The same simulation catches the mistake the sequential test exists to avoid.
    rng = np.random.default_rng(7)
    sa, na, sb, nb = _ab_looks(rng, 0.8, 0.8)
    pa, pb = sa / na, sb / nb
    pooled = (sa + sb) / (na + nb)
    z = (pb - pa) / np.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))

    rejected = (np.abs(z) > stats.norm.ppf(1 - ALPHA / 2)).any(axis=1)

    assert rejected.sum() > FP_BOUND


def test_accuracy_test_power_against_a_five_point_difference() -> None:
    rng = np.random.default_rng(11)
    looks = _ab_looks(rng, 0.80, 0.85)

    power = ex.accuracy_rejections(*looks, alpha=ALPHA, min_samples=100).any(axis=1).mean()

    print(f"A/B mSPRT power, 80% vs 85%, 2,000 labels, 40 looks: {power:.3f}")
    assert power >= 0.5


@pytest.mark.parametrize("disagree", [0.05, 0.2])
def test_paired_test_false_positive_rate_stays_at_alpha(disagree: float) -> None:
    rng = np.random.default_rng(int(disagree * 1000))
    b, c, pairs = _paired_looks(rng, 0.8, 0.8, disagree)

    rejected = ex.mcnemar_rejections(b, c, pairs, alpha=ALPHA, min_samples=100).any(axis=1)

    assert rejected.sum() <= FP_BOUND, f"false-positive rate {rejected.mean():.3f}"


def test_paired_test_power_against_a_five_point_difference() -> None:
    rng = np.random.default_rng(13)
    b, c, pairs = _paired_looks(rng, 0.80, 0.85, disagree=0.15)

    power = ex.mcnemar_rejections(b, c, pairs, alpha=ALPHA, min_samples=100).any(axis=1).mean()

    print(f"shadow sequential McNemar power, 80% vs 85%, 20% disagreement: {power:.3f}")
    assert power >= 0.9


def test_accuracy_verdict_agrees_with_the_vectorised_rejections() -> None:
    rng = np.random.default_rng(5)
    sa, na, sb, nb = (x[:50, -1] for x in _ab_looks(rng, 0.75, 0.85))
    vectorised = ex.accuracy_rejections(sa, na, sb, nb, min_samples=100)

    for i in range(50):
        result = ex.accuracy_sequential_test(
            champion_correct=int(sa[i]),
            champion_n=int(na[i]),
            challenger_correct=int(sb[i]),
            challenger_n=int(nb[i]),
            min_samples=100,
        )
        assert (result.verdict is not ex.Verdict.INCONCLUSIVE) == bool(vectorised[i])


def test_better_challenger_gets_better_verdict_with_effect_and_interval() -> None:
    result = ex.accuracy_sequential_test(
        champion_correct=1600, champion_n=2000, challenger_correct=1800, challenger_n=2000
    )

    assert result.verdict is ex.Verdict.BETTER
    assert result.effect == pytest.approx(0.1)
    assert 0 < result.interval.low < 0.1 < result.interval.high
    assert result.p_value <= ALPHA
    assert result.as_dict()["interval"] == [result.interval.low, result.interval.high]


def test_worse_challenger_gets_worse_verdict() -> None:
    result = ex.accuracy_sequential_test(
        champion_correct=1800, champion_n=2000, challenger_correct=1500, challenger_n=2000
    )

    assert result.verdict is ex.Verdict.WORSE
    assert result.interval.high < 0


def test_no_verdict_before_minimum_samples_however_large_the_difference() -> None:
    result = ex.accuracy_sequential_test(
        champion_correct=0, champion_n=150, challenger_correct=150, challenger_n=150
    )

    assert result.verdict is ex.Verdict.INSUFFICIENT_DATA
    assert result.p_value == 1.0


def test_p_value_is_the_running_minimum_so_a_rejection_stands() -> None:
    result = ex.accuracy_sequential_test(
        champion_correct=800,
        champion_n=1000,
        challenger_correct=805,
        challenger_n=1000,
        previous_p_value=0.01,
    )

    assert result.p_value == 0.01
    assert result.verdict is ex.Verdict.BETTER


def test_accuracy_interval_covers_the_true_difference_at_every_look() -> None:
    rng = np.random.default_rng(17)
    sa, na, sb, nb = _ab_looks(rng, 0.8, 0.85)
    misses = 0
    for run in range(200):
        for look in range(4, LOOKS, 5):
            result = ex.accuracy_sequential_test(
                champion_correct=int(sa[run, look]),
                champion_n=int(na[run, look]),
                challenger_correct=int(sb[run, look]),
                challenger_n=int(nb[run, look]),
                min_samples=100,
            )
            if not result.interval.low <= 0.05 <= result.interval.high:
                misses += 1
                break

    assert misses <= int(stats.binom.ppf(0.999, 200, ALPHA))


def test_mcnemar_effect_and_interval_on_disagreements() -> None:
    result = ex.mcnemar_sequential_test(champion_only=40, challenger_only=120, paired_n=1000)

    assert result.verdict is ex.Verdict.BETTER
    assert result.effect == pytest.approx(0.08)
    assert result.interval.low < 0.08 < result.interval.high
    assert result.interval.low > 0
    assert result.samples == {"paired": 1000, "champion_only": 40, "challenger_only": 120}


def test_mcnemar_without_disagreements_is_inconclusive() -> None:
    result = ex.mcnemar_sequential_test(champion_only=0, challenger_only=0, paired_n=500)

    assert result.verdict is ex.Verdict.INCONCLUSIVE
    assert result.effect == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"champion_correct": 5, "champion_n": 3, "challenger_correct": 1, "challenger_n": 3},
        {"champion_correct": -1, "champion_n": 3, "challenger_correct": 1, "challenger_n": 3},
    ],
)
def test_impossible_counts_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="invalid counts"):
        ex.accuracy_sequential_test(**kwargs)


def test_mcnemar_refuses_more_disagreements_than_pairs() -> None:
    with pytest.raises(ValueError, match="invalid counts"):
        ex.mcnemar_sequential_test(champion_only=5, challenger_only=6, paired_n=10)


def test_error_rate_guard_breaks_on_an_erroring_challenger_and_holds_on_a_healthy_one() -> None:
    broken = ex.error_rate_guard(
        champion_errors=1, champion_n=500, challenger_errors=60, challenger_n=200
    )
    held = ex.error_rate_guard(
        champion_errors=1, champion_n=500, challenger_errors=2, challenger_n=200
    )

    assert broken.state is ex.GuardState.BROKEN
    assert broken.effect == pytest.approx(60 / 200 - 1 / 500)
    assert broken.interval is not None
    assert broken.interval.low > 0.02
    assert "error rate" in broken.reason
    assert held.state is ex.GuardState.HELD


def test_error_rate_guard_waits_for_minimum_attempts() -> None:
    result = ex.error_rate_guard(
        champion_errors=0, champion_n=10, challenger_errors=10, challenger_n=10
    )

    assert result.state is ex.GuardState.INSUFFICIENT_DATA


def test_latency_guard_ceiling_and_ratio() -> None:
    rng = np.random.default_rng(3)
    champion = rng.gamma(2.0, 1.0, size=1000)
    slow = champion * 4
    same = rng.gamma(2.0, 1.0, size=1000)

    by_ratio = ex.latency_guard(champion_ms=champion, challenger_ms=slow, max_ratio=1.5)
    by_ceiling = ex.latency_guard(
        champion_ms=champion, challenger_ms=same, ceiling_ms=2.0, max_ratio=None
    )
    held = ex.latency_guard(champion_ms=champion, challenger_ms=same, max_ratio=1.5)

    assert by_ratio.state is ex.GuardState.BROKEN
    assert by_ratio.effect == pytest.approx(4.0, rel=0.01)
    assert by_ceiling.state is ex.GuardState.BROKEN
    assert "ceiling" in by_ceiling.reason
    assert held.state is ex.GuardState.HELD


def test_quantile_interval_brackets_the_sample_quantile() -> None:
    values = np.arange(1, 1001, dtype=float)

    point, interval = ex.quantile_interval(values, 0.99)

    assert interval.low <= point <= interval.high
    assert interval.low >= 980
    assert interval.high <= 1000


def test_prediction_shift_guard_breaks_on_a_collapsed_challenger() -> None:
    champion = {"0": 600, "1": 400}

    collapsed = ex.prediction_shift_guard(
        champion_classes=champion, challenger_classes={"0": 495, "1": 5}
    )
    unsure = ex.prediction_shift_guard(
        champion_classes=champion,
        challenger_classes={"0": 300, "1": 200},
        champion_confidence=[0.9] * 100,
        challenger_confidence=[0.55] * 100,
    )
    different = ex.prediction_shift_guard(
        champion_classes=champion, challenger_classes={"0": 150, "1": 350}
    )
    both_one_class = ex.prediction_shift_guard(
        champion_classes={"0": 990, "1": 10}, challenger_classes={"0": 500}
    )

    assert collapsed.state is ex.GuardState.BROKEN
    assert collapsed.effect == pytest.approx(0.39)
    assert "99%" in collapsed.reason
    assert unsure.state is ex.GuardState.BROKEN
    assert different.state is ex.GuardState.HELD  # disagreeing is the test's business
    assert different.effect == pytest.approx(0.3)
    assert both_one_class.state is ex.GuardState.HELD


def _guard(state: ex.GuardState) -> ex.GuardResult:
    return ex.GuardResult("error_rate", state, 0.1, None, 0.02, "too many errors", {})


def _primary(verdict: ex.Verdict, effect: float = 0.05) -> ex.TestResult:
    return ex.TestResult(
        "msprt_accuracy", verdict, effect, ex.Interval(-0.1, 0.1), 0.01, {}, ALPHA, 200
    )


def test_decide_rolls_back_on_a_broken_guard_even_when_the_test_says_better() -> None:
    decision = ex.experiment_decide(
        phase="ab", primary=_primary(ex.Verdict.BETTER), guards=[_guard(ex.GuardState.BROKEN)]
    )

    assert decision.action is ex.Action.ROLLBACK
    assert "too many errors" in decision.reason


def test_decide_rolls_back_a_worse_challenger_and_promotes_a_better_one() -> None:
    held = [_guard(ex.GuardState.HELD)]

    worse = ex.experiment_decide(phase="ab", primary=_primary(ex.Verdict.WORSE, -0.05), guards=held)
    better = ex.experiment_decide(phase="ab", primary=_primary(ex.Verdict.BETTER), guards=held)
    manual = ex.experiment_decide(
        phase="ab", primary=_primary(ex.Verdict.BETTER), guards=held, auto_promote=False
    )
    undecided = ex.experiment_decide(
        phase="ab", primary=_primary(ex.Verdict.INCONCLUSIVE), guards=held
    )

    assert worse.action is ex.Action.ROLLBACK
    assert better.action is ex.Action.PROMOTE
    assert manual.action is ex.Action.CONTINUE
    assert undecided.action is ex.Action.CONTINUE


def test_shadow_found_better_moves_on_to_the_canary_plan() -> None:
    decision = ex.experiment_decide(
        phase="shadow",
        primary=_primary(ex.Verdict.BETTER),
        guards=[_guard(ex.GuardState.HELD)],
        canary_plan=[5.0, 50.0, 100.0],
    )

    assert decision.action is ex.Action.ADVANCE
    assert decision.next_percent == 5.0


def test_canary_advances_only_after_interval_and_samples_and_promotes_at_last_step() -> None:
    plan = [5.0, 25.0, 50.0, 100.0]
    held = [_guard(ex.GuardState.HELD)]
    common = {
        "phase": "canary",
        "guards": held,
        "canary_plan": plan,
        "step_interval_s": 60,
        "step_min_samples": 100,
    }
    better = _primary(ex.Verdict.BETTER)

    early = ex.experiment_decide(
        primary=better, canary_step=0, step_elapsed_s=30, step_samples=500, **common
    )
    few = ex.experiment_decide(
        primary=better, canary_step=0, step_elapsed_s=90, step_samples=50, **common
    )
    advance = ex.experiment_decide(
        primary=_primary(ex.Verdict.INCONCLUSIVE),
        canary_step=1,
        step_elapsed_s=90,
        step_samples=150,
        **common,
    )
    last_early = ex.experiment_decide(
        primary=better, canary_step=3, step_elapsed_s=10, step_samples=150, **common
    )
    last = ex.experiment_decide(
        primary=better, canary_step=3, step_elapsed_s=90, step_samples=150, **common
    )
    carried = ex.experiment_decide(
        primary=_primary(ex.Verdict.INCONCLUSIVE),
        better_before=True,
        canary_step=3,
        step_elapsed_s=90,
        step_samples=150,
        **common,
    )

    assert early.action is ex.Action.CONTINUE
    assert few.action is ex.Action.CONTINUE
    assert advance.action is ex.Action.ADVANCE
    assert advance.next_percent == 50.0
    assert last_early.action is ex.Action.CONTINUE
    assert last.action is ex.Action.PROMOTE
    assert carried.action is ex.Action.PROMOTE


def test_guards_only_experiment_promotes_after_the_interval_with_guards_held() -> None:
    held = [_guard(ex.GuardState.HELD)]

    waiting = ex.experiment_decide(
        phase="ab",
        primary=None,
        guards=held,
        step_interval_s=60,
        step_elapsed_s=10,
        step_samples=500,
        step_min_samples=100,
    )
    done = ex.experiment_decide(
        phase="ab",
        primary=None,
        guards=held,
        step_interval_s=60,
        step_elapsed_s=61,
        step_samples=500,
        step_min_samples=100,
    )

    assert waiting.action is ex.Action.CONTINUE
    assert done.action is ex.Action.PROMOTE


@pytest.mark.parametrize("plan", [[], [5, 5], [0, 50], [50, 120], [50, 25]])
def test_bad_canary_plans_are_refused(plan: list[float]) -> None:
    with pytest.raises(ValueError, match="canary"):
        ex.canary_plan_validate(plan)


def test_alpha_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ex.accuracy_rejections([1], [1], [1], [1], alpha=1.5)


def test_log_lr_is_zero_evidence_at_no_difference_with_vanishing_prior() -> None:
    value = float(ex.accuracy_log_lr(500, 1000, 500, 1000, tau=1e-9))

    assert math.isclose(value, 0.0, abs_tol=1e-6)
