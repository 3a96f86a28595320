"""Why a prediction came out as it did: per-feature (or per-token) attributions.

Same authorization, routing and body as predict; the answering version's session
scores the rows, then every row gets Shapley attributions of one output (the
probability of its predicted class for a classifier, the value for a regressor)
against a baseline, which they sum to exactly: attributions = output - baseline.

- Linear graphs (``linear_form.py``: a scaler and a linear regressor/classifier, as
  skl2onnx writes them): exact closed form on the score (the logit of a logistic
  regression), against the reference data's mean row. No extra model calls.
- Any other table model: interventional Shapley values against a background sample
  of the version's reference data, exact over all coalitions while they fit the
  budget, KernelSHAP on as many as fit otherwise (``attributions.py``).
- Text models (one string input): the tokens are the features; a coalition keeps
  its tokens and drops the others; the baseline is the empty text.

The budget: at most ``PHOENIX_EXPLAIN_MAX_ROWS`` rows per request (413 beyond) and
``PHOENIX_EXPLAIN_MAX_EVALUATIONS`` model rows in all (coalitions x background rows
x explained rows); when the fewest coalitions a method needs do not fit, 422.
Explanations are not predictions: no prediction event is logged for them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from phoenix.exceptions import InvalidInput, TooLarge, Unprocessable

from .. import attributions, metrics
from ..auth import api_key_authorize
from ..request_ids import request_id_new
from ..runtime import LoadedModel
from ..selectors import ApiKeyPrincipal, ServedVersion
from ..session_cache import session_cache
from . import tables
from .linear_form import LinearForm, linear_form_read
from .outputs import outputs_read
from .service import _API_ERRORS, _layout, _route, _with_store_features

_NOT_LINEAR = object()
_linear_forms: dict[str, Any] = {}
_backgrounds: dict[str, np.ndarray] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class RowExplanation:
    row: int
    prediction: Any
    explained: str  # which output the attributions explain
    baseline: float
    value: float
    attributions: dict[str, float]  # feature (or token) -> attribution
    method: str
    coalitions: int


@dataclass(frozen=True)
class Explanation:
    request_id: str
    model: str
    version: str
    routed_by: str
    rows: list[RowExplanation]
    background_rows: int


def explanation_create(
    *,
    principal: ApiKeyPrincipal,
    model_name: str,
    features: Any = None,
    entity_id: str | None = None,
    version: str | None = None,
    request_id: str | None = None,
) -> Explanation:
    """Attributions for each row of a predict body (named features, rows, an entity;
    for a text model the text). Raises what predict raises, plus TooLarge past the row
    limit and Unprocessable when the version has no reference data or the budget
    cannot fit the method."""
    request_id = request_id or request_id_new()
    api_key_authorize(principal=principal, model_name=model_name)
    served, routed_by, _ = _route(
        model_name=model_name, version=version, entity_id=entity_id, request_id=request_id
    )
    model = session_cache.session_for(served)
    layout = None if _takes_text(model) else _layout(served, model)
    if layout is not None:
        body = features
        if entity_id is not None and (body is None or isinstance(body, dict)):
            body = _with_store_features(body, entity_id, layout.feature_names)
        rows, background = _table_rows(served, layout, body), _background(served)
        explained = _explain_table(served, model, layout, rows, background)
        background_rows = len(background)
    else:
        explained, background_rows = _explain_text(served, model, features), 0
    for row in explained:
        metrics.explanation_observed(
            model=served.model_name, version=served.version, method=row.method
        )
    return Explanation(
        request_id=request_id,
        model=served.model_name,
        version=served.version,
        routed_by=routed_by,
        rows=explained,
        background_rows=background_rows,
    )


# --- tables ---------------------------------------------------------------------------


def _table_rows(served: ServedVersion, layout: tables.Layout, body: Any) -> np.ndarray:
    if body is None:
        raise InvalidInput(
            "Send 'features' or an 'entity_id' whose features are in the feature store.",
            details={"features": "required"},
        )
    try:
        matrix, _ = tables.table(
            body, layout.feature_names, max_rows=settings.PHOENIX_EXPLAIN_MAX_ROWS
        )
    except tables.TableError as error:
        raise _API_ERRORS[type(error)](error.message, details=error.details) from error
    return matrix


def _background(served: ServedVersion) -> np.ndarray:
    """A seeded sample of the version's reference rows (cached per file)."""
    with _cache_lock:
        cached = _backgrounds.get(served.sha256)
    if cached is not None:
        return cached
    from models_registry.exceptions import InvalidReferenceData
    from models_registry.selectors import model_version_get, reference_data_load

    try:
        reference, names = reference_data_load(
            version=model_version_get(model_name=served.model_name, version=served.version)
        )
    except InvalidReferenceData as exc:
        raise Unprocessable(
            f"{served.label} has no reference data to explain against; attach some first.",
            details={"model": served.model_name, "version": served.version},
        ) from exc
    order = [names.index(n) for n in served.feature_names] if served.feature_names else None
    reference = reference[:, order] if order is not None else reference
    wanted = settings.PHOENIX_EXPLAIN_BACKGROUND_ROWS
    if len(reference) > wanted:
        picks = np.random.default_rng(0).choice(len(reference), size=wanted, replace=False)
        reference = reference[np.sort(picks)]
    with _cache_lock:
        _backgrounds[served.sha256] = reference
    return reference


