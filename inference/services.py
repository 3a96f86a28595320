"""The one prediction service behind both adapters (REST v1 and Open Inference Protocol v2).

A warm request: authorize the key (cached), route with the cached plan, build the
input tensor from the body (or the feature store), run ONNX Runtime, hand the event
publisher one record of the request (its per-row events are built off the request
thread), count metrics. No database query and no network call unless the client
asked for an entity's features.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
from django.conf import settings

from phoenix.exceptions import (
    ApplicationError,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    TooLarge,
    Unprocessable,
    status_for,
)

from . import events, metrics, routing
from .auth import api_key_authorize
from .event_schema import PredictionRecord
from .feature_store import FeatureStatus, FeatureStoreUnavailable, feature_store
from .request_ids import request_id_new
from .runtime import LoadedModel, TensorSpec, numpy_dtype
from .selectors import (
    ApiKeyPrincipal,
    ServedVersion,
    registered_model_exists,
    served_version_get,
)
from .session_cache import session_cache

logger = logging.getLogger(__name__)

# Heavy challengers are shadow-scored here, off the request; a full queue drops
# shadow work (logged) rather than slow the champion's answers.
_shadow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="phoenix-shadow")
_shadow_pending = 0
_shadow_lock = threading.Lock()
SHADOW_MAX_PENDING = 256


@dataclass
class Prediction:
    request_id: str
    model: str
    version: str
    routed_by: str
    predictions: list[Any]
    probabilities: list[list[float]] | None
    confidence: list[float] | None
    latency_ms: float
    # Raw outputs in the model's order, for the v2 protocol.
    outputs: list[tuple[TensorSpec, np.ndarray]] = field(default_factory=list)


@dataclass(frozen=True)
class _Layout:
    """How a table of named features becomes the model's inputs."""

    feature_names: tuple[str, ...]
    # "matrix": one rows x features input; "columns": one input per feature.
    mode: str
    inputs: tuple[TensorSpec, ...]


_layouts: dict[str, _Layout | None] = {}


def _layout(served: ServedVersion, model: LoadedModel) -> _Layout | None:
    """The tabular layout of a model, or None when it takes no table (cached per sha256)."""
    if served.sha256 in _layouts:
        return _layouts[served.sha256]
    names = served.feature_names
    layout: _Layout | None = None
    if names and len(model.inputs) == 1 and len(model.inputs[0].shape) == 2:
        width = model.inputs[0].shape[1]
        if width in (None, len(names)):
            layout = _Layout(names, "matrix", tuple(model.inputs))
    elif names and len(model.inputs) == len(names):
        by_name = {spec.name: spec for spec in model.inputs}
        ordered = [by_name.get(n) for n in names]
        specs = ordered if all(ordered) else list(model.inputs)
        layout = _Layout(names, "columns", tuple(s for s in specs if s is not None))
    _layouts[served.sha256] = layout
    return layout


# --- routing ------------------------------------------------------------------------


def _unknown_or_unservable(model_name: str) -> ApplicationError:
    if registered_model_exists(name=model_name):
        return DependencyUnavailable(
            f"Model {model_name!r} has no servable version (production, champion or challenger).",
            details={"model": model_name},
        )
    return NotFound(f"No model named {model_name!r}.", details={"model": model_name})


def _route(
    *, model_name: str, version: str | None, entity_id: str | None, request_id: str
) -> tuple[ServedVersion, str, ServedVersion | None]:
    """(version that answers, routed_by, version that shadows it or None)."""
    plan = session_cache.plans().get(model_name)
    if version is not None:
        served = (plan.versions.get(version) if plan else None) or session_cache.pinned(
            model_name, version
        )
        if served is None:
            served = served_version_get(model_name=model_name, version=version)
            session_cache.remember_pinned(served)
        return served, routing.PINNED_ROUTE, None
    if plan is None or plan.champion is None:
        raise _unknown_or_unservable(model_name)
    decision = routing.decide(
        plan.policy,
        has_challenger=plan.challenger is not None,
        entity_id=entity_id,
        request_id=request_id,
    )
    if decision.arm is routing.Arm.CHALLENGER and plan.challenger is not None:
        return plan.challenger, decision.routed_by, None
    return plan.champion, decision.routed_by, plan.challenger if decision.shadow else None


