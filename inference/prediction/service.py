"""The one prediction service behind every adapter (REST v1, Open Inference Protocol v2,
the ASGI data plane).

A warm request: authorize the key (cached), route with the cached plan, build the
input tensor from the body (or the feature store), run ONNX Runtime, hand the event
publisher one record of the request (its per-row events are built off the request
thread), count metrics. No database query and no network call unless the client
asked for an entity's features.
"""

from __future__ import annotations

import logging
import time
from asyncio import _get_running_loop
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from models_registry.tensor_types import TensorValueError, checked_cast, numpy_dtype
from phoenix.exceptions import (
    ApplicationError,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    TooLarge,
    Unprocessable,
    status_for,
)

from .. import events, metrics, routing
from ..auth import api_key_authorize
from ..event_schema import PredictionRecord
from ..exceptions import FeatureStoreUnavailable, VersionNotPinnable
from ..feature_store import FeatureStatus, feature_store
from ..request_ids import request_id_new
from ..runtime import LoadedModel, TensorSpec
from ..selectors import (
    ApiKeyPrincipal,
    ServedVersion,
    registered_model_exists,
    served_version_get,
)
from ..session_cache import session_cache
from . import tables
from .outputs import outputs_read
from .shadow import shadow_run

logger = logging.getLogger(__name__)

Feeds = tables.Feeds
# What an adapter's input builder returns: the model's feeds and the logged rows.
Build = Callable[[ServedVersion, LoadedModel], tuple[Feeds, list[dict[str, Any]]]]

_API_ERRORS: dict[type[tables.TableError], type[ApplicationError]] = {
    tables.MalformedTable: InvalidInput,
    tables.TooManyRows: TooLarge,
    tables.UnusableFeatures: Unprocessable,
}


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


_layouts: dict[str, tables.Layout | None] = {}


def _layout(served: ServedVersion, model: LoadedModel) -> tables.Layout | None:
    """The tabular layout of a model, or None when it takes no table (cached per sha256)."""
    if served.sha256 not in _layouts:
        _layouts[served.sha256] = tables.layout_for(
            served.feature_names,
            [(spec.name, numpy_dtype(spec.dtype), spec.shape) for spec in model.inputs],
        )
    return _layouts[served.sha256]


# --- routing ------------------------------------------------------------------------


def served_pinned_cached(model_name: str, version: str) -> ServedVersion | None:
    """A version a client pins, if this process knows it without a query."""
    plan = session_cache.loaded_plans()
    model_plan = plan.get(model_name) if plan else None
    served = model_plan.versions.get(version) if model_plan else None
    return served or session_cache.pinned(model_name, version)


def served_pinned(model_name: str, version: str) -> ServedVersion:
    """A version a client pins: from the plans, else the registry (then remembered).

    Raises ModelNotFound / ModelVersionNotFound (404), also for an archived version
    unless archived is pinnable; VersionNotPinnable (403) for a version in a stage
    ``PHOENIX_PINNABLE_STAGES`` does not list (an unreviewed dev version, by default).
    """
    session_cache.plans()  # the first request of a process reads them
    pinnable = settings.PHOENIX_PINNABLE_STAGES
    served = served_pinned_cached(model_name, version)
    if served is None:
        served = served_version_get(
            model_name=model_name, version=version, allow_archived="archived" in pinnable
        )
        session_cache.remember_pinned(served)
    if served.stage not in pinnable:
        raise VersionNotPinnable(
            f"Version {version} of {model_name} is in stage {served.stage!r}; clients may pin "
            f"only versions in {', '.join(pinnable) or 'no stage'} (PHOENIX_PINNABLE_STAGES).",
            details={
                "model": model_name,
                "version": version,
                "stage": served.stage,
                "pinnable_stages": list(pinnable),
            },
        )
    return served


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
    if version is not None:
        return served_pinned(model_name, version), routing.PINNED_ROUTE, None
    plan = session_cache.plans().get(model_name)
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


