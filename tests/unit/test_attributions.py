"""Shapley attributions: the exact formula against hand-computed cases, KernelSHAP
against the exact values, efficiency (additivity) for every method, the budget rule."""

from __future__ import annotations

import numpy as np
import pytest

from inference.attributions import (
    all_coalitions,
    kernel_shap,
    linear_attributions,
    minimum_coalitions,
    shapley,
    shapley_exact,
)


def tabular_value(model, row, background):
    """Interventional value function: masked-out features from each background row."""

    def value(masks):
        masks = np.asarray(masks)
        out = []
        for mask in masks:
            mixed = np.where(mask, row, background)
            out.append(model(mixed).mean())
        return np.array(out)

    return value


def test_all_coalitions_enumerates_every_subset_once() -> None:
    coalitions = all_coalitions(3)
    assert coalitions.shape == (8, 3)
    assert len({tuple(c) for c in coalitions}) == 8
    assert not coalitions[0].any()
    assert coalitions[-1].all()


def test_exact_shapley_of_a_linear_model_is_weight_times_difference() -> None:
    w = np.array([2.0, -1.0, 0.5])
    row = np.array([1.0, 3.0, -2.0])
    background = np.array([[0.0, 1.0, 0.0], [2.0, 1.0, 2.0]])
    value = tabular_value(lambda x: x @ w + 4.0, row, background)

    result = shapley_exact(value, 3)

    expected = w * (row - background.mean(axis=0))
    assert result.values == pytest.approx(expected)
    assert result.baseline == pytest.approx(float((background @ w + 4.0).mean()))
    assert result.method == "shapley-exact"
    assert result.coalitions == 8


def test_exact_shapley_splits_an_interaction_evenly() -> None:
    # f = x1 * x2 against a zero background: v(S) = x1*x2 only when both are in S.
    row, background = np.array([3.0, 4.0]), np.zeros((1, 2))
    value = tabular_value(lambda x: x[..., 0] * x[..., 1], row, background)

    result = shapley_exact(value, 2)

    assert result.values == pytest.approx([6.0, 6.0])
    assert result.value == pytest.approx(12.0)
    assert result.baseline == pytest.approx(0.0)


def test_a_feature_the_model_ignores_gets_nothing() -> None:
    row, background = np.array([1.0, 5.0, -1.0]), np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    value = tabular_value(lambda x: np.tanh(x[..., 0] - x[..., 2]), row, background)

    result = shapley_exact(value, 3)

    assert result.values[1] == pytest.approx(0.0, abs=1e-12)


def _nonlinear(n: int, seed: int):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=n)
    pairs = rng.normal(size=(n, n)) * 0.3
    row = rng.normal(size=n)
    background = rng.normal(size=(20, n))
    model = lambda x: 1 / (1 + np.exp(-(x @ w + np.einsum("...i,ij,...j->...", x, pairs, x))))  # noqa: E731
    return tabular_value(model, row, background)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_method_is_additive(seed: int) -> None:
    value = _nonlinear(7, seed)
    exact = shapley_exact(value, 7)
    sampled = kernel_shap(value, 7, samples=40, rng=np.random.default_rng(seed))

    assert exact.additivity_error < 1e-9
    assert sampled.additivity_error < 1e-9
    assert sampled.baseline == pytest.approx(exact.baseline)
    assert sampled.value == pytest.approx(exact.value)


def test_kernel_shap_converges_to_the_exact_values() -> None:
    value = _nonlinear(8, 5)
    exact = shapley_exact(value, 8).values
    scale = np.abs(exact).max()

    errors = [
        np.abs(kernel_shap(value, 8, samples=n, rng=np.random.default_rng(11)).values - exact).max()
        for n in (64, 4096)
    ]

    assert errors[1] < 0.05 * scale
    assert errors[1] < errors[0]


def test_budget_picks_exact_then_sampling_then_refuses() -> None:
    value = _nonlinear(6, 3)
    rng = np.random.default_rng(0)

    assert shapley(value, 6, max_coalitions=64, rng=rng).method == "shapley-exact"
    sampled = shapley(value, 6, max_coalitions=30, rng=rng)
    assert sampled.method == "kernel-shap"
    assert sampled.coalitions <= 30
    assert minimum_coalitions(6) == 14
    with pytest.raises(ValueError, match="at least 14 coalitions"):
        shapley(value, 6, max_coalitions=13, rng=rng)


def test_linear_attributions_in_closed_form() -> None:
    result = linear_attributions(
        np.array([1.5, -2.0]), np.array([2.0, 1.0]), np.array([1.0, 0.0]), intercept=0.5
    )

    assert result.values == pytest.approx([1.5, -2.0])
    assert result.value == pytest.approx(1.5 * 2 - 2.0 + 0.5)
    assert result.baseline == pytest.approx(1.5 + 0.5)
    assert result.additivity_error == pytest.approx(0.0)


def test_value_function_answering_the_wrong_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="answered 3 values for 4"):
        shapley_exact(lambda masks: np.zeros(3), 2)
