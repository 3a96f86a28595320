"""POST /api/v1/models/{name}/explain: attributions that add up, exact for linear
graphs, Shapley for any other, per token for text; the budget and the errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from rest_framework.test import APIClient

from inference import api_keys
from tests.inference_support import (
    FEATURES,
    TEXTS,
    onnx_classifier,
    onnx_regressor,
    onnx_text_classifier,
)

pytestmark = pytest.mark.usefixtures("fresh_inference_state")

ROWS = [[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]]
ROW = dict(zip(FEATURES, ROWS[0], strict=True))
REFERENCE = np.random.default_rng(4).normal(size=(200, 3))


def _csv(matrix: np.ndarray) -> io.BytesIO:
    lines = [",".join(FEATURES)] + [",".join(f"{v:.6f}" for v in row) for row in matrix]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def _register(name: str, path: Path, *, reference: bool = True) -> Any:
    from models_registry.services import model_version_register

    return model_version_register(
        model_name=name,
        file=path,
        stage="production",
        reference=_csv(REFERENCE) if reference else None,
        reference_filename="reference.csv" if reference else None,
    )


@pytest.fixture
def api(db: None) -> APIClient:
    client = APIClient()
    key = api_keys.api_key_create(name="x", all_models=True)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def explain(client: APIClient, model: str, body: Any) -> Any:
    return client.post(f"/api/v1/models/{model}/explain", body, format="json")


def _gradient_boosting(path: Path) -> Path:
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(9)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 0.5)).astype(np.int64)
    clf = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(x, y)
    model = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    meta = model.metadata_props.add()
    meta.key, meta.value = "feature_names", ",".join(FEATURES)
    path.write_bytes(model.SerializeToString())
    return path


def _probabilities(path: Path, rows: Any) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"X": np.asarray(rows, dtype=np.float32)})[1])


def _additive(row: dict[str, Any]) -> None:
    assert sum(row["attributions"].values()) == pytest.approx(
        row["value"] - row["baseline"], abs=1e-6
    )


def test_logistic_regression_is_explained_exactly_on_its_logit(
    api: APIClient, tmp_path: Path
) -> None:
    path = onnx_classifier(tmp_path / "lr.onnx")
    _register("credit", path)

    answer = explain(api, "credit", {"features": ROWS})

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["background_rows"] == 32
    probabilities = _probabilities(path, ROWS)
    for row, probs in zip(body["explanations"], probabilities, strict=True):
        assert row["method"] == "linear-exact"
        assert row["coalitions"] == 0
        assert row["explained"].startswith(f"score of class {row['prediction']}")
        _additive(row)
        # The score read from the graph is the logit of the predicted class's probability.
        assert 1 / (1 + np.exp(-row["value"])) == pytest.approx(probs[row["prediction"]], abs=1e-5)
        assert set(row["attributions"]) == set(FEATURES)


def test_linear_regression_is_explained_exactly_on_its_value(
    api: APIClient, tmp_path: Path
) -> None:
    _register("prices", onnx_regressor(tmp_path / "reg.onnx"))

    body = explain(api, "prices", {"features": ROW}).json()

    row = body["explanations"][0]
    assert row["method"] == "linear-exact"
    assert row["value"] == pytest.approx(row["prediction"], abs=1e-4)
    # y = x1 + 2 x2 - x3 + 0.5: attribution of x2 is 2 * (x2 - its reference mean).
    mean = REFERENCE[np.sort(np.random.default_rng(0).choice(200, 32, replace=False))].mean(axis=0)
    assert row["attributions"]["x2"] == pytest.approx(2.0 * (ROWS[0][1] - mean[1]), abs=1e-4)
    _additive(row)


def test_any_other_model_gets_exact_shapley_values_that_add_up(
    api: APIClient, tmp_path: Path
) -> None:
    path = _gradient_boosting(tmp_path / "gb.onnx")
    _register("credit", path)

    body = explain(
        api, "credit", {"features": [dict(zip(FEATURES, r, strict=True)) for r in ROWS]}
    ).json()

    probabilities = _probabilities(path, ROWS)
    for row, probs in zip(body["explanations"], probabilities, strict=True):
        assert row["method"] == "shapley-exact"
        assert row["coalitions"] == 8  # 2**3
        assert row["explained"] == f"probability of class {row['prediction']}"
        assert row["value"] == pytest.approx(float(probs.max()), abs=1e-6)
        _additive(row)


def test_past_the_exact_budget_kernel_shap_still_adds_up(
    api: APIClient, tmp_path: Path, settings: Any
) -> None:
    from models_registry.services import model_version_register

    model_version_register(
        model_name="tickets", file=onnx_text_classifier(tmp_path / "t.onnx"), stage="production"
    )
    settings.PHOENIX_EXPLAIN_MAX_EVALUATIONS = 20  # 6 tokens: 64 exact, 14 at least

    answer = explain(api, "tickets", {"features": {"text": "my card was charged twice today"}})

    assert answer.status_code == 200, answer.content
    row = answer.json()["explanations"][0]
    assert row["method"] == "kernel-shap"
    assert row["coalitions"] <= 20
    _additive(row)


def test_text_is_explained_per_token(api: APIClient, tmp_path: Path) -> None:
    from models_registry.services import model_version_register

    path = onnx_text_classifier(tmp_path / "text.onnx")
    model_version_register(model_name="tickets", file=path, stage="production")
    text = "card was charged twice"

    answer = explain(api, "tickets", {"features": {"text": text}})

    assert answer.status_code == 200, answer.content
    row = answer.json()["explanations"][0]
    assert list(row["attributions"]) == ["0:card", "1:was", "2:charged", "3:twice"]
    assert row["method"] == "shapley-exact"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"text": np.array([[text], [""]], dtype=object)})[1]
    assert row["value"] == pytest.approx(float(probs[0].max()), abs=1e-6)
    assert row["baseline"] == pytest.approx(float(probs[1][int(np.argmax(probs[0]))]), abs=1e-6)
    _additive(row)
    assert TEXTS  # the training texts the model learned from


def test_without_reference_data_it_is_422(api: APIClient, tmp_path: Path) -> None:
    _register("credit", onnx_classifier(tmp_path / "lr.onnx"), reference=False)

    answer = explain(api, "credit", {"features": ROW})

    assert answer.status_code == 422
    assert "reference data" in answer.json()["error"]["message"]


def test_limits_are_413_and_422(api: APIClient, tmp_path: Path, settings: Any) -> None:
    _register("credit", _gradient_boosting(tmp_path / "gb.onnx"))
    settings.PHOENIX_EXPLAIN_MAX_ROWS = 2

    too_many = explain(api, "credit", {"features": ROWS * 2})
    settings.PHOENIX_EXPLAIN_MAX_EVALUATIONS = 10
    over_budget = explain(api, "credit", {"features": ROW})

    assert too_many.status_code == 413
    assert over_budget.status_code == 422
    assert over_budget.json()["error"]["details"]["limit"] == 10


def test_auth_and_scope_as_predict(api: APIClient, tmp_path: Path, db: None) -> None:
    _register("credit", onnx_classifier(tmp_path / "lr.onnx"))
    _register("other", onnx_classifier(tmp_path / "o.onnx", seed=3))
    scoped = APIClient()
    scoped.credentials(HTTP_X_API_KEY=api_keys.api_key_create(name="s", model_names=["credit"])[1])

    assert explain(APIClient(), "credit", {"features": ROW}).status_code == 401
    assert explain(scoped, "other", {"features": ROW}).status_code == 403
    assert explain(api, "missing", {"features": ROW}).status_code == 404
    assert explain(api, "credit", {"features": {"x1": 1.0}}).status_code == 422


def test_a_scaler_before_the_linear_model_is_folded_into_its_weights(
    api: APIClient, tmp_path: Path
) -> None:
    """As the credit-risk champion is built: StandardScaler then LogisticRegression."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(2)
    x = (rng.normal(size=(300, 3)) * [10.0, 0.1, 3.0] + [50.0, 0.0, -5.0]).astype(np.float32)
    y = (x[:, 0] / 10 - x[:, 2] / 3 > 6.5).astype(np.int64)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    model = to_onnx(pipeline, x[:1], options={id(pipeline.steps[-1][1]): {"zipmap": False}})
    meta = model.metadata_props.add()
    meta.key, meta.value = "feature_names", ",".join(FEATURES)
    (tmp_path / "p.onnx").write_bytes(model.SerializeToString())
    _register("credit", tmp_path / "p.onnx")
    rows = x[:4].astype(float).tolist()

    body = explain(api, "credit", {"features": rows}).json()

    margins = pipeline.decision_function(np.asarray(rows))
    for row, margin in zip(body["explanations"], margins, strict=True):
        assert row["method"] == "linear-exact"
        expected = margin if row["prediction"] == 1 else -margin
        assert row["value"] == pytest.approx(expected, rel=1e-4, abs=1e-4)
        _additive(row)
