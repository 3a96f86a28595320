"""Champion vs challenger statistics that stay valid when looked at every minute (no Django).

Why a mixture SPRT and not group-sequential alpha spending: an experiment here is
evaluated by a beat task every 30 s and on demand from the page, the REST API and the
command, with traffic (and so the number of labels per look) nobody plans. Alpha
spending (Pocock, O'Brien-Fleming, Lan-DeMets) needs the information fraction of each
look, i.e. a maximum sample size fixed in advance, and it is only valid for the looks
it budgeted. A mixture sequential probability ratio test (mSPRT, Robbins 1970; the
"always-valid p-values" of Johari, Pekelis & Walsh 2017, as Optimizely's Stats Engine
uses) is a nonnegative martingale under the null hypothesis, so by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``: any number of looks, at any times, with no
horizon, and stopping whenever the test says so keeps the false-positive rate at or
below ``alpha``. The price is some power against a fixed-horizon test at the same n.

Tests:

* ``accuracy_sequential_test``: independent arms (A/B and canary). The difference in
  accuracy ``theta = p_challenger - p_champion`` is estimated with its plug-in variance;
  the mixture over ``theta ~ N(0, tau^2)`` of the normal likelihood ratio has a closed
  form (Johari et al., eq. 11). Its always-valid confidence interval is the set of
  ``theta0`` the same test would not reject.
* ``mcnemar_sequential_test``: shadow mode, where both models score the same rows.
  Only discordant pairs carry information (McNemar). Given a discordant pair, "the
  challenger was the right one" is Bernoulli(q) with ``q = 1/2`` under equal accuracy;
  the mixture over ``q ~ Beta(a, a)`` of the binomial likelihood ratio is an exact
  martingale (no normal approximation), a sequential McNemar test.
* ``error_rate_guard``, ``latency_guard``, ``prediction_shift_guard``: the guards that
  roll a challenger back. The error-rate guard uses the same always-valid interval
  (one-sided, against a margin), so watching it often does not trip it by chance.

Every result carries its effect size (challenger minus champion) and a confidence
interval; nothing is concluded before ``min_samples`` per arm (the plug-in variance of
a handful of labels is noise, and a guard should not fire on three requests).

The vectorised ``*_log_lr`` functions take arrays of counts, so a simulation of a
thousand experiments with forty looks each is a few array operations (see the tests).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

FloatArray = NDArray[np.float64]

DEFAULT_ALPHA = 0.05
# Prior scale of the accuracy difference: effects of a few points are the ones that
# matter for a retrained model, and the mSPRT has most power near tau.
DEFAULT_TAU = 0.05
# Beta(a, a) prior on the share of discordant pairs the challenger wins: a = 12 puts
# its standard deviation near 0.1, i.e. 60/40 splits of the disagreements.
DEFAULT_MCNEMAR_PRIOR = 12.0
DEFAULT_MIN_SAMPLES = 200


class Verdict(StrEnum):
    INSUFFICIENT_DATA = "insufficient_data"  # fewer than min_samples: no look counted
    INCONCLUSIVE = "inconclusive"  # looked, nothing rejected yet
    BETTER = "better"  # challenger better, at level alpha
    WORSE = "worse"  # challenger worse, at level alpha


class GuardState(StrEnum):
    INSUFFICIENT_DATA = "insufficient_data"
    HELD = "held"
    BROKEN = "broken"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


@dataclass(frozen=True)
class TestResult:
    """One sequential test at one look. ``effect`` is challenger minus champion."""

    test: str
    verdict: Verdict
    effect: float
    interval: Interval
    p_value: float  # always valid: the running minimum over looks
    samples: dict[str, int]
    alpha: float
    min_samples: int
    details: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = str(self.verdict)
        out["interval"] = [self.interval.low, self.interval.high]
        return out


@dataclass(frozen=True)
class GuardResult:
    """One guard at one look: its state, the effect it measured and why it broke."""

    name: str
    state: GuardState
    effect: float | None
    interval: Interval | None
    threshold: float | None
    reason: str
    samples: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = str(self.state)
        out["interval"] = None if self.interval is None else [self.interval.low, self.interval.high]
        return out


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


# --- accuracy, independent arms: normal mixture SPRT ------------------------------------


def _difference_and_variance(
    s_a: ArrayLike, n_a: ArrayLike, s_b: ArrayLike, n_b: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Estimated ``p_b - p_a`` and its variance. The variance uses (s + 1/2)/(n + 1) so
    that an arm with all (or no) successes does not claim zero uncertainty."""
    sa, na = np.asarray(s_a, dtype=np.float64), np.asarray(n_a, dtype=np.float64)
    sb, nb = np.asarray(s_b, dtype=np.float64), np.asarray(n_b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where((na > 0) & (nb > 0), sb / nb - sa / na, 0.0)
        pa, pb = (sa + 0.5) / (na + 1.0), (sb + 0.5) / (nb + 1.0)
        variance = pa * (1 - pa) / np.maximum(na, 1.0) + pb * (1 - pb) / np.maximum(nb, 1.0)
    return theta, variance


def accuracy_log_lr(
    s_a: ArrayLike,
    n_a: ArrayLike,
    s_b: ArrayLike,
    n_b: ArrayLike,
    *,
    tau: float = DEFAULT_TAU,
    theta0: float = 0.0,
) -> FloatArray:
    """log of the mixture likelihood ratio for ``H0: p_b - p_a = theta0`` (vectorised).

    ``Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 (theta - theta0)^2 / (2 V (V + tau^2)))``.
    """
    theta, variance = _difference_and_variance(s_a, n_a, s_b, n_b)
    t2 = tau * tau
    return np.asarray(
        0.5 * np.log(variance / (variance + t2))
        + t2 * (theta - theta0) ** 2 / (2.0 * variance * (variance + t2)),
        dtype=np.float64,
    )


def _msprt_radius(variance: float, t2: float, alpha: float) -> float:
    """Half-width of the always-valid interval: ``{theta0 : Lambda(theta0) < 1/alpha}``."""
    return math.sqrt(
        variance
        * (variance + t2)
        / t2
        * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance))
    )


