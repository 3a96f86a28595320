"""The bundled demo: a credit-risk classifier trained on a synthetic customer table.

No Django here: data generation, training, ONNX conversion and evaluation are plain
functions, so ``train_demo_models``, the retraining recipe and the tests share them.
The table is synthetic but shaped like real lending data: log-normal incomes, debt
that scales with income, credit history bounded by age, and a default probability
driven by debt-to-income, utilisation and history.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "credit-risk"
FEATURE_NAMES = [
    "income",
    "debt",
    "age",
    "credit_history_years",
    "open_accounts",
    "utilisation",
]
TARGET_OPSET = 17
DEFAULT_SEED = 42

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def generate_customers(
    *, n: int, seed: int = DEFAULT_SEED, shift: dict[str, float] | None = None
) -> tuple[FloatArray, IntArray, list[str]]:
    """Draw ``n`` customers and whether each defaulted.

    ``shift`` moves a feature's mean by that many of its standard deviations (the
    drift a monitoring demo wants to catch); the label still follows the same rule,
    so a shifted population also defaults differently, as in real life.
    Returns (X with columns in FEATURE_NAMES order, y in {0, 1}, FEATURE_NAMES).
    """
    rng = np.random.default_rng(seed)
    income = rng.lognormal(mean=np.log(52_000), sigma=0.45, size=n)
    debt_ratio = rng.beta(2.0, 5.0, size=n)
    debt = income * debt_ratio * rng.uniform(0.5, 1.5, size=n)
    age = np.clip(rng.normal(42, 12, size=n), 21, 80)
    credit_history_years = np.clip(
        np.minimum(age - 18, rng.gamma(shape=3.0, scale=4.0, size=n)), 0, None
    )
    open_accounts = rng.poisson(4, size=n).astype(np.float64)
    utilisation = rng.beta(2.0, 4.0, size=n)

    X = np.column_stack(
        [income, debt, age, credit_history_years, open_accounts, utilisation]
    ).astype(np.float64)
    for name, amount in (shift or {}).items():
        column = FEATURE_NAMES.index(name)
        X[:, column] += amount * X[:, column].std()

    dti = X[:, 1] / np.maximum(X[:, 0], 1.0)
    logit = (
        -2.2 + 3.2 * dti + 2.8 * X[:, 5] - 0.09 * X[:, 3] + 0.08 * X[:, 4] - 0.012 * (X[:, 2] - 40)
    )
    p_default = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.uniform(size=n) < p_default).astype(np.int64)
    return X, y, list(FEATURE_NAMES)


def train_champion(X: FloatArray, y: IntArray, *, seed: int = DEFAULT_SEED) -> Pipeline:
    """A scaled logistic regression: the simple, well-understood production model."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=1000, random_state=seed)),
        ]
    ).fit(X, y)


def train_challenger(
    X: FloatArray, y: IntArray, *, seed: int = DEFAULT_SEED
) -> GradientBoostingClassifier:
    """Gradient-boosted trees: the challenger that may capture the non-linear ratio."""
    return GradientBoostingClassifier(
        n_estimators=120, max_depth=3, learning_rate=0.1, random_state=seed
    ).fit(X, y)


def to_onnx_bytes(estimator: Any, feature_names: list[str]) -> bytes:
    """Convert a fitted classifier to ONNX with one float input of shape [N, features].

    The feature order is written into the graph's metadata so the registry can
    validate named features against it.
    """
    sample = np.zeros((1, len(feature_names)), dtype=np.float32)
    model = to_onnx(
        estimator,
        sample,
        options={id(estimator): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    for key, value in (
        ("feature_names", ",".join(feature_names)),
        ("phoenix_demo", MODEL_NAME),
    ):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return bytes(model.SerializeToString())


def evaluate(estimator: Any, X: FloatArray, y: IntArray) -> dict[str, float]:
    """Holdout metrics of a fitted scikit-learn classifier."""
    proba = estimator.predict_proba(X)
    return _metrics(proba, y)


def evaluate_onnx(model_bytes: bytes, X: FloatArray, y: IntArray) -> dict[str, float]:
    """Holdout metrics of the converted model, run by onnxruntime: what will be served."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    _labels, proba = session.run(None, {input_name: X.astype(np.float32)})
    return _metrics(np.asarray(proba), y)


def _metrics(proba: NDArray[Any], y: IntArray) -> dict[str, float]:
    predicted = proba.argmax(axis=1)
    return {
        "accuracy": round(float(accuracy_score(y, predicted)), 6),
        "roc_auc": round(float(roc_auc_score(y, proba[:, 1])), 6),
        "log_loss": round(float(log_loss(y, proba, labels=[0, 1])), 6),
        "holdout_rows": float(len(y)),
    }


def reference_csv(X: FloatArray, feature_names: list[str]) -> bytes:
    """Reference data as CSV with a header row, in feature order."""
    header = ",".join(feature_names)
    rows = "\n".join(",".join(f"{v:.6g}" for v in row) for row in X)
    return f"{header}\n{rows}\n".encode()
