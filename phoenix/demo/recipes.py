"""Retraining recipes of the demo models (credit risk, house prices, support tickets).

Recent logged rows with ground truth show the population as it is now; the original
(synthetic) training table keeps the model from forgetting the rest. The recent rows
are repeated until they weigh as much as the original ones, a quarter of them is held
out to judge the new model on the population it will serve, and the converted ONNX
model (what will actually be served) is the one evaluated. Each recipe trains its
demo's challenger algorithm and is registered by dotted path (``catalog.RECIPES``), so
this module and scikit-learn are imported only where a retraining runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitoring.services.retraining import RetrainingResult
from phoenix.demo.catalog import CREDIT_RISK_RECIPE as CREDIT_RISK_RECIPE

ORIGINAL_ROWS = 8_000
# Below this many labelled rows a quarter of them says little: hold out original rows.
MIN_RECENT_FOR_HOLDOUT = 400
# With this many recent rows they become the new reference: the population served now.
MIN_RECENT_FOR_REFERENCE = 200
REFERENCE_ROWS = 5_000
DEFAULT_SEED = 42


@dataclass(frozen=True)
class _Demo:
    """What a recipe needs of one demo: its original table, how to train, convert and
    evaluate its challenger, and how to read logged labels."""

    name: str
    algorithm: str
    original: Callable[[int, int], tuple[np.ndarray, np.ndarray, list[str]]]
    train: Callable[[np.ndarray, np.ndarray, int], Any]
    convert: Callable[[Any, list[str]], bytes]
    evaluate: Callable[[bytes, np.ndarray, np.ndarray], dict[str, float]]
    labels: Callable[[np.ndarray], np.ndarray]


def _retrain(
    demo: _Demo,
    *,
    X: np.ndarray,
    y: np.ndarray,
    model_name: str,
    feature_names: list[str],
    seed: int,
) -> RetrainingResult:
    rng = np.random.default_rng(seed)
    original_X, original_y, original_names = demo.original(ORIGINAL_ROWS, seed)
    missing = [name for name in feature_names if name not in original_names]
    if missing:
        raise ValueError(f"The {demo.name} recipe does not know the features {missing}.")
    original_X = original_X[:, [original_names.index(name) for name in feature_names]]
    recent_X = np.asarray(X).reshape(-1, len(feature_names))
    recent_y = demo.labels(y)

    order = rng.permutation(len(recent_y))
    if len(recent_y) >= MIN_RECENT_FOR_HOLDOUT:
        cut = len(order) // 4
        hold, train = order[:cut], order[cut:]
        holdout_X, holdout_y = recent_X[hold], recent_y[hold]
        recent_X, recent_y = recent_X[train], recent_y[train]
        original_train_X, original_train_y = original_X, original_y
        holdout_source = "recent"
    else:
        cut = len(original_y) // 5
        holdout_X, holdout_y = original_X[:cut], original_y[:cut]
        original_train_X, original_train_y = original_X[cut:], original_y[cut:]
        holdout_source = "original"

    if len(recent_y):
        repeats = max(1, len(original_train_y) // len(recent_y))
        train_X = np.concatenate([original_train_X, np.repeat(recent_X, repeats, axis=0)])
        train_y = np.concatenate([original_train_y, np.repeat(recent_y, repeats)])
    else:
        train_X, train_y = original_train_X, original_train_y

    estimator = demo.train(train_X, train_y, seed)
    model_bytes = demo.convert(estimator, feature_names)
    metrics: dict[str, Any] = demo.evaluate(model_bytes, holdout_X, holdout_y)
    metrics["labelled_rows"] = float(len(X))
    metrics["training_rows"] = float(len(train_y))

    # The new reference is the population the model is meant to serve now.
    if len(recent_y) >= MIN_RECENT_FOR_REFERENCE:
        reference = recent_X[:REFERENCE_ROWS]
    else:
        reference = train_X[rng.permutation(len(train_y))[:REFERENCE_ROWS]]
    return RetrainingResult(
        model_bytes=model_bytes,
        metrics=metrics,
        reference=reference,
        tags={"algorithm": demo.algorithm, "holdout": holdout_source, "demo": "true"},
        description=(
            f"{model_name} retrained on {len(original_train_y)} original and "
            f"{len(recent_y)} recent labelled rows; holdout from {holdout_source} rows."
        ),
    )


# --- credit risk: gradient-boosted classifier on 0/1 labels ----------------------------


def _credit_risk() -> _Demo:
    from phoenix.demo import credit_risk

    return _Demo(
        name="credit-risk",
        algorithm="gradient_boosting",
        original=lambda n, seed: credit_risk.generate_customers(n=n, seed=seed),
        train=lambda X, y, seed: credit_risk.train_challenger(X, y, seed=seed),
        convert=credit_risk.to_onnx_bytes,
        evaluate=credit_risk.evaluate_onnx,
        labels=_binary_labels,
    )


def _binary_labels(y: np.ndarray) -> np.ndarray:
    values = np.asarray(y).reshape(-1)
    try:
        labels = np.array([int(float(v)) for v in values], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Credit-risk labels must be 0 or 1: {exc}") from exc
    if labels.size and not np.isin(labels, [0, 1]).all():
        raise ValueError("Credit-risk labels must be 0 or 1.")
    return labels


def retrain(
    *,
    X: np.ndarray,
    y: np.ndarray,
    model_name: str,
    feature_names: list[str],
    seed: int = DEFAULT_SEED,
) -> RetrainingResult:
    """Credit risk: a gradient-boosting challenger on original + recent labelled rows.

    Raises ValueError when a label is not 0/1 or a feature is unknown to the demo.
    """
    return _retrain(
        _credit_risk(), X=X, y=y, model_name=model_name, feature_names=feature_names, seed=seed
    )


# --- house prices: gradient-boosted regressor on prices ---------------------------------


def _house_prices() -> _Demo:
    from phoenix.demo import house_prices

    return _Demo(
        name="house-prices",
        algorithm="gradient_boosting",
        original=lambda n, seed: house_prices.generate_houses(n=n, seed=seed),
        train=lambda X, y, seed: house_prices.train_challenger(X, y, seed=seed),
        convert=house_prices.to_onnx_bytes,
        evaluate=house_prices.evaluate_onnx,
        labels=_prices,
    )


def _prices(y: np.ndarray) -> np.ndarray:
    try:
        prices = np.array([float(v) for v in np.asarray(y).reshape(-1)], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"House-price labels must be numbers: {exc}") from exc
    if prices.size and not np.isfinite(prices).all():
        raise ValueError("House-price labels must be finite numbers.")
    return prices


def retrain_house_prices(
    *,
    X: np.ndarray,
    y: np.ndarray,
    model_name: str,
    feature_names: list[str],
    seed: int = DEFAULT_SEED,
) -> RetrainingResult:
    """House prices: a gradient-boosting regressor on original + recent labelled rows.

    Raises ValueError when a label is not a number or a feature is unknown to the demo.
    """
    return _retrain(
        _house_prices(), X=X, y=y, model_name=model_name, feature_names=feature_names, seed=seed
    )


# --- support tickets: tf-idf + logistic regression on team names -------------------------


def _support_tickets() -> _Demo:
    from phoenix.demo import support_tickets

    def original(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        texts, labels, names = support_tickets.generate_tickets(n=n, seed=seed)
        return _texts(texts), np.asarray(labels, dtype=object), names

    def evaluate(model_bytes: bytes, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        return support_tickets.evaluate_onnx(model_bytes, X[:, 0].tolist(), y.tolist())

    return _Demo(
        name="support-tickets",
        algorithm="tfidf_bigrams_logistic_regression",
        original=original,
        train=lambda X, y, seed: support_tickets.train_challenger(
            X[:, 0].tolist(), y.tolist(), seed=seed
        ),
        convert=support_tickets.to_onnx_bytes,
        evaluate=evaluate,
        labels=_teams,
    )


def _texts(texts: list[str]) -> np.ndarray:
    column = np.empty((len(texts), 1), dtype=object)
    column[:, 0] = texts
    return column


def _teams(y: np.ndarray) -> np.ndarray:
    from phoenix.demo.support_tickets import CLASSES

    labels = np.array([str(v) for v in np.asarray(y).reshape(-1)], dtype=object)
    unknown = sorted(set(labels.tolist()) - set(CLASSES))
    if unknown:
        raise ValueError(f"Support-ticket labels must be one of {CLASSES}, not {unknown}.")
    return labels


def retrain_support_tickets(
    *,
    X: np.ndarray,
    y: np.ndarray,
    model_name: str,
    feature_names: list[str],
    seed: int = DEFAULT_SEED,
) -> RetrainingResult:
    """Support tickets: tf-idf (words and pairs) + logistic regression on original +
    recent labelled texts. Raises ValueError for an unknown team or feature."""
    return _retrain(
        _support_tickets(), X=X, y=y, model_name=model_name, feature_names=feature_names, seed=seed
    )