def accuracy_rejections(
    s_a: ArrayLike,
    n_a: ArrayLike,
    s_b: ArrayLike,
    n_b: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    tau: float = DEFAULT_TAU,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> NDArray[np.bool_]:
    """Where the test rejects equal accuracy (vectorised over any shape of looks)."""
    _check_alpha(alpha)
    log_lr = accuracy_log_lr(s_a, n_a, s_b, n_b, tau=tau)
    enough = (np.asarray(n_a) >= min_samples) & (np.asarray(n_b) >= min_samples)
    return np.asarray(enough & (log_lr >= math.log(1.0 / alpha)), dtype=np.bool_)


def accuracy_sequential_test(
    *,
    champion_correct: int,
    champion_n: int,
    challenger_correct: int,
    challenger_n: int,
    alpha: float = DEFAULT_ALPHA,
    tau: float = DEFAULT_TAU,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    previous_p_value: float = 1.0,
) -> TestResult:
    """Always-valid test of equal accuracy between two independent arms.

    ``previous_p_value`` is the p-value of the last look (1.0 for the first): the
    always-valid p-value is the running minimum of ``1 / Lambda``. Raises ValueError
    for counts that are not counts or an alpha outside (0, 1).
    """
    _check_alpha(alpha)
    for correct, n in ((champion_correct, champion_n), (challenger_correct, challenger_n)):
        if n < 0 or not 0 <= correct <= n:
            raise ValueError(f"invalid counts: {correct} correct of {n}")
    theta, variance = (
        float(x[()])
        for x in _difference_and_variance(
            champion_correct, champion_n, challenger_correct, challenger_n
        )
    )
    samples = {"champion": champion_n, "challenger": challenger_n}
    details: dict[str, float | None] = {
        "champion_accuracy": champion_correct / champion_n if champion_n else None,
        "challenger_accuracy": challenger_correct / challenger_n if challenger_n else None,
        "tau": tau,
    }
    if min(champion_n, challenger_n) < min_samples:
        return TestResult(
            "msprt_accuracy",
            Verdict.INSUFFICIENT_DATA,
            theta,
            Interval(-1.0, 1.0),
            min(previous_p_value, 1.0),
            samples,
            alpha,
            min_samples,
            details,
        )
    t2 = tau * tau
    log_lr = float(
        accuracy_log_lr(champion_correct, champion_n, challenger_correct, challenger_n, tau=tau)
    )
    p_value = min(previous_p_value, 1.0, math.exp(-log_lr) if log_lr < 700 else 0.0)
    # {theta0 : log Lambda(theta0) < log(1/alpha)}, solved for theta0.
    radius = _msprt_radius(variance, t2, alpha)
    interval = Interval(max(-1.0, theta - radius), min(1.0, theta + radius))
    verdict = Verdict.INCONCLUSIVE
    if p_value <= alpha:
        verdict = Verdict.BETTER if theta > 0 else Verdict.WORSE
    return TestResult(
        "msprt_accuracy", verdict, theta, interval, p_value, samples, alpha, min_samples, details
    )


# --- shadow mode, paired: sequential McNemar --------------------------------------------


def mcnemar_log_lr(
    champion_only: ArrayLike, challenger_only: ArrayLike, *, prior: float = DEFAULT_MCNEMAR_PRIOR
) -> FloatArray:
    """log of the Beta(prior, prior) mixture likelihood ratio against q = 1/2 (vectorised).

    ``champion_only`` (b): pairs only the champion got right; ``challenger_only`` (c):
    pairs only the challenger got right. ``Lambda = B(c + a, b + a) / B(a, a) * 2^(b + c)``.
    """
    b = np.asarray(champion_only, dtype=np.float64)
    c = np.asarray(challenger_only, dtype=np.float64)
    return np.asarray(
        special.betaln(c + prior, b + prior) - special.betaln(prior, prior) + (b + c) * math.log(2),
        dtype=np.float64,
    )


def mcnemar_rejections(
    champion_only: ArrayLike,
    challenger_only: ArrayLike,
    paired_n: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    prior: float = DEFAULT_MCNEMAR_PRIOR,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> NDArray[np.bool_]:
    """Where the paired test rejects equal accuracy (vectorised over looks)."""
    _check_alpha(alpha)
    log_lr = mcnemar_log_lr(champion_only, challenger_only, prior=prior)
    enough = np.asarray(paired_n) >= min_samples
    return np.asarray(enough & (log_lr >= math.log(1.0 / alpha)), dtype=np.bool_)


def _q_interval(b: int, c: int, prior: float, alpha: float) -> Interval:
    """{q0 : the mixture ratio against q0 stays below 1/alpha}: an interval around c/(b+c)."""
    n = b + c
    if n == 0:
        return Interval(0.0, 1.0)
    log_mix = float(special.betaln(c + prior, b + prior) - special.betaln(prior, prior))
    bound = math.log(1 / alpha)

    def excess(q0: float) -> float:
        # log Lambda(q0) - log(1/alpha); convex in q0, lowest at the MLE.
        return log_mix - c * math.log(q0) - b * math.log1p(-q0) - bound

    tiny = 1e-12
    mle = min(max(c / n, tiny), 1 - tiny)
    if excess(mle) >= 0:  # cannot happen for a proper prior, but stay safe
        return Interval(mle, mle)
    low = 0.0 if excess(tiny) < 0 else optimize.brentq(excess, tiny, mle)
    high = 1.0 if excess(1 - tiny) < 0 else optimize.brentq(excess, mle, 1 - tiny)
    return Interval(float(low), float(high))


def mcnemar_sequential_test(
    *,
    champion_only: int,
    challenger_only: int,
    paired_n: int,
    alpha: float = DEFAULT_ALPHA,
    prior: float = DEFAULT_MCNEMAR_PRIOR,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    previous_p_value: float = 1.0,
) -> TestResult:
    """Always-valid paired test of equal accuracy on ``paired_n`` labelled rows both
    arms scored. The effect is the accuracy difference ``(c - b) / paired_n``; its
    interval maps the interval of q, the challenger's share of disagreements, through
    ``(2q - 1) (b + c) / paired_n``. Raises ValueError for impossible counts.
    """
    _check_alpha(alpha)
    b, c = champion_only, challenger_only
    if min(b, c, paired_n) < 0 or b + c > paired_n:
        raise ValueError(f"invalid counts: b={b} c={c} of {paired_n} pairs")
    effect = (c - b) / paired_n if paired_n else 0.0
    samples = {"paired": paired_n, "champion_only": b, "challenger_only": c}
    details: dict[str, float | None] = {
        "discordant_share": (b + c) / paired_n if paired_n else None,
        "prior": prior,
    }
    if paired_n < min_samples:
        return TestResult(
            "mcnemar_sequential",
            Verdict.INSUFFICIENT_DATA,
            effect,
            Interval(-1.0, 1.0),
            min(previous_p_value, 1.0),
            samples,
            alpha,
            min_samples,
            details,
        )
    log_lr = float(mcnemar_log_lr(b, c, prior=prior))
    p_value = min(previous_p_value, 1.0, math.exp(-log_lr) if log_lr < 700 else 0.0)
    q = _q_interval(b, c, prior, alpha)
    scale = (b + c) / paired_n
    interval = Interval((2 * q.low - 1) * scale, (2 * q.high - 1) * scale)
    verdict = Verdict.INCONCLUSIVE
    if p_value <= alpha:
        verdict = Verdict.BETTER if c > b else Verdict.WORSE
    return TestResult(
        "mcnemar_sequential",
        verdict,
        effect,
        interval,
        p_value,
        samples,
        alpha,
        min_samples,
        details,
    )


# --- guards ------------------------------------------------------------------------------


def error_rate_guard(
    *,
    champion_errors: int,
    champion_n: int,
    challenger_errors: int,
    challenger_n: int,
    margin: float = 0.02,
    alpha: float = DEFAULT_ALPHA,
    tau: float = DEFAULT_TAU,
    min_samples: int = 50,
) -> GuardResult:
    """Broken when the challenger's error rate exceeds the champion's by more than
    ``margin`` with always-valid confidence: the interval's lower bound is above it.

    ``*_n`` counts attempts (successes plus errors) per arm.
    """
    _check_alpha(alpha)
    samples = {"champion": champion_n, "challenger": challenger_n}
    theta, variance = (
        float(x[()])
        for x in _difference_and_variance(
            champion_errors, champion_n, challenger_errors, challenger_n
        )
    )
    if min(champion_n, challenger_n) < min_samples:
        return GuardResult(
            "error_rate",
            GuardState.INSUFFICIENT_DATA,
            theta,
            None,
            margin,
            f"fewer than {min_samples} attempts per arm",
            samples,
        )
    t2 = tau * tau
    # One-sided use of the two-sided always-valid interval: conservative by a factor 2.
    radius = _msprt_radius(variance, t2, alpha)
    interval = Interval(theta - radius, theta + radius)
    if interval.low > margin:
        return GuardResult(
            "error_rate",
            GuardState.BROKEN,
            theta,
            interval,
            margin,
            f"challenger error rate {challenger_errors / challenger_n:.1%} exceeds the champion's "
            f"{champion_errors / champion_n:.1%} by more than {margin:.1%} "
            f"(lower bound {interval.low:.3f})",
            samples,
        )
    return GuardResult("error_rate", GuardState.HELD, theta, interval, margin, "", samples)


def quantile_interval(
    values: ArrayLike, quantile: float, *, confidence: float = 0.95
) -> tuple[float, Interval]:
    """The sample quantile and a distribution-free interval from order statistics.

    The interval's ranks come from Binomial(n, quantile). Raises ValueError when empty.
    """
    data = np.sort(np.asarray(values, dtype=np.float64))
    n = len(data)
    if n == 0:
        raise ValueError("no values")
    point = float(np.quantile(data, quantile))
    tail = (1 - confidence) / 2
    lo_rank = int(stats.binom.ppf(tail, n, quantile))
    hi_rank = int(stats.binom.ppf(1 - tail, n, quantile))
    return point, Interval(float(data[max(lo_rank - 1, 0)]), float(data[min(hi_rank, n - 1)]))


def latency_guard(
    *,
    champion_ms: Sequence[float] | FloatArray,
    challenger_ms: Sequence[float] | FloatArray,
    ceiling_ms: float | None = None,
    max_ratio: float | None = 1.5,
    quantile: float = 0.99,
    confidence: float = 0.95,
    min_samples: int = 100,
) -> GuardResult:
    """Broken when the challenger's p99 is above ``ceiling_ms`` or above ``max_ratio``
    times the champion's, judged by the lower end of order-statistic intervals (so a
    single slow request among few does not break it). Effect: the ratio of p99s."""
    samples = {"champion": len(champion_ms), "challenger": len(challenger_ms)}
    if len(challenger_ms) < min_samples or (
        max_ratio is not None and len(champion_ms) < min_samples
    ):
        return GuardResult(
            "latency",
            GuardState.INSUFFICIENT_DATA,
            None,
            None,
            max_ratio,
            f"fewer than {min_samples} requests per arm",
            samples,
        )
    c_point, c_interval = quantile_interval(challenger_ms, quantile, confidence=confidence)
    if ceiling_ms is not None and c_interval.low > ceiling_ms:
        return GuardResult(
            "latency",
            GuardState.BROKEN,
            c_point,
            c_interval,
            ceiling_ms,
            f"challenger p{quantile * 100:g} {c_point:.1f} ms is above the ceiling "
            f"{ceiling_ms:g} ms",
            samples,
        )
    if max_ratio is None:
        return GuardResult("latency", GuardState.HELD, c_point, c_interval, ceiling_ms, "", samples)
    h_point, h_interval = quantile_interval(champion_ms, quantile, confidence=confidence)
    floor = 1e-6  # a champion at 0 ms cannot make every ratio infinite
    ratio = c_point / max(h_point, floor)
    ratio_interval = Interval(
        c_interval.low / max(h_interval.high, floor), c_interval.high / max(h_interval.low, floor)
    )
    if ratio_interval.low > max_ratio:
        return GuardResult(
            "latency",
            GuardState.BROKEN,
            ratio,
            ratio_interval,
            max_ratio,
            f"challenger p{quantile * 100:g} {c_point:.1f} ms is {ratio:.1f}x the champion's "
            f"{h_point:.1f} ms (limit {max_ratio:g}x)",
            samples,
        )
    return GuardResult("latency", GuardState.HELD, ratio, ratio_interval, max_ratio, "", samples)


def prediction_shift_guard(
    *,
    champion_classes: Mapping[str, int],
    challenger_classes: Mapping[str, int],
    champion_confidence: Sequence[float] | FloatArray = (),
    challenger_confidence: Sequence[float] | FloatArray = (),
    max_class_share: float = 0.95,
    max_confidence_drop: float = 0.2,
    min_samples: int = 100,
) -> GuardResult:
    """Broken when the challenger's predictions collapse: one class takes at least
    ``max_class_share`` of its answers while the champion gives that class less, or its
    mean confidence is lower than the champion's by more than ``max_confidence_drop``.

    A challenger that merely disagrees (another class balance, as a model retrained for a
    changed world may) is the sequential test's business, not this guard's. The effect
    reported is the total variation distance between the arms' class shares.
    """
    n_h, n_c = sum(champion_classes.values()), sum(challenger_classes.values())
    samples = {"champion": n_h, "challenger": n_c}
    if min(n_h, n_c) < min_samples:
        return GuardResult(
            "prediction_shift",
            GuardState.INSUFFICIENT_DATA,
            None,
            None,
            max_class_share,
            f"fewer than {min_samples} predictions per arm",
            samples,
        )
    labels = sorted(set(champion_classes) | set(challenger_classes))
    tvd = 0.5 * sum(
        abs(challenger_classes.get(k, 0) / n_c - champion_classes.get(k, 0) / n_h) for k in labels
    )
    top, top_count = max(challenger_classes.items(), key=lambda item: item[1])
    top_share, champion_share = top_count / n_c, champion_classes.get(top, 0) / n_h
    if top_share >= max_class_share and champion_share < max_class_share:
        return GuardResult(
            "prediction_shift",
            GuardState.BROKEN,
            tvd,
            None,
            max_class_share,
            f"challenger answers {top!r} for {top_share:.0%} of requests "
            f"(champion {champion_share:.0%}; limit {max_class_share:.0%})",
            samples,
        )
    if len(champion_confidence) and len(challenger_confidence):
        drop = float(np.mean(champion_confidence) - np.mean(challenger_confidence))
        if drop > max_confidence_drop:
            return GuardResult(
                "prediction_shift",
                GuardState.BROKEN,
                drop,
                None,
                max_confidence_drop,
                f"mean confidence is {drop:.2f} lower than the champion's "
                f"(limit {max_confidence_drop:g})",
                samples,
            )
    return GuardResult("prediction_shift", GuardState.HELD, tvd, None, max_class_share, "", samples)


# --- decision ----------------------------------------------------------------------------


class Action(StrEnum):
    CONTINUE = "continue"
    ADVANCE = "advance"  # canary: move to the next step
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    next_percent: float | None = None


def canary_plan_validate(plan: Sequence[float]) -> list[float]:
    """A canary plan: strictly increasing percentages in (0, 100]. Raises ValueError."""
    steps = [float(s) for s in plan]
    if not steps:
        raise ValueError("a canary plan needs at least one step")
    if any(not 0.0 < s <= 100.0 for s in steps):
        raise ValueError(f"canary steps must be in (0, 100]: {steps}")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"canary steps must increase: {steps}")
    return steps


def experiment_decide(
    *,
    phase: str,
    primary: TestResult | None,
    guards: Sequence[GuardResult],
    better_before: bool = False,
    canary_plan: Sequence[float] = (),
    canary_step: int = 0,
    step_elapsed_s: float = 0.0,
    step_interval_s: float = 0.0,
    step_samples: int = 0,
    step_min_samples: int = 0,
    auto_promote: bool = True,
) -> Decision:
    """What an evaluation does with its results, in order of precedence.

    ``phase`` is ``shadow``, ``canary`` or ``ab``. ``primary`` is None when the
    experiment has no labelled metric (guards only): then the challenger counts as
    better once the step's interval and samples have passed with every guard held.
    ``better_before``: an earlier look (e.g. the shadow phase) already found it better.

    1. A broken guard, or the test finding the challenger worse -> rollback.
    2. Shadow with a canary plan: better -> advance to the plan's first step.
    3. Canary before its last step: the step's interval and samples passed -> advance.
    4. Better, every guard held, at the last canary step (after its interval and
       samples) or in shadow / A/B -> promote, when ``auto_promote``.
    5. Otherwise continue.
    """
    broken = [g for g in guards if g.state is GuardState.BROKEN]
    if broken:
        return Decision(Action.ROLLBACK, "; ".join(f"{g.name}: {g.reason}" for g in broken))
    if primary is not None and primary.verdict is Verdict.WORSE:
        return Decision(
            Action.ROLLBACK,
            f"{primary.test}: challenger worse by {-primary.effect:.3f} "
            f"(interval {primary.interval.low:.3f} to {primary.interval.high:.3f}, "
            f"p {primary.p_value:.4f})",
        )
    step_done = step_elapsed_s >= step_interval_s and step_samples >= step_min_samples
    if primary is None:
        better = step_done
        why = f"every guard held for {step_elapsed_s:.0f} s and {step_samples} requests"
    else:
        better = better_before or primary.verdict is Verdict.BETTER
        why = (
            f"{primary.test}: challenger better by {primary.effect:.3f} "
            f"(interval {primary.interval.low:.3f} to {primary.interval.high:.3f}, "
            f"p {primary.p_value:.4f}); every guard held"
        )
    if phase == "shadow" and canary_plan and better:
        first = float(canary_plan[0])
        return Decision(Action.ADVANCE, f"{why}; starting the canary at {first:g} %", first)
    if phase == "canary" and canary_step < len(canary_plan) - 1:
        if step_done:
            nxt = float(canary_plan[canary_step + 1])
            return Decision(
                Action.ADVANCE,
                f"guards held for {step_elapsed_s:.0f} s and {step_samples} requests at "
                f"{canary_plan[canary_step]:g} %; advancing to {nxt:g} %",
                nxt,
            )
        return Decision(Action.CONTINUE, "")
    if phase == "canary" and not step_done:
        return Decision(Action.CONTINUE, "")
    if better and auto_promote:
        return Decision(Action.PROMOTE, why)
    return Decision(Action.CONTINUE, "")
