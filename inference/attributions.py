"""Per-feature attributions of one prediction (Shapley values). Pure: numpy only.

What is explained is a *value function* ``v``: for a batch of coalitions (boolean
masks over the M features, True = the feature keeps the row's own value), the model
output with the other features replaced by a baseline. For tables that is the mean
output over a background sample of reference rows with the masked-out features taken
from them (interventional Shapley values, as KernelSHAP computes them); for text, the
output on the text with the masked-out tokens removed. The caller builds ``v``; this
module only decides which coalitions to ask for and solves for the attributions.

Every method here is *efficient*: the attributions sum to v(all) - v(none), the
prediction minus the baseline, up to floating-point rounding.

- ``shapley_exact``: every one of the 2**M coalitions, the Shapley formula itself.
  Used while 2**M fits the evaluation budget (M <= 12 or so).
- ``kernel_shap``: Lundberg & Lee's KernelSHAP. Coalitions are drawn by size with the
  Shapley kernel's weights (sizes 1..M-1; complementary pairs, which halves the
  variance), and the weighted least-squares problem is solved with the efficiency
  constraint eliminated, so the sum holds exactly whatever the sample. Converges to
  the exact values as the sample grows; used when 2**M exceeds the budget.
- ``linear_attributions``: exact closed form for a linear score w.x + b explained
  against a baseline point: w_i (x_i - baseline_i). Used when the ONNX graph is a
  linear model, on its margin (before any logistic/softmax).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
# Coalitions (K x M booleans) -> the explained output for each (K floats).
ValueFunction = Callable[[BoolArray], FloatArray]

# 2**M coalitions are enumerated while M is at most this (4,096 coalitions).
EXACT_MAX_FEATURES = 12


@dataclass(frozen=True)
class Attribution:
    """One row's attributions: ``values[i]`` for feature i, summing to value - baseline."""

    values: FloatArray
    baseline: float  # v(no feature): the expected output over the background
    value: float  # v(every feature): the explained output for this row
    method: str  # "linear-exact", "shapley-exact" or "kernel-shap"
    coalitions: int  # value-function evaluations asked for (0 for linear)

    @property
    def additivity_error(self) -> float:
        return abs(float(self.values.sum()) - (self.value - self.baseline))


def _as_floats(values: Any, count: int) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape[0] != count:
        raise ValueError(f"the value function answered {array.shape[0]} values for {count}")
    return array


def all_coalitions(n_features: int) -> BoolArray:
    """Every subset of ``n_features`` features; row k holds the bits of k."""
    codes = np.arange(2**n_features, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_features)) & 1).astype(bool)


def shapley_exact(value: ValueFunction, n_features: int) -> Attribution:
    """Shapley values from all 2**M coalitions (one call of ``value``)."""
    if n_features < 1:
        raise ValueError("nothing to attribute: no features")
    coalitions = all_coalitions(n_features)
    values = _as_floats(value(coalitions), len(coalitions))
    sizes = coalitions.sum(axis=1)
    # weight of a coalition S not containing i, in phi_i: |S|! (M - |S| - 1)! / M!
    weight_by_size = np.array(
        [factorial(s) * factorial(n_features - s - 1) / factorial(n_features)
         for s in range(n_features)]
    )  # fmt: skip
    phi = np.zeros(n_features)
    codes = np.arange(len(coalitions))
    for i in range(n_features):
        without = codes[~coalitions[:, i]]
        with_i = without | (1 << i)
        phi[i] = float(np.sum(weight_by_size[sizes[without]] * (values[with_i] - values[without])))
    return Attribution(
        values=phi,
        baseline=float(values[0]),
        value=float(values[-1]),
        method="shapley-exact",
        coalitions=len(coalitions),
    )


def _size_distribution(n_features: int) -> FloatArray:
    """The Shapley kernel's mass per coalition size 1..M-1 (normalised)."""
    sizes = np.arange(1, n_features)
    mass = (n_features - 1) / (sizes * (n_features - sizes))
    return np.asarray(mass / mass.sum(), dtype=np.float64)


def kernel_shap(
    value: ValueFunction, n_features: int, *, samples: int, rng: np.random.Generator
) -> Attribution:
    """KernelSHAP estimate from ``samples`` sampled coalitions (+ the empty and full one).

    ``samples`` is rounded up to an even number (complementary pairs) and at least
    2 * M, below which the least-squares problem is underdetermined.
    """
    if n_features < 2:
        return shapley_exact(value, n_features)
    pairs = max(-(-samples // 2), n_features)
    sizes = rng.choice(np.arange(1, n_features), size=pairs, p=_size_distribution(n_features))
    half = np.zeros((pairs, n_features), dtype=bool)
    for row, size in enumerate(sizes):
        half[row, rng.choice(n_features, size=size, replace=False)] = True
    sampled = np.concatenate([half, ~half])
    ends = np.array([np.zeros(n_features, dtype=bool), np.ones(n_features, dtype=bool)])
    coalitions = np.concatenate([ends, sampled])
    values = _as_floats(value(coalitions), len(coalitions))
    baseline, full = float(values[0]), float(values[1])
    # Drawn by the kernel's distribution, every sampled coalition carries equal weight:
    # the regression is ordinary least squares on the samples. Efficiency eliminated:
    # phi_M = (full - baseline) - sum(phi_1..M-1).
    z = sampled.astype(np.float64)
    y = values[2:] - baseline - z[:, -1] * (full - baseline)
    design = z[:, :-1] - z[:, -1:]
    head, *_ = np.linalg.lstsq(design, y, rcond=None)
    phi = np.append(head, (full - baseline) - head.sum())
    return Attribution(
        values=np.asarray(phi, dtype=np.float64),
        baseline=baseline,
        value=full,
        method="kernel-shap",
        coalitions=len(coalitions),
    )


def shapley(
    value: ValueFunction, n_features: int, *, max_coalitions: int, rng: np.random.Generator
) -> Attribution:
    """Exact Shapley values when all 2**M coalitions fit ``max_coalitions``, else
    KernelSHAP on that many. Raises ValueError when even KernelSHAP's minimum
    (2 * M + 2 coalitions) does not fit."""
    if n_features <= EXACT_MAX_FEATURES and 2**n_features <= max_coalitions:
        return shapley_exact(value, n_features)
    needed = minimum_coalitions(n_features)
    if max_coalitions < needed:
        raise ValueError(
            f"{n_features} features need at least {needed} coalitions; the budget allows "
            f"{max_coalitions}"
        )
    return kernel_shap(value, n_features, samples=max_coalitions - 2, rng=rng)


def minimum_coalitions(n_features: int) -> int:
    """The fewest coalitions ``shapley`` can work with for ``n_features``."""
    return int(min(2**n_features, 2 * n_features + 2))


def linear_attributions(
    weights: FloatArray, row: FloatArray, baseline_row: FloatArray, intercept: float
) -> Attribution:
    """Exact attributions of the linear score w.x + b against ``baseline_row``."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(row, dtype=np.float64)
    base = np.asarray(baseline_row, dtype=np.float64)
    return Attribution(
        values=w * (x - base),
        baseline=float(w @ base + intercept),
        value=float(w @ x + intercept),
        method="linear-exact",
        coalitions=0,
    )