def _linear(served: ServedVersion) -> LinearForm | None:
    with _cache_lock:
        form = _linear_forms.get(served.sha256)
    if form is None:
        form = linear_form_read(served.path) or _NOT_LINEAR
        with _cache_lock:
            _linear_forms[served.sha256] = form
    return form if isinstance(form, LinearForm) else None


def _explain_table(
    served: ServedVersion,
    model: LoadedModel,
    layout: tables.Layout,
    rows: np.ndarray,
    background: np.ndarray,
) -> list[RowExplanation]:
    def run(matrix: np.ndarray) -> tuple[list[Any], np.ndarray | None]:
        predictions, probabilities, _ = outputs_read(
            model.output_names, model.run(tables.feeds(layout, matrix))
        )
        return predictions, None if probabilities is None else np.asarray(probabilities)

    predictions, probabilities = run(rows)
    names = list(layout.feature_names)
    linear = _linear(served) if layout.mode == "matrix" else None
    if linear is not None:
        baseline_row = background.mean(axis=0)
        return [
            _row(i, predictions[i], _linear_label(linear, predictions[i]), names, result)
            for i in range(len(rows))
            for result in [
                attributions.linear_attributions(
                    linear.weights[linear.row_for(predictions[i])],
                    rows[i],
                    baseline_row,
                    float(linear.intercepts[linear.row_for(predictions[i])]),
                )
            ]
        ]
    coalitions = _coalition_budget(len(names), len(rows) * len(background))
    explained: list[RowExplanation] = []
    for i, row in enumerate(rows):
        column = _class_column(probabilities, i)

        def value(masks: np.ndarray, row: np.ndarray = row, column: int | None = column) -> Any:
            mixed = np.where(masks[:, None, :], row, background[None, :, :])
            labels, probs = run(mixed.reshape(-1, row.shape[0]))
            if column is not None and probs is not None:
                scores = probs[:, column]
            else:
                scores = np.asarray(labels, dtype=np.float64)
            return scores.reshape(len(masks), len(background)).mean(axis=1)

        result = attributions.shapley(
            value, len(names), max_coalitions=coalitions, rng=np.random.default_rng(i)
        )
        what = "value" if column is None else f"probability of class {predictions[i]!r}"
        explained.append(_row(i, predictions[i], what, names, result))
    return explained


def _class_column(probabilities: np.ndarray | None, row: int) -> int | None:
    """The probabilities column of the row's predicted class (its most likely one)."""
    if probabilities is None:
        return None
    return int(np.argmax(probabilities[row]))


def _linear_label(linear: LinearForm, prediction: Any) -> str:
    if not linear.classes:
        return "value"
    transform = (
        f" (before the {linear.post_transform.lower()})" if linear.post_transform != "NONE" else ""
    )
    return f"score of class {prediction!r}{transform}"


