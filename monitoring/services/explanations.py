"""Why a logged prediction came out as it did: the model page's explanation panel.

The panel picks a row of the prediction log; this service explains it with the same
service as ``POST /api/v1/models/{name}/explain`` (``inference.prediction.explanations``),
pinned to the version that made the prediction and fed the features it logged, so the
answer is the one a client would get for that row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.prediction.explanations import explanation_create
from inference.selectors import ApiKeyPrincipal
from monitoring.models import PredictionLog
from phoenix.exceptions import NotFound, Unprocessable

# What the panel promises: the attributions add up to value - baseline within this
# (float64 sums of float32 model outputs; the explain service keeps additivity exact).
ADDITIVITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LoggedExplanation:
    row_id: int
    request_id: str
    model: str
    version: str
    logged_prediction: Any
    actual: Any
    prediction: Any
    explained: str
    baseline: float
    value: float
    attributions: list[tuple[str, float]]  # largest magnitude first
    method: str
    coalitions: int
    tolerance: float = ADDITIVITY_TOLERANCE


def _dashboard_principal(user: Any) -> ApiKeyPrincipal:
    """The signed-in person as the explain service's caller: the dashboards' access rule
    (checked by the view) already decided they may see every model, so no key scope
    narrows it. Never an API key: nothing is stored and it authenticates nothing."""
    username = getattr(user, "get_username", lambda: "")()
    return ApiKeyPrincipal(
        id=0, name=f"dashboard:{username}", prefix="session", allowed_models=None
    )


def _body(features: Any) -> Any:
    # A row logged as a list of values in signature order is one row, not a batch.
    if isinstance(features, list) and features and not isinstance(features[0], list | dict):
        return [features]
    return features


def prediction_log_explain(*, model_name: str, row_id: int, user: Any) -> LoggedExplanation:
    """Attributions for one logged row of ``model_name``, from the version that scored it.

    Raises NotFound (no such row of that model), Unprocessable (nothing logged to
    explain) and what the explain service raises: ModelVersionNotFound, VersionNotPinnable
    (the version left the stages that may be pinned), Unprocessable (no reference data).
    """
    row = PredictionLog.objects.filter(pk=row_id, model_name=model_name).first()
    if row is None:
        raise NotFound(f"No logged prediction {row_id} of {model_name!r}.")
    if row.features in (None, {}, []):
        raise Unprocessable("This prediction was logged without its features.")
    explanation = explanation_create(
        principal=_dashboard_principal(user),
        model_name=model_name,
        features=_body(row.features),
        version=row.version,
    )
    explained = explanation.rows[0]
    ranked = sorted(explained.attributions.items(), key=lambda item: -abs(item[1]))
    return LoggedExplanation(
        row_id=row.pk,
        request_id=row.request_id,
        model=explanation.model,
        version=explanation.version,
        logged_prediction=row.prediction,
        actual=row.actual,
        prediction=explained.prediction,
        explained=explained.explained,
        baseline=explained.baseline,
        value=explained.value,
        attributions=ranked,
        method=explained.method,
        coalitions=explained.coalitions,
    )
