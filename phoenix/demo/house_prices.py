"""The bundled regression demo: house prices from a seeded synthetic table.

No Django here (as ``credit_risk``): data, training, ONNX conversion and evaluation are
plain functions that ``train_demo_models``, the retraining recipe and the tests share.
Prices follow a non-linear rule (value per square metre that falls with distance to the
centre and rises with quality, a premium for new houses, diminishing returns on lot
size) plus log-normal noise, so the gradient-boosted challenger has something to find
that the linear champion cannot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

MODEL_NAME = "house-prices"
FEATURE_NAMES = [
    "living_area_m2",
    "lot_area_m2",
    "bedrooms",
    "age_years",
    "distance_km",
    "quality",
]
TARGET_OPSET = 17
DEFAULT_SEED = 42

FloatArray = NDArray[np.float64]


def generate_houses(
    *, n: int, seed: int = DEFAULT_SEED, shift: dict[str, float] | None = None
) -> tuple[FloatArray, FloatArray, list[str]]:
    """Draw ``n`` houses and their sale prices (in thousands).

    ``shift`` moves a feature's mean by that many of its standard deviations; prices
    still follow the same rule. Returns (X in FEATURE_NAMES order, prices, FEATURE_NAMES).
    """
    rng = np.random.default_rng(seed)
    living = np.clip(rng.lognormal(mean=np.log(110), sigma=0.35, size=n), 25, 600)
    lot = living * rng.uniform(1.2, 6.0, size=n)
    bedrooms = np.clip(np.round(living / 35 + rng.normal(0, 0.7, size=n)), 1, 8)
    age = np.clip(rng.gamma(shape=2.0, scale=18.0, size=n), 0, 150)
    distance = np.clip(rng.gamma(shape=2.2, scale=5.0, size=n), 0.2, 60)
    quality = rng.integers(1, 11, size=n).astype(np.float64)
    X = np.column_stack([living, lot, bedrooms, age, distance, quality]).astype(np.float64)
    for name, amount in (shift or {}).items():
        column = FEATURE_NAMES.index(name)
        X[:, column] += amount * X[:, column].std()

    per_m2 = 4.2 * np.exp(-X[:, 4] / 18.0) * (0.6 + 0.08 * X[:, 5])
    new_premium = np.where(X[:, 3] < 5, 1.12, 1.0) * np.exp(-np.maximum(X[:, 3], 0) / 200.0)
    price = (
        X[:, 0] * per_m2 * new_premium + 40 * np.log1p(np.maximum(X[:, 1], 0) / 100.0) + 6 * X[:, 2]
    )
    price = np.maximum(price, 10.0) * rng.lognormal(mean=0.0, sigma=0.08, size=n)
    return X, price.astype(np.float64), list(FEATURE_NAMES)


def train_champion(X: FloatArray, y: FloatArray, *, seed: int = DEFAULT_SEED) -> Any:
    """A scaled ridge regression: simple, explainable, exact linear attributions."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("reg", Ridge(alpha=1.0))]).fit(X, y)


def train_challenger(X: FloatArray, y: FloatArray, *, seed: int = DEFAULT_SEED) -> Any:
    """Gradient-boosted trees, which capture the distance x quality interaction."""
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(
        n_estimators=120, max_depth=3, learning_rate=0.1, random_state=seed
    ).fit(X, y)


def to_onnx_bytes(estimator: Any, feature_names: list[str]) -> bytes:
    """One float input [N, features], one output ``variable`` [N, 1]; feature order in
    the metadata."""
    from skl2onnx import to_onnx

    sample = np.zeros((1, len(feature_names)), dtype=np.float32)
    model = to_onnx(estimator, sample, target_opset=TARGET_OPSET)
    for key, value in (("feature_names", ",".join(feature_names)), ("phoenix_demo", MODEL_NAME)):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return bytes(model.SerializeToString())


def evaluate_onnx(model_bytes: bytes, X: FloatArray, y: FloatArray) -> dict[str, float]:
    """Holdout metrics of the converted model, run by onnxruntime: what will be served."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (predicted,) = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    return regression_metrics(np.asarray(predicted, dtype=np.float64).reshape(-1), y)


def regression_metrics(predicted: FloatArray, y: FloatArray) -> dict[str, float]:
    """MAE, RMSE and R2 (rounded to 6 digits, as stored in the registry)."""
    errors = predicted - y
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "mae": round(float(np.mean(np.abs(errors))), 6),
        "rmse": round(float(np.sqrt(np.mean(errors**2))), 6),
        "r2": round(1.0 - float(np.sum(errors**2)) / total, 6) if total else 0.0,
        "holdout_rows": float(len(y)),
    }
