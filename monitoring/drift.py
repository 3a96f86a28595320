"""Data-drift statistics: per-feature two-sample tests, magnitudes and corrections.

Pure numpy/scipy, no Django. The numeric path is vectorised across features: one
argsort of the pooled (reference + current) columns gives, for every feature at
once, the Kolmogorov-Smirnov statistic (the largest gap between the two empirical CDFs)
and the 1-Wasserstein distance (the area between them). P-values are scipy's own: the
same Smirnov distribution ``scipy.stats.ks_2samp`` uses for large samples, and
``ks_2samp`` itself where it would compute the exact distribution (small samples), so
the results equal ``ks_2samp``'s.

Categorical features (few integer levels) get a chi-squared test on their counts;
PSI is reported for every feature as a magnitude, never used for the verdict.

Two more families use the same tests and corrections: a model's outputs against the
predictions it makes on its reference data (``prediction_drift``: class shares by
chi-squared for classifiers, KS on the value for regressors, KS on the confidence
where there is one), and texts, tested through numbers derived from them
(``text_profiles``: length, word count, share of words the reference never used).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

Correction = Literal["bonferroni", "bh", "none"]
CORRECTIONS: tuple[Correction, ...] = ("bonferroni", "bh", "none")
TestName = Literal["ks", "chi2", "skipped"]

# scipy.stats.ks_2samp(method="auto") computes the exact p-value up to this sample size.
KS_EXACT_MAX_N = 10_000
PSI_EPSILON = 1e-4
PSI_BINS = 10
CATEGORICAL_MAX_LEVELS = 10

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test. ``None`` fields mean the feature could not be tested."""

    name: str
    test: TestName
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    psi: float | None
    wasserstein: float | None
    drift: bool
    current_rows: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "psi": self.psi,
            "wasserstein": self.wasserstein,
            "drift": self.drift,
            "rows": self.current_rows,
        }


@dataclass(frozen=True)
class DatasetDrift:
    """The dataset-level verdict: drift when any corrected p-value is below ``alpha``."""

    drift: bool
    alpha: float
    correction: Correction
    reference_rows: int
    current_rows: int
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drift]

    def features_as_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: f.as_dict() for f in self.features}


# --- corrections --------------------------------------------------------------


def p_adjust(p_values: ArrayLike, method: Correction) -> FloatArray:
    """P-values corrected for testing several features at once.

    ``bonferroni`` controls the family-wise error rate (p * m, capped at 1); ``bh`` is
    Benjamini-Hochberg (false discovery rate, scipy's ``false_discovery_control``);
    ``none`` returns them unchanged. Raises ValueError for an unknown method or a
    p-value outside [0, 1].
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p_values must be one-dimensional")
    if p.size and (np.isnan(p).any() or p.min() < 0 or p.max() > 1):
        raise ValueError("p-values must lie in [0, 1]")
    if method == "none" or p.size == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * p.size, 1.0)
    if method == "bh":
        return np.asarray(stats.false_discovery_control(p, method="bh"), dtype=np.float64)
    raise ValueError(f"unknown correction {method!r}; use one of {CORRECTIONS}")


# --- numeric: KS and Wasserstein, vectorised across features --------------------


def ks_wasserstein(reference: ArrayLike, current: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Per column: the two-sample KS statistic and the 1-Wasserstein distance.

    ``reference`` is (n1, k), ``current`` (n2, k), no NaNs. Both come from one
    argsort of the pooled columns. The KS statistic is computed from integer counts
    exactly as ``ks_2samp`` does (count / n), so it is bit-for-bit the same number.
    """
    ref, cur = _as_2d(reference), _as_2d(current)
    n1, n2 = ref.shape[0], cur.shape[0]
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one row")
    # Features as rows: every step below then walks contiguous memory.
    pooled = np.concatenate([ref.T, cur.T], axis=1)
    # Any sort will do (only the last position of a run of ties is read) and the
    # default one is several times faster than a stable sort here.
    order = np.argsort(pooled, axis=1)
    values = np.take_along_axis(pooled, order, axis=1)
    below_ref = np.cumsum(order < n1, axis=1, dtype=np.int32 if n1 + n2 < 2**31 else np.int64)
    below_cur = np.arange(1, n1 + n2 + 1) - below_ref
    cddiffs = below_ref / n1 - below_cur / n2
    # Within a run of tied values only the last position is a real CDF value; the
    # others are masked with 0, which never wins because the final gap is always 0.
    run_end = np.ones(values.shape, dtype=bool)
    run_end[:, :-1] = values[:, 1:] != values[:, :-1]
    gaps = np.where(run_end, cddiffs, 0.0)
    max_s = gaps.max(axis=1)
    min_s = np.clip(-gaps.min(axis=1), 0.0, 1.0)
    d = np.where(min_s > max_s, min_s, max_s)
    # Area between the CDFs: tied positions have zero width, so masking is not needed.
    w = np.sum(np.abs(cddiffs[:, :-1]) * np.diff(values, axis=1), axis=1)
    return d.astype(np.float64), w.astype(np.float64)