# --- inputs -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    kind = type(value)
    return (kind is float or kind is int) and value == value  # NaN is not a feature value


_NUMERIC = frozenset({int, float})


def _numeric_table(rows: list[dict[str, Any]], names: Sequence[str]) -> np.ndarray | None:
    """The matrix when every row has exactly ``names``, all plain finite-or-inf numbers;
    None otherwise (the caller then finds and names what is wrong)."""
    width = len(names)
    if any(len(row) != width for row in rows):
        return None
    pick = itemgetter(*names)
    try:
        values = [pick(row) for row in rows] if width > 1 else [[row[names[0]]] for row in rows]
    except KeyError:
        return None
    return _numeric_matrix(values)


def _numeric_matrix(values: list[Any]) -> np.ndarray | None:
    """Rows of plain numbers as a float64 matrix; None if any value is of another type
    (bool, str, None...) or NaN. Type-checked in one C-level pass over the values."""
    if not set(map(type, chain.from_iterable(values))) <= _NUMERIC:
        return None
    matrix = np.array(values, dtype=np.float64)
    return None if np.isnan(matrix).any() else matrix


def _row_problems(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, list[str]]:
    if len(row) == len(names) and all(_is_number(row.get(n)) for n in names):
        return {}  # the common case, checked in one pass
    missing = [n for n in names if n not in row or row[n] is None]
    allowed = set(names)
    unexpected = [k for k in row if k not in allowed]
    non_numeric = [n for n in names if row.get(n) is not None and not _is_number(row[n])]
    return {
        k: v
        for k, v in (("missing", missing), ("unexpected", unexpected), ("non_numeric", non_numeric))
        if v
    }


def _unusable(problems: dict[str, Any], row: int | None = None) -> Unprocessable:
    parts = [
        f"{kind.replace('_', '-')}: {', '.join(map(str, names))}"
        for kind, names in problems.items()
        if kind != "feature_status"
    ]
    where = f" in row {row}" if row is not None else ""
    details = dict(problems)
    if row is not None:
        details["row"] = row
    return Unprocessable(f"Unusable features{where} ({'; '.join(parts)}).", details=details)