def _coalition_budget(n_features: int, evaluations_per_coalition: int) -> int:
    budget = settings.PHOENIX_EXPLAIN_MAX_EVALUATIONS // max(evaluations_per_coalition, 1)
    needed = attributions.minimum_coalitions(n_features)
    if budget < needed:
        raise Unprocessable(
            f"Explaining this request needs at least {needed * evaluations_per_coalition} "
            f"model evaluations; the limit is {settings.PHOENIX_EXPLAIN_MAX_EVALUATIONS}. "
            "Send fewer rows.",
            details={
                "needed_evaluations": needed * evaluations_per_coalition,
                "limit": settings.PHOENIX_EXPLAIN_MAX_EVALUATIONS,
            },
        )
    return budget


def _row(
    index: int, prediction: Any, explained: str, names: list[str], result: attributions.Attribution
) -> RowExplanation:
    return RowExplanation(
        row=index,
        prediction=prediction,
        explained=explained,
        baseline=result.baseline,
        value=result.value,
        attributions={name: float(v) for name, v in zip(names, result.values, strict=True)},
        method=result.method,
        coalitions=result.coalitions,
    )


# --- text -----------------------------------------------------------------------------


def _takes_text(model: LoadedModel) -> bool:
    return len(model.inputs) == 1 and model.inputs[0].dtype == "string"


def _texts(model: LoadedModel, features: Any) -> list[str]:
    spec = model.inputs[0]
    if not _takes_text(model):
        raise Unprocessable(
            "This model takes neither a table of named features nor one text input; "
            "explanations need one of the two.",
            details={"inputs": [s.name for s in model.inputs]},
        )
    value = features.get(spec.name) if isinstance(features, dict) else features
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidInput(
            f'Send the text as \'features\': {{"{spec.name}": "..."}} (or a list of texts).',
            details={"features": "text required"},
        )
    if len(texts) > settings.PHOENIX_EXPLAIN_MAX_ROWS:
        raise TooLarge(
            f"At most {settings.PHOENIX_EXPLAIN_MAX_ROWS} texts per explanation.",
            details={"limit": settings.PHOENIX_EXPLAIN_MAX_ROWS, "rows": len(texts)},
        )
    return texts


def _explain_text(served: ServedVersion, model: LoadedModel, features: Any) -> list[RowExplanation]:
    texts = _texts(model, features)
    name = model.inputs[0].name
    column_shape = len(model.inputs[0].shape) == 2

    def run(batch: list[str]) -> tuple[list[Any], np.ndarray | None]:
        array = np.array(batch, dtype=object)
        feeds = {name: array.reshape(-1, 1) if column_shape else array}
        predictions, probabilities, _ = outputs_read(model.output_names, model.run(feeds))
        return predictions, None if probabilities is None else np.asarray(probabilities)

    predictions, probabilities = run(texts)
    explained = []
    for i, text in enumerate(texts):
        tokens = text.split()
        if not tokens:
            raise Unprocessable("An empty text has nothing to explain.", details={"row": i})
        column = _class_column(probabilities, i)
        coalitions = _coalition_budget(len(tokens), len(texts))

        def value(
            masks: np.ndarray, tokens: list[str] = tokens, column: int | None = column
        ) -> Any:
            batch = [
                " ".join(t for t, keep in zip(tokens, mask, strict=True) if keep) for mask in masks
            ]
            labels, probs = run(batch)
            if column is not None and probs is not None:
                return probs[:, column]
            return np.asarray(labels, dtype=np.float64)

        result = attributions.shapley(
            value, len(tokens), max_coalitions=coalitions, rng=np.random.default_rng(i)
        )
        what = "value" if column is None else f"probability of class {predictions[i]!r}"
        # Tokens may repeat: each keeps its own attribution, named by position.
        names = [f"{position}:{token}" for position, token in enumerate(tokens)]
        explained.append(_row(i, predictions[i], what, names, result))
    return explained


def explanation_cache_clear() -> None:
    """Forget cached backgrounds and linear forms (tests; a changed reference file has a
    new version, so nothing goes stale in production)."""
    with _cache_lock:
        _backgrounds.clear()
        _linear_forms.clear()