def warm_execution(*, model_name: str, version: str | None) -> str | None:
    """How an async adapter should run a request whose API key is already cached here,
    or None when serving it may touch the database.

    "inline": plan read, sessions loaded, and every model involved (shadow included)
    is cheaper than a thread hop: run it on the event loop. "pool": warm, but a model
    is heavier or micro-batches (its requests wait for company, which only a worker
    thread may do): run it on a worker thread (any; no database is needed).
    """
    plans = session_cache.loaded_plans()
    if plans is None:
        return None
    candidates: list[ServedVersion | None]
    if version is not None:
        candidates = [served_pinned_cached(model_name, version)]
    else:
        plan = plans.get(model_name)
        if plan is None or plan.champion is None:
            return None
        candidates = [plan.champion, plan.challenger] if plan.challenger else [plan.champion]
    inline = True
    for served in candidates:
        if served is None:
            return None
        model = session_cache.get(served.sha256)
        if model is None:
            return None
        inline = inline and model.inline and session_cache.batcher_for(served) is None
    return "inline" if inline else "pool"


# --- inputs -------------------------------------------------------------------------


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


# --- scoring ------------------------------------------------------------------------


def _score(served: ServedVersion, model: LoadedModel, feeds: Feeds) -> list[Any]:
    batcher = session_cache.batcher_for(served)
    # A batcher may wait for company: only worker threads may wait, never an event loop
    # (warm_execution sends batching models to the pool; this guards a plan changing
    # between that decision and this call).
    run = batcher.run if batcher is not None and _get_running_loop() is None else model.run
    started = time.perf_counter()
    try:
        outputs = run(feeds)
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
    return outputs


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
    api_key_id: int | None,
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
        api_key_id,
    )


def _publish(record: PredictionRecord) -> None:
    try:
        # Looked up on the module each time, so tests can replace it.
        events.publish_prediction(record)
    except Exception:
        logger.exception("could not publish %d prediction event(s)", len(record.predictions))


def _shadow_score(
    challenger: ServedVersion,
    feeds: Feeds,
    rows: list[dict[str, Any]],
    request_id: str,
    api_key_id: int | None,
) -> None:
    try:
        model = session_cache.session_for(challenger)
        started = time.perf_counter()
        outputs = _score(challenger, model, feeds)
        predictions, probabilities, confidence = outputs_read(model.output_names, outputs)
        latency_ms = (time.perf_counter() - started) * 1000
        metrics.request_observed(
            model=challenger.model_name,
            version=challenger.version,
            route=routing.SHADOW_ROUTE,
            status=200,
        )
        _publish(
            _record(
                # Its own id, linked to the client's: feedback on the client's id labels both.
                request_id=routing.shadow_request_id(request_id),
                served=challenger,
                routed_by=routing.SHADOW_ROUTE,
                rows=rows,
                predictions=predictions,
                probabilities=probabilities,
                confidence=confidence,
                latency_ms=latency_ms,
                api_key_id=api_key_id,
            )
        )
    except Exception:
        logger.exception("shadow scoring by %s failed", challenger.label)


def _shadow(
    challenger: ServedVersion,
    feeds: Feeds,
    rows: list[dict[str, Any]],
    request_id: str,
    api_key_id: int | None,
) -> None:
    model = session_cache.get(challenger.sha256)
    shadow_run(
        lambda: _shadow_score(challenger, feeds, rows, request_id, api_key_id),
        inline=model is not None and model.inline,
        label=challenger.label,
        request_id=request_id,
    )