def ks_two_sample(
    reference: ArrayLike, current: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per column: KS statistic, two-sided p-value and 1-Wasserstein distance.

    Equal to ``scipy.stats.ks_2samp(method="auto")``: for large samples the statistic
    from ``ks_wasserstein`` and Smirnov's distribution ``kstwo.sf(d, round(n1*n2/(n1+n2)))``
    in one vectorised call; for small samples (at most 10,000 rows a side) ``ks_2samp``
    itself, which computes the exact distribution (and rounds the statistic to the
    lattice it lives on) cheaply at that size.
    """
    ref, cur = _as_2d(reference), _as_2d(current)
    n1, n2 = ref.shape[0], cur.shape[0]
    d, w = ks_wasserstein(ref, cur)
    if max(n1, n2) <= KS_EXACT_MAX_N:
        p = np.empty_like(d)
        for j in range(d.size):
            result = stats.ks_2samp(ref[:, j], cur[:, j])
            d[j], p[j] = float(result.statistic), float(result.pvalue)
        return d, p, w
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p = np.clip(np.asarray(stats.kstwo.sf(d, np.round(en)), dtype=np.float64), 0.0, 1.0)
    return d, p, w


# --- PSI ------------------------------------------------------------------------


def psi_numeric(
    reference: ArrayLike, current: ArrayLike, *, bins: int = PSI_BINS, eps: float = PSI_EPSILON
) -> FloatArray:
    """Population Stability Index per column over the reference's quantile bins.

    Bin edges are the reference quantiles (ties collapsed, open-ended outer bins);
    an empty bin counts as ``eps`` so the logarithm stays finite. Rules of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift.
    """
    ref, cur = _as_2d(reference), _as_2d(current)
    edges = np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1], axis=0)
    out = np.empty(ref.shape[1], dtype=np.float64)
    for j in range(ref.shape[1]):
        inner = np.unique(edges[:, j])
        ref_counts = np.bincount(
            np.searchsorted(inner, ref[:, j], side="right"), minlength=inner.size + 1
        )
        cur_counts = np.bincount(
            np.searchsorted(inner, cur[:, j], side="right"), minlength=inner.size + 1
        )
        out[j] = _psi_from_counts(ref_counts, cur_counts, eps)
    return out


def psi_categorical(reference: ArrayLike, current: ArrayLike, *, eps: float = PSI_EPSILON) -> float:
    """PSI of one categorical column over the union of its categories."""
    ref_counts, cur_counts = _category_counts(np.asarray(reference), np.asarray(current))
    return _psi_from_counts(ref_counts, cur_counts, eps)


def _psi_from_counts(ref_counts: NDArray[Any], cur_counts: NDArray[Any], eps: float) -> float:
    ref_share = np.maximum(ref_counts / max(int(ref_counts.sum()), 1), eps)
    cur_share = np.maximum(cur_counts / max(int(cur_counts.sum()), 1), eps)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


# --- categorical: chi-squared ----------------------------------------------------


def chi_squared(reference: ArrayLike, current: ArrayLike) -> tuple[float, float]:
    """Chi-squared test of homogeneity on the category counts of one column.

    Returns (statistic, p-value) from ``scipy.stats.chi2_contingency`` on the 2 x k
    table; a column with a single category in both samples cannot differ: (0, 1).
    """
    ref_counts, cur_counts = _category_counts(np.asarray(reference), np.asarray(current))
    if ref_counts.size < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]))
    return float(result.statistic), float(result.pvalue)


def chi_squared_binned(
    reference: ArrayLike, current: ArrayLike, *, bins: int = PSI_BINS
) -> tuple[float, float]:
    """Chi-squared on a numeric column binned at the reference's quantiles."""
    ref = np.asarray(reference, dtype=np.float64)
    inner = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    cur = np.asarray(current, dtype=np.float64)
    return chi_squared(
        np.searchsorted(inner, ref, side="right"), np.searchsorted(inner, cur, side="right")
    )


def _category_counts(ref: NDArray[Any], cur: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    levels, codes = np.unique(np.concatenate([ref, cur]), return_inverse=True)
    codes = codes.reshape(-1)
    ref_counts = np.bincount(codes[: ref.size], minlength=levels.size)
    cur_counts = np.bincount(codes[ref.size :], minlength=levels.size)
    return ref_counts, cur_counts


def categorical_columns(
    reference: ArrayLike, *, max_levels: int = CATEGORICAL_MAX_LEVELS
) -> list[int]:
    """Indices of columns that look categorical: integer values only, few distinct levels."""
    ref = _as_2d(reference)
    found: list[int] = []
    for j in range(ref.shape[1]):
        column = ref[:, j]
        if np.all(column == np.round(column)) and np.unique(column).size <= max_levels:
            found.append(j)
    return found


# --- the dataset verdict ---------------------------------------------------------


def dataset_drift(
    reference: ArrayLike,
    current: ArrayLike,
    *,
    feature_names: Sequence[str],
    alpha: float = 0.05,
    correction: Correction = "bh",
    categorical: Collection[str] | None = None,
    psi_bins: int = PSI_BINS,
    min_rows: int = 1,
) -> DatasetDrift:
    """Test every feature of ``current`` against ``reference`` and correct across features.

    ``reference`` (n1 x k) must be finite; ``current`` (n2 x k) may hold NaN for values
    that were not logged: those are dropped per feature, and a feature left with fewer
    than ``min_rows`` values is reported as ``skipped`` and left out of the correction.
    ``categorical`` names the categorical features; ``None`` detects them (integer
    values with at most ten levels in the reference). Raises ValueError on shape
    mismatch, a non-finite reference, an unknown correction or alpha outside (0, 1).
    """
    ref, cur = _as_2d(reference), _as_2d(current)
    k = len(feature_names)
    if ref.shape[1] != k or cur.shape[1] != k:
        raise ValueError(
            f"reference {ref.shape} and current {cur.shape} must both have {k} columns"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; use one of {CORRECTIONS}")
    if ref.shape[0] == 0 or not np.isfinite(ref).all():
        raise ValueError("the reference must have rows and hold finite numbers only")
    if categorical is None:
        categorical_idx = set(categorical_columns(ref))
    else:
        categorical_idx = {i for i, name in enumerate(feature_names) if name in categorical}

    observed = ~np.isnan(cur)
    counts = observed.sum(axis=0)
    tested: dict[int, tuple[TestName, float, float, float, float]] = {}

    # Numeric columns with every value present go through one vectorised pass.
    complete = [
        j for j in range(k) if j not in categorical_idx and counts[j] == cur.shape[0] >= min_rows
    ]
    if complete:
        tested.update(_numeric_block(ref[:, complete], cur[:, complete], complete, psi_bins))
    for j in range(k):
        if j in tested or counts[j] < max(min_rows, 1):
            continue
        column = cur[observed[:, j], j]
        if j in categorical_idx:
            statistic, p = chi_squared(ref[:, j], column)
            w = float(stats.wasserstein_distance(ref[:, j], column))
            tested[j] = ("chi2", statistic, p, psi_categorical(ref[:, j], column), w)
        else:
            tested.update(_numeric_block(ref[:, [j]], column[:, None], [j], psi_bins))

    order = sorted(tested)
    adjusted = p_adjust([tested[j][2] for j in order], correction)
    p_adj_by_col = dict(zip(order, adjusted.tolist(), strict=True))
    features = [
        _verdict(name, tested.get(j), p_adj_by_col.get(j, 1.0), alpha, int(counts[j]))
        for j, name in enumerate(feature_names)
    ]
    return DatasetDrift(
        drift=any(f.drift for f in features),
        alpha=alpha,
        correction=correction,
        reference_rows=int(ref.shape[0]),
        current_rows=int(cur.shape[0]),
        features=features,
    )


def _verdict(
    name: str,
    found: tuple[TestName, float, float, float, float | None] | None,
    p_adjusted: float,
    alpha: float,
    rows: int,
) -> FeatureDrift:
    """One test's stored result (``found``: test, statistic, p, PSI, Wasserstein), or
    ``skipped`` when it was not run."""
    if found is None:
        return FeatureDrift(name, "skipped", None, None, None, None, None, False, rows)
    test, statistic, p, psi, w = found
    return FeatureDrift(
        name=name,
        test=test,
        statistic=_finite(statistic),
        p_value=_finite(p),
        p_adjusted=_finite(p_adjusted),
        psi=_finite(psi),
        wasserstein=None if w is None else _finite(w),
        drift=p_adjusted < alpha,
        current_rows=rows,
    )


def _numeric_block(
    ref: FloatArray, cur: FloatArray, columns: list[int], psi_bins: int
) -> dict[int, tuple[TestName, float, float, float, float]]:
    d, p, w = ks_two_sample(ref, cur)
    psi = psi_numeric(ref, cur, bins=psi_bins)
    return {
        col: ("ks", float(d[i]), float(p[i]), float(psi[i]), float(w[i]))
        for i, col in enumerate(columns)
    }


# --- prediction drift --------------------------------------------------------------

PREDICTION = "prediction"
CONFIDENCE = "confidence"


def predictions_categorical(values: Sequence[Any], *, has_probabilities: bool) -> bool:
    """Whether outputs are classes (class shares are tested) rather than values (KS).

    A classifier's (``has_probabilities``) always are; otherwise anything that is not a
    number, or integers with at most ten distinct levels, is a class.
    """
    if has_probabilities:
        return True
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) < len(values):
        return True
    array = np.asarray(numbers, dtype=np.float64)
    whole = bool(np.all(array == np.round(array))) if array.size else True
    return whole and np.unique(array).size <= CATEGORICAL_MAX_LEVELS


def prediction_drift(
    *,
    reference_predictions: Sequence[Any],
    current_predictions: Sequence[Any],
    categorical: bool,
    reference_confidence: Sequence[float] | None = None,
    current_confidence: Sequence[float] | None = None,
    alpha: float = 0.05,
    correction: Correction = "bh",
    min_rows: int = 1,
) -> DatasetDrift:
    """Test a window of a model's outputs against its outputs on the reference data.

    ``prediction``: a chi-squared test of the class shares when ``categorical`` (labels
    compared as text, so 1 and "1" are one class), else two-sample KS on the predicted
    values; ``confidence`` (when both sides have it): KS. The tests are corrected
    together with ``correction``; an output with fewer than ``min_rows`` current values
    is ``skipped``. Raises ValueError for an empty reference or a bad alpha/correction.
    """
    if not reference_predictions:
        raise ValueError("the reference predictions must have rows")
    columns: list[tuple[str, TestName, Any, Any]] = []
    if categorical:
        ref = np.asarray([str(v) for v in reference_predictions], dtype=object)
        cur = np.asarray([str(v) for v in current_predictions], dtype=object)
        columns.append((PREDICTION, "chi2", ref, cur))
    else:
        ref = np.asarray(reference_predictions, dtype=np.float64)
        cur = np.asarray(current_predictions, dtype=np.float64)
        columns.append((PREDICTION, "ks", ref[np.isfinite(ref)], cur[np.isfinite(cur)]))
    if reference_confidence is not None and current_confidence is not None:
        ref_c = np.asarray(reference_confidence, dtype=np.float64)
        cur_c = np.asarray(current_confidence, dtype=np.float64)
        columns.append((CONFIDENCE, "ks", ref_c[np.isfinite(ref_c)], cur_c[np.isfinite(cur_c)]))
    return _family(columns, alpha=alpha, correction=correction, min_rows=min_rows)


def _family(
    columns: list[tuple[str, TestName, Any, Any]],
    *,
    alpha: float,
    correction: Correction,
    min_rows: int,
) -> DatasetDrift:
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction {correction!r}; use one of {CORRECTIONS}")
    tested: dict[str, tuple[TestName, float, float, float, float | None]] = {}
    for name, test, ref, cur in columns:
        if len(cur) < max(min_rows, 1) or len(ref) == 0:
            continue
        if test == "chi2":
            statistic, p = chi_squared(ref, cur)
            tested[name] = ("chi2", statistic, p, psi_categorical(ref, cur), None)
        else:
            d, p_values, w_values = ks_two_sample(ref[:, None], cur[:, None])
            psis = psi_numeric(ref[:, None], cur[:, None])
            tested[name] = (
                "ks",
                float(d[0]),
                float(p_values[0]),
                float(psis[0]),
                float(w_values[0]),
            )
    names = list(tested)
    adjusted = p_adjust([tested[n][2] for n in names], correction)
    p_adj_by_name = dict(zip(names, adjusted.tolist(), strict=True))
    results = [
        _verdict(name, tested.get(name), p_adj_by_name.get(name, 1.0), alpha, len(cur))
        for name, _test, _ref, cur in columns
    ]
    return DatasetDrift(
        drift=any(f.drift for f in results),
        alpha=alpha,
        correction=correction,
        reference_rows=max((len(c[2]) for c in columns), default=0),
        current_rows=max((len(c[3]) for c in columns), default=0),
        features=results,
    )


# --- text inputs: derived numbers ----------------------------------------------------

TEXT_PROFILE = ("length", "words", "unknown_word_share")
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def text_profile_names(feature: str) -> list[str]:
    """The derived features of one text feature: ``text.length`` and so on."""
    return [f"{feature}.{part}" for part in TEXT_PROFILE]


def text_profiles(
    reference: Sequence[str], current: Sequence[str | None]
) -> tuple[FloatArray, FloatArray]:
    """Per text, the numbers its drift is tested on: characters, words, and the share
    of its words that the reference vocabulary does not hold (0 for a text without words).

    The reference is split by position: the words of the texts at even positions are
    the vocabulary; the texts at odd positions are the reference sample. Both the
    reference sample and the current texts are then judged against a vocabulary they
    did not help build, so without drift they come from the same distribution (a text's
    own words would always be known, and every window would look drifted). Returns
    (reference sample rows x 3, current rows x 3; NaN rows where a current text is None,
    which ``dataset_drift`` leaves out). Raises ValueError for fewer than two texts.
    """
    if len(reference) < 2:
        raise ValueError("text profiles need at least two reference texts")
    vocabulary = {w for text in reference[0::2] for w in _words(text)}

    def profile(texts: Sequence[str | None]) -> FloatArray:
        rows = np.full((len(texts), len(TEXT_PROFILE)), np.nan, dtype=np.float64)
        for i, text in enumerate(texts):
            if text is None:
                continue
            found = _words(text)
            unknown = sum(1 for w in found if w not in vocabulary)
            rows[i] = (len(text), len(found), unknown / len(found) if found else 0.0)
        return rows

    return profile(reference[1::2]), profile(current)


def families_combined(
    parts: Sequence[DatasetDrift], *, alpha: float, correction: Correction
) -> DatasetDrift:
    """Several sets of tests (each run with ``correction="none"``, as when their
    reference samples differ in size) as one family: p-values corrected across all of
    them with ``correction``, verdicts at ``alpha``."""
    features = [f for part in parts for f in part.features]
    tested = [(i, f.p_value) for i, f in enumerate(features) if f.p_value is not None]
    adjusted = p_adjust([p for _, p in tested], correction)
    by_index = dict(zip([i for i, _ in tested], adjusted.tolist(), strict=True))
    combined = [
        f
        if i not in by_index
        else dataclasses.replace(f, p_adjusted=_finite(by_index[i]), drift=by_index[i] < alpha)
        for i, f in enumerate(features)
    ]
    return DatasetDrift(
        drift=any(f.drift for f in combined),
        alpha=alpha,
        correction=correction,
        reference_rows=max((p.reference_rows for p in parts), default=0),
        current_rows=max((p.current_rows for p in parts), default=0),
        features=combined,
    )


def _as_2d(values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D rows x features array, got shape {array.shape}")
    return array


def _finite(value: float) -> float | None:
    # JSON (and PostgreSQL's jsonb) has no NaN or infinity.
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Duplicates:
    """How much of a window repeats itself: ``share`` of rows that repeat an earlier row
    of the window, and the source (e.g. an API key id) that sent most of those repeats
    with its ``source_share`` of them (None when there are no repeats or no sources)."""

    share: float
    rows: int
    source: Any = None
    source_share: float = 0.0


def duplicate_rows(current: ArrayLike, sources: Sequence[Any] | None = None) -> Duplicates:
    """The repeated rows of ``current`` (rows x features; NaN equals NaN here).

    A flood of identical requests moves every feature's distribution at once: a window
    made mostly of repeats says more about who sent it than about the world, so the drift
    check reports it as such instead of judging it.
    """
    matrix = np.asarray(current, dtype=np.float64)
    rows = int(matrix.shape[0]) if matrix.ndim else 0
    if rows == 0:
        return Duplicates(share=0.0, rows=0)
    # NaN != NaN would make every row with a missing value unique; compare bit patterns.
    keyed = np.where(np.isnan(matrix), np.inf, matrix).reshape(rows, -1)
    _, first = np.unique(keyed, axis=0, return_index=True)
    repeated = np.ones(rows, dtype=bool)
    repeated[first] = False
    count = int(repeated.sum())
    if count == 0 or sources is None or len(sources) != rows:
        return Duplicates(share=count / rows, rows=rows)
    values, counts = np.unique(
        np.asarray([str(s) for s, r in zip(sources, repeated, strict=True) if r]),
        return_counts=True,
    )
    top = int(np.argmax(counts))
    named = [s for s, r in zip(sources, repeated, strict=True) if r and str(s) == values[top]]
    return Duplicates(
        share=count / rows, rows=rows, source=named[0], source_share=float(counts[top]) / count
    )