def _table(features: Any, names: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rows x features (float64) and the per-row feature dicts, from a request body.

    Raises InvalidInput (400) for a body of the wrong shape, TooLarge (413) past the
    row limit, Unprocessable (422) naming missing, unexpected or non-numeric features.
    """
    if isinstance(features, dict):
        rows: list[Any] = [features]
    elif isinstance(features, list):
        rows = features
    else:
        raise InvalidInput(
            "'features' must be an object of named features, a list of such objects, "
            "or a list of rows in the model's feature order.",
            details={"features": "wrong type"},
        )
    if not rows:
        raise InvalidInput("'features' has no rows.", details={"features": "empty"})
    limit = settings.PHOENIX_PREDICT_MAX_ROWS
    if len(rows) > limit:
        raise TooLarge(
            f"{len(rows)} rows is more than the limit of {limit} per request.",
            details={"rows": len(rows), "limit": limit},
        )
    width = len(names)
    if all(isinstance(r, dict) for r in rows):
        fast = _numeric_table(rows, names)
        if fast is not None:
            # Each row holds exactly the model's features: it is its own event record.
            return fast, rows
        for i, row in enumerate(rows):
            problems = _row_problems(row, names)
            if problems:
                raise _unusable(problems, i if len(rows) > 1 else None)
        raise InvalidInput("'features' could not be read.", details={})
    if all(isinstance(r, list) for r in rows):
        if all(len(row) == width for row in rows):
            matrix_or_none = _numeric_matrix(rows)
            if matrix_or_none is not None:  # the common case; else find and name the problem
                return matrix_or_none, [dict(zip(names, row, strict=False)) for row in rows]
        for i, row in enumerate(rows):
            if len(row) != width:
                raise Unprocessable(
                    f"Row {i} has {len(row)} values; the model takes {width} ({', '.join(names)}).",
                    details={"row": i, "expected": list(names), "got": len(row)},
                )
            bad = [names[j] for j, v in enumerate(row) if not _is_number(v)]
            if bad:
                raise _unusable({"non_numeric": bad}, i)
        matrix = np.array(rows, dtype=np.float64)
        return matrix, [dict(zip(names, row, strict=True)) for row in rows]
    raise InvalidInput(
        "'features' mixes objects and lists; send one or the other.",
        details={"features": "mixed rows"},
    )


def _with_store_features(
    features: dict[str, Any] | None, entity_id: str, names: Sequence[str]
) -> dict[str, Any]:
    """The request's features completed from the feature store (request values win)."""
    given = dict(features or {})
    wanted = [n for n in names if n not in given]
    if not wanted:
        return given  # nothing to look up: no network call
    store = feature_store()
    statuses: dict[str, str] = {}
    try:
        lookup = store.get(entity_id, wanted)
    except FeatureStoreUnavailable as exc:
        metrics.feature_store_fallback(backend=store.backend)
        logger.warning("feature store unavailable, using the request's features: %s", exc)
        statuses = dict.fromkeys(wanted, "UNAVAILABLE")
    else:
        given.update(lookup.values)
        statuses = {n: str(s) for n, s in lookup.status.items() if s is not FeatureStatus.PRESENT}
    missing = [n for n in names if n not in given]
    if missing:
        raise Unprocessable(
            f"Features missing for entity {entity_id!r}: {', '.join(missing)}.",
            details={"missing": missing, "entity_id": entity_id, "feature_status": statuses},
        )
    return given


def _feeds(layout: _Layout, matrix: np.ndarray) -> dict[str, np.ndarray]:
    if layout.mode == "matrix":
        spec = layout.inputs[0]
        return {spec.name: matrix.astype(numpy_dtype(spec.dtype), copy=False)}
    return {
        spec.name: matrix[:, j : j + 1].astype(numpy_dtype(spec.dtype))
        for j, spec in enumerate(layout.inputs)
    }


# --- outputs ------------------------------------------------------------------------


def _interpret(
    model: LoadedModel, outputs: list[Any]
) -> tuple[list[Any], list[list[float]] | None, list[float] | None]:
    """(predictions, probabilities, confidence). Classifiers (a "probabilities" output,
    as skl2onnx writes with zipmap off) get all three; anything else predictions only."""
    names = model.output_names
    if "probabilities" in names and len(names) >= 2:
        probs = np.asarray(outputs[names.index("probabilities")])
        labels = outputs[names.index("label")] if "label" in names else outputs[0]
        return (
            np.asarray(labels).ravel().tolist(),
            probs.tolist(),
            probs.max(axis=1).astype(float).tolist(),
        )
    first = np.atleast_1d(np.asarray(outputs[0]))  # a scalar output still answers a list
    if first.ndim == 2 and first.shape[1] == 1:
        first = first[:, 0]
    return first.tolist(), None, None


# --- scoring ------------------------------------------------------------------------


def _score(
    served: ServedVersion, model: LoadedModel, feeds: dict[str, np.ndarray]
) -> tuple[list[Any], float]:
    started = time.perf_counter()
    try:
        outputs = model.run(feeds)
    except Exception as exc:  # the graph refused these values (shape, type)
        raise Unprocessable(
            f"The model could not score this input: {exc}",
            details={"model": served.model_name, "version": served.version},
        ) from exc
    seconds = time.perf_counter() - started
    rows = len(next(iter(feeds.values()))) if feeds else 0
    metrics.compute_observed(
        model=served.model_name, version=served.version, seconds=seconds, rows=rows
    )
    return outputs, seconds


def _record(
    *,
    request_id: str,
    served: ServedVersion,
    routed_by: str,
    rows: list[dict[str, Any]],
    predictions: list[Any],
    probabilities: list[list[float]] | None,
    confidence: list[float] | None,
    latency_ms: float,
) -> PredictionRecord:
    """What the event publisher keeps of a scored request (its events are built later)."""
    return PredictionRecord(
        request_id,
        served.model_name,
        served.version,
        routed_by,
        rows,
        predictions,
        probabilities,
        confidence,
        latency_ms,
        time.time(),
    )


def _publish(record: PredictionRecord) -> None:
    try:
        # Looked up on the module each time, so tests can replace it.
        events.publish_prediction(record)
    except Exception:
        logger.exception("could not publish %d prediction event(s)", len(record.predictions))


def _shadow_score(
    challenger: ServedVersion,
    feeds: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    request_id: str,
) -> None:
    try:
        model = session_cache.session_for(challenger)
        started = time.perf_counter()
        outputs, _ = _score(challenger, model, feeds)
        predictions, probabilities, confidence = _interpret(model, outputs)
        latency_ms = (time.perf_counter() - started) * 1000
        metrics.request_observed(
            model=challenger.model_name,
            version=challenger.version,
            route=routing.SHADOW_ROUTE,
            status=200,
        )
        _publish(
            _record(
                request_id=request_id,
                served=challenger,
                routed_by=routing.SHADOW_ROUTE,
                rows=rows,
                predictions=predictions,
                probabilities=probabilities,
                confidence=confidence,
                latency_ms=latency_ms,
            )
        )
    except Exception:
        logger.exception("shadow scoring by %s failed", challenger.label)


def _shadow(
    challenger: ServedVersion,
    feeds: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    request_id: str,
) -> None:
    global _shadow_pending
    model = session_cache.get(challenger.sha256)
    if model is not None and model.inline:
        _shadow_score(challenger, feeds, rows, request_id)
        return
    with _shadow_lock:
        if _shadow_pending >= SHADOW_MAX_PENDING:
            logger.warning("shadow queue full; %s not scored for %s", challenger.label, request_id)
            return
        _shadow_pending += 1

    def run() -> None:
        global _shadow_pending
        try:
            _shadow_score(challenger, feeds, rows, request_id)
        finally:
            with _shadow_lock:
                _shadow_pending -= 1

    _shadow_pool.submit(run)


def _predict(
    *,
    principal: ApiKeyPrincipal,
    model_name: str,
    version: str | None,
    entity_id: str | None,
    request_id: str | None,
    build: Any,
) -> Prediction:
    """Authorize, route, build feeds with ``build(served, model)``, score, log, count."""
    started = time.perf_counter()
    request_id = request_id or request_id_new()
    label_model, label_version, route = metrics.UNKNOWN, "", "none"
    try:
        api_key_authorize(principal=principal, model_name=model_name)
        served, route, shadow = _route(
            model_name=model_name, version=version, entity_id=entity_id, request_id=request_id
        )
        label_model, label_version = served.model_name, served.version
        model = session_cache.session_for(served)
        feeds, rows = build(served, model)
        outputs, _ = _score(served, model, feeds)
        predictions, probabilities, confidence = _interpret(model, outputs)
        if shadow is not None:
            _shadow(shadow, feeds, rows, request_id)
    except ApplicationError as error:
        metrics.request_observed(
            model=label_model, version=label_version, route=route, status=status_for(error)
        )
        raise
    seconds = time.perf_counter() - started
    latency_ms = round(seconds * 1000, 3)
    if confidence is not None:
        metrics.confidence_observed(model=label_model, version=label_version, values=confidence)
    metrics.request_observed(
        model=label_model, version=label_version, route=route, status=200, latency_s=seconds
    )
    _publish(
        _record(
            request_id=request_id,
            served=served,
            routed_by=route,
            rows=rows,
            predictions=predictions,
            probabilities=probabilities,
            confidence=confidence,
            latency_ms=latency_ms,
        )
    )
    return Prediction(
        request_id=request_id,
        model=served.model_name,
        version=served.version,
        routed_by=route,
        predictions=predictions,
        probabilities=probabilities,
        confidence=confidence,
        latency_ms=latency_ms,
        outputs=[
            (spec, np.asarray(out)) for spec, out in zip(model.outputs, outputs, strict=False)
        ],
    )


def prediction_create(
    *,
    principal: ApiKeyPrincipal,
    model_name: str,
    features: Any = None,
    entity_id: str | None = None,
    version: str | None = None,
    request_id: str | None = None,
) -> Prediction:
    """Score named features (one row, a list of rows, or an entity's stored features).

    Raises NotFound (unknown model/version), Forbidden (key not scoped), InvalidInput,
    TooLarge, Unprocessable (unusable features, named), DependencyUnavailable (no
    servable version loaded).
    """

    def build(
        served: ServedVersion, model: LoadedModel
    ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        layout = _layout(served, model)
        if layout is None:
            raise Unprocessable(
                f"{served.label} does not take a table of named features; "
                "use the Open Inference Protocol (/v2/models/{name}/infer) with raw tensors.",
                details={"inputs": [s.name for s in model.inputs]},
            )
        body = features
        if entity_id is not None and (body is None or isinstance(body, dict)):
            body = _with_store_features(body, entity_id, layout.feature_names)
        elif body is None:
            raise InvalidInput(
                "Send 'features' or an 'entity_id' whose features are in the feature store.",
                details={"features": "required"},
            )
        matrix, rows = _table(body, layout.feature_names)
        return _feeds(layout, matrix), rows

    return _predict(
        principal=principal,
        model_name=model_name,
        version=version,
        entity_id=entity_id,
        request_id=request_id,
        build=build,
    )


def tensor_infer(
    *,
    principal: ApiKeyPrincipal,
    model_name: str,
    inputs: Mapping[str, np.ndarray],
    version: str | None = None,
    entity_id: str | None = None,
    request_id: str | None = None,
) -> Prediction:
    """Score raw tensors named after the model's inputs (or, for a tabular model, one
    column per feature). Raises as ``prediction_create``."""

    def build(
        served: ServedVersion, model: LoadedModel
    ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
        expected = {spec.name: spec for spec in model.inputs}
        layout = _layout(served, model)
        if set(inputs) == set(expected):
            feeds = {}
            for name, spec in expected.items():
                try:
                    feeds[name] = np.asarray(inputs[name]).astype(
                        numpy_dtype(spec.dtype), copy=False
                    )
                except (TypeError, ValueError) as exc:
                    raise InvalidInput(
                        f"Input {name!r} cannot be converted to {spec.dtype}: {exc}",
                        details={"input": name},
                    ) from exc
        elif layout is not None and set(inputs) == set(layout.feature_names):
            columns = [
                np.asarray(inputs[n], dtype=np.float64).reshape(-1) for n in layout.feature_names
            ]
            if len({len(c) for c in columns}) != 1:
                raise InvalidInput("Feature inputs have different lengths.", details={})
            feeds = _feeds(layout, np.stack(columns, axis=1))
        else:
            raise InvalidInput(
                f"Inputs must be {sorted(expected)}"
                + (f" or the features {list(layout.feature_names)}" if layout else "")
                + f"; got {sorted(inputs)}.",
                details={"expected": sorted(expected), "got": sorted(inputs)},
            )
        first = next(iter(feeds.values()))
        if first.ndim >= 1 and len(first) > settings.PHOENIX_PREDICT_MAX_ROWS:
            raise TooLarge(
                f"{len(first)} rows is more than the limit of {settings.PHOENIX_PREDICT_MAX_ROWS}.",
                details={"rows": len(first), "limit": settings.PHOENIX_PREDICT_MAX_ROWS},
            )
        rows: list[dict[str, Any]] = []
        if layout is not None:
            # The logged features, named, whichever way the tensors came in.
            try:
                matrix = (
                    feeds[layout.inputs[0].name]
                    if layout.mode == "matrix"
                    else np.column_stack([feeds[spec.name].reshape(-1) for spec in layout.inputs])
                )
            except ValueError:  # ragged columns: the model refuses them, with a 422
                matrix = np.empty((0, 0))
            if matrix.ndim == 2 and matrix.shape[1] == len(layout.feature_names):
                rows = [dict(zip(layout.feature_names, r, strict=True)) for r in matrix.tolist()]
        return feeds, rows

    return _predict(
        principal=principal,
        model_name=model_name,
        version=version,
        entity_id=entity_id,
        request_id=request_id,
        build=build,
    )


# --- API keys, routing policies, online features ----------------------------------------


def inference_config_changed(*, model_name: str = "", reason: str) -> None:
    """After commit, tell every serving process (this one at once) that a key or policy changed."""
    from django.db import transaction

    from models_registry.notifications import registry_changed_publish

    transaction.on_commit(lambda: registry_changed_publish(model_name=model_name, reason=reason))


def api_key_create(
    *, name: str, model_names: Sequence[str] = (), created_by: Any = None
) -> tuple[Any, str]:
    """Create a key scoped to ``model_names`` (empty: every model).

    Returns (ApiKey, the key in clear: shown once, never stored). Raises NotFound for
    an unknown model name, InvalidInput for an empty name.
    """
    import secrets

    from django.db import transaction

    from models_registry.models import RegisteredModel

    from .auth import key_hash
    from .models import ApiKey

    name = name.strip()
    if not name:
        raise InvalidInput("An API key needs a name.", details={"name": "required"})
    wanted = sorted({m.strip() for m in model_names if m.strip()})
    models = list(RegisteredModel.objects.filter(name__in=wanted))
    unknown = sorted(set(wanted) - {m.name for m in models})
    if unknown:
        raise NotFound(f"No model named {', '.join(unknown)}.", details={"models": unknown})
    key = "phx_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            name=name, prefix=key[:12], key_hash=key_hash(key), created_by=created_by
        )
        api_key.allowed_models.set(models)
        inference_config_changed(reason="api_key")
    return api_key, key


def api_key_revoke(*, api_key: Any) -> Any:
    """Revoke ``api_key`` now in every process (idempotent). Returns it."""
    from django.utils import timezone

    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    inference_config_changed(reason="api_key")
    return api_key


def online_features_write(
    *, rows: Mapping[str, Mapping[str, float]], at: float | None = None
) -> int:
    """Write entities' feature values to the configured store. Returns the entity count.

    Raises DependencyUnavailable when the store cannot be written.
    """
    store = feature_store()
    try:
        return store.put_many(rows, at=at)
    except FeatureStoreUnavailable as exc:
        raise DependencyUnavailable(str(exc), details={"backend": store.backend}) from exc


def warm_execution(*, model_name: str, version: str | None) -> str | None:
    """How an async adapter should run a request whose API key is already cached here,
    or None when serving it may touch the database.

    "inline": plan read, sessions loaded, and every model involved (shadow included)
    is cheaper than a thread hop: run it on the event loop. "pool": warm, but a model
    is heavier: run it on a worker thread (any; no database is needed).
    """
    plans = session_cache.loaded_plans()
    if plans is None:
        return None
    plan = plans.get(model_name)
    candidates: list[ServedVersion | None]
    if version is not None:
        pinned = (plan.versions.get(version) if plan else None) or session_cache.pinned(
            model_name, version
        )
        candidates = [pinned]
    elif plan is None or plan.champion is None:
        return None
    else:
        candidates = [plan.champion, plan.challenger] if plan.challenger else [plan.champion]
    inline = True
    for served in candidates:
        model = session_cache.get(served.sha256) if served is not None else None
        if model is None:
            return None
        inline = inline and model.inline
    return "inline" if inline else "pool"