def _predict(
    *,
    principal: ApiKeyPrincipal,
    model_name: str,
    version: str | None,
    entity_id: str | None,
    request_id: str | None,
    build: Build,
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
        try:
            feeds, rows = build(served, model)
        except tables.TableError as error:
            raise _API_ERRORS[type(error)](error.message, details=error.details) from error
        outputs = _score(served, model, feeds)
        predictions, probabilities, confidence = outputs_read(model.output_names, outputs)
        if shadow is not None:
            _shadow(shadow, feeds, rows, request_id, principal.id)
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
            api_key_id=principal.id,
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

    def build(served: ServedVersion, model: LoadedModel) -> tuple[Feeds, list[dict[str, Any]]]:
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
        if layout.text_features:
            matrix, rows = tables.text_table(
                body,
                layout.feature_names,
                text_features=layout.text_features,
                max_rows=settings.PHOENIX_PREDICT_MAX_ROWS,
                bounds=layout.bounds,
            )
        else:
            matrix, rows = tables.table(
                body,
                layout.feature_names,
                max_rows=settings.PHOENIX_PREDICT_MAX_ROWS,
                bounds=layout.bounds,
            )
        return tables.feeds(layout, matrix), rows

    return _predict(
        principal=principal,
        model_name=model_name,
        version=version,
        entity_id=entity_id,
        request_id=request_id,
        build=build,
    )


def _texts(values: Any, name: str) -> np.ndarray:
    """A string input's values as str (the v2 protocol carries BYTES: UTF-8 is decoded
    here, so the model and the event log see the same text). Raises InvalidInput."""
    array = np.asarray(values, dtype=object)
    out = np.empty(array.shape, dtype=object)
    flat, target = array.reshape(-1), out.reshape(-1)
    for i, value in enumerate(flat):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"Input {name!r}: element {i} is not UTF-8 text.", details={"input": name}
                ) from exc
        elif not isinstance(value, str):
            raise InvalidInput(
                f"Input {name!r} takes strings (BYTES); element {i} is not one.",
                details={"input": name},
            )
        target[i] = value
    return out


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

    def build(served: ServedVersion, model: LoadedModel) -> tuple[Feeds, list[dict[str, Any]]]:
        expected = {spec.name: spec for spec in model.inputs}
        layout = _layout(served, model)
        if set(inputs) == set(expected):
            feeds = {}
            for name, spec in expected.items():
                if numpy_dtype(spec.dtype) is np.object_:
                    feeds[name] = _texts(inputs[name], name)
                    continue
                try:
                    feeds[name] = checked_cast(
                        np.asarray(inputs[name]), numpy_dtype(spec.dtype), name=name
                    )
                except TensorValueError as exc:
                    raise Unprocessable(
                        f"Input {name!r} does not fit the model's {spec.dtype} input: "
                        f"{exc.message}.",
                        details=exc.details,
                    ) from exc
                except (TypeError, ValueError) as exc:
                    raise InvalidInput(
                        f"Input {name!r} cannot be converted to {spec.dtype}: {exc}",
                        details={"input": name},
                    ) from exc
        elif layout is not None and set(inputs) == set(layout.feature_names):
            try:
                columns = [
                    np.asarray(inputs[n], dtype=np.float64).reshape(-1)
                    for n in layout.feature_names
                ]
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"Feature inputs must be numbers: {exc}", details={}) from exc
            if len({len(c) for c in columns}) != 1:
                raise InvalidInput("Feature inputs have different lengths.", details={})
            matrix = np.stack(columns, axis=1)
            tables.bounds_check(matrix, layout)
            feeds = tables.feeds(layout, matrix)
        else:
            raise InvalidInput(
                f"Inputs must be {sorted(expected)}"
                + (f" or the features {list(layout.feature_names)}" if layout else "")
                + f"; got {sorted(inputs)}.",
                details={"expected": sorted(expected), "got": sorted(inputs)},
            )
        first = next(iter(feeds.values()))
        if first.ndim >= 1:
            tables.rows_check(len(first), settings.PHOENIX_PREDICT_MAX_ROWS)
        # The logged features, named, whichever way the tensors came in.
        rows = tables.logged_rows(layout, feeds) if layout is not None else []
        return feeds, rows

    return _predict(
        principal=principal,
        model_name=model_name,
        version=version,
        entity_id=entity_id,
        request_id=request_id,
        build=build,
    )
