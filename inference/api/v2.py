"""Open Inference Protocol (KServe v2), so Triton and KServe clients work unchanged.

The protocol is handled here once, on plain values (method, path, headers, body ->
status, body), and served by two thin adapters: a Django view (WSGI, and the test
client) and a Channels ``AsyncHttpConsumer`` (``inference.api.v2_consumer``) that
the ASGI entry point routes ``/v2`` to, skipping Django's request handler. JSON
tensors and the binary tensor extension (``Inference-Header-Content-Length``) that
``tritonclient`` uses by default are understood in requests and responses.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from models_registry.tensor_types import V2_NUMPY, TensorValueError, checked_array, v2_datatype
from phoenix.exceptions import (
    BEARER_CHALLENGE,
    ApplicationError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    status_for,
)
from phoenix.health import readiness_report

from ..auth import (
    api_key_authenticate,
    api_key_authorize,
    api_key_cached,
    api_key_from_headers,
)
from ..prediction import Prediction, tensor_infer, warm_execution
from ..prediction.service import served_pinned
from ..selectors import ServedVersion
from ..session_cache import session_cache

SERVER_NAME = "phoenix"
SERVER_VERSION = "1.0.0"
HEADER_LENGTH = "Inference-Header-Content-Length"

# v2 datatype -> numpy (models_registry/tensor_types.py is the one table).
_DTYPES = V2_NUMPY


_MODEL_PATH = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>ready|infer))?/?$"
)


@dataclass
class ProtocolResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(data: Any, status: int = 200) -> ProtocolResponse:
    return ProtocolResponse(status, orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY))


def _error(error: ApplicationError) -> ProtocolResponse:
    # The protocol's error shape is {"error": "<message>"} (tritonclient reads it as a
    # string); the project's code and details ride along beside it.
    body = {"error": error.message, "code": error.code, "details": error.details}
    response = _json(body, status_for(error))
    if response.status == 401:
        response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
    return response


def _datatype(numpy_name: str) -> str:
    return v2_datatype(numpy_name)


def _tensor_meta(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": s["name"],
            "datatype": _datatype(str(s.get("dtype", ""))),
            "shape": [-1 if d is None else d for d in s.get("shape", [])],
        }
        for s in specs
    ]


def _served(name: str, version: str | None) -> ServedVersion:
    """The version named, or the champion (production) of ``name``. Raises NotFound."""
    if version is not None:
        return served_pinned(name, version)
    plan = session_cache.plans().get(name)
    if plan is None or plan.champion is None:
        raise NotFound(f"No servable model named {name!r}.", details={"model": name})
    return plan.champion


def _authorized(headers: Mapping[str, str], name: str) -> None:
    principal = api_key_authenticate(key=api_key_from_headers(headers))
    api_key_authorize(principal=principal, model_name=name)


def _server_ready() -> ProtocolResponse:
    ready, _ = readiness_report()
    return _json({"ready": ready}, 200 if ready else 503)


def _model_metadata(headers: Mapping[str, str], name: str, version: str | None) -> ProtocolResponse:
    _authorized(headers, name)
    served = _served(name, version)
    plan = session_cache.plans().get(name)
    versions = sorted(plan.versions) if plan else [served.version]
    return _json(
        {
            "name": served.model_name,
            "versions": versions if version is None else [served.version],
            "platform": "onnxruntime_onnx",
            "inputs": _tensor_meta(served.signature.get("inputs", [])),
            "outputs": _tensor_meta(served.signature.get("outputs", [])),
            "parameters": {
                "version": served.version,
                "stage": served.stage,
                "aliases": list(served.aliases),
                "feature_names": list(served.feature_names),
            },
        }
    )


def _model_ready(headers: Mapping[str, str], name: str, version: str | None) -> ProtocolResponse:
    _authorized(headers, name)
    served = _served(name, version)
    ready = session_cache.get(served.sha256) is not None
    return _json({"name": name, "version": served.version, "ready": ready}, 200 if ready else 503)


def _decode_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        items.append(raw[offset : offset + length])
        offset += length
    return items


def _input_tensor(spec: Any, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidInput("Each input needs a name, shape, datatype and data.", details={})
    name = spec["name"]
    datatype = spec.get("datatype")
    shape = spec.get("shape")
    if datatype not in _DTYPES:
        raise InvalidInput(
            f"Input {name!r}: unsupported datatype {datatype!r}.",
            details={"input": name, "supported": sorted(_DTYPES)},
        )
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidInput(
            f"Input {name!r}: shape must be a list of sizes.", details={"input": name}
        )
    dtype = _DTYPES[datatype]
    size = (spec.get("parameters") or {}).get("binary_data_size")
    try:
        if size is not None:
            chunk = bytes(binary[offset : offset + int(size)])
            if len(chunk) != int(size):
                raise InvalidInput(
                    f"Input {name!r}: binary data is shorter than declared.", details={}
                )
            offset += int(size)
            if dtype is np.object_:
                array = np.array(_decode_bytes(chunk), dtype=object)
            else:
                array = np.frombuffer(chunk, dtype=dtype)
        else:
            data = spec.get("data")
            if data is None:
                raise InvalidInput(f"Input {name!r} has no data.", details={"input": name})
            if dtype is np.object_:
                flat = np.asarray(data, dtype=object).reshape(-1)
                array = np.array(
                    [v.encode() if isinstance(v, str) else v for v in flat], dtype=object
                )
            else:
                array = checked_array(data, dtype, name=name)
        return array.reshape(shape), offset
    except TensorValueError as exc:
        raise InvalidInput(
            f"Input {name!r} ({datatype}): {exc.message}.",
            details={**exc.details, "datatype": datatype},
        ) from exc
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"Input {name!r}: data does not fit shape {shape}: {exc}", details={"input": name}
        ) from exc


def _parse_infer(
    headers: Mapping[str, str], body: bytes
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    header_length = headers.get(HEADER_LENGTH)
    try:
        cut = int(header_length) if header_length is not None else len(body)
        payload = orjson.loads(body[:cut])
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidInput(f"The request body is not valid JSON: {exc}", details={}) from exc
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("inputs"), list)
        or not payload["inputs"]
    ):
        raise InvalidInput("The body needs a non-empty 'inputs' list.", details={})
    binary = memoryview(body)[cut:]
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for spec in payload["inputs"]:
        array, offset = _input_tensor(spec, binary, offset)
        tensors[spec["name"]] = array
    return payload, tensors


def _encode_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode()
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def _infer_response(payload: dict[str, Any], prediction: Prediction) -> ProtocolResponse:
    requested = payload.get("outputs")
    wanted: dict[str, bool] | None = None
    default_binary = bool((payload.get("parameters") or {}).get("binary_data_output", False))
    if isinstance(requested, list) and requested:
        wanted = {
            str(o.get("name")): bool((o.get("parameters") or {}).get("binary_data", default_binary))
            for o in requested
            if isinstance(o, dict)
        }
        known = {spec.name for spec, _ in prediction.outputs}
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise InvalidInput(
                f"Unknown outputs requested: {unknown}.", details={"outputs": unknown}
            )
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for spec, array in prediction.outputs:
        if wanted is not None and spec.name not in wanted:
            continue
        binary = wanted[spec.name] if wanted is not None else default_binary
        datatype = "BYTES" if array.dtype == object else _datatype(str(array.dtype))
        entry: dict[str, Any] = {
            "name": spec.name,
            "datatype": datatype,
            "shape": list(array.shape),
        }
        if binary:
            raw = (
                _encode_bytes(array)
                if datatype == "BYTES"
                else np.ascontiguousarray(array).tobytes()
            )
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif datatype == "BYTES":
            entry["data"] = [
                v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1)
            ]
        else:
            entry["data"] = array.reshape(-1)
        outputs.append(entry)
    header = orjson.dumps(
        {
            "model_name": prediction.model,
            "model_version": prediction.version,
            "id": prediction.request_id,
            "parameters": {"routed_by": prediction.routed_by, "latency_ms": prediction.latency_ms},
            "outputs": outputs,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if not chunks:
        return ProtocolResponse(200, header)
    return ProtocolResponse(
        200,
        header + b"".join(chunks),
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _infer(
    headers: Mapping[str, str], body: bytes, name: str, version: str | None
) -> ProtocolResponse:
    principal = api_key_authenticate(key=api_key_from_headers(headers))
    payload, tensors = _parse_infer(headers, body)
    parameters = payload.get("parameters") or {}
    entity_id = parameters.get("entity_id") if isinstance(parameters, dict) else None
    # The client's id, when given, is the request id (echoed, logged, used for feedback).
    # It is not one this server signed, so feedback for it is 200 or 404, never pending.
    request_id = payload.get("id")
    if request_id and len(str(request_id)) > 64:  # PredictionLog.request_id's length
        raise InvalidInput("'id' must be at most 64 characters.", details={"field": "id"})
    prediction = tensor_infer(
        principal=principal,
        model_name=name,
        inputs=tensors,
        version=version,
        entity_id=str(entity_id) if entity_id is not None else None,
        request_id=str(request_id) if request_id else None,
    )
    return _infer_response(payload, prediction)


def _dispatch(method: str, path: str, headers: Mapping[str, str], body: bytes) -> ProtocolResponse:
    if path in ("/v2", "/v2/"):
        _require(method, "GET")
        return _json(
            {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}
        )
    if path == "/v2/health/live":
        _require(method, "GET")
        return _json({"live": True})
    if path == "/v2/health/ready":
        _require(method, "GET")
        return _server_ready()
    match = _MODEL_PATH.match(path)
    if match is None:
        raise NotFound(f"No route for {path}.")
    name, version, action = match["name"], match["version"], match["action"]
    if action == "infer":
        _require(method, "POST")
        return _infer(headers, body, name, version)
    _require(method, "GET")
    if action == "ready":
        return _model_ready(headers, name, version)
    return _model_metadata(headers, name, version)


def _require(method: str, allowed: str) -> None:
    if method != allowed and not (allowed == "GET" and method == "HEAD"):
        raise MethodNotAllowed(f"Use {allowed} here.", details={"allowed": [allowed]})


def handle(method: str, path: str, headers: Mapping[str, str], body: bytes) -> ProtocolResponse:
    """Answer one protocol request. ``headers`` must be case-insensitive.

    Domain errors become the error shape; anything else propagates (a real 500).
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        if limit is not None and len(body) > limit:
            raise TooLarge(
                f"The request body is larger than {limit} bytes.", details={"limit_bytes": limit}
            )
        return _dispatch(method, path, headers, body)
    except ApplicationError as error:
        return _error(error)


def infer_route(path: str) -> tuple[str, str | None] | None:
    """(model, version or None) of an infer path, else None."""
    match = _MODEL_PATH.match(path)
    if match is None or match["action"] != "infer":
        return None
    return match["name"], match["version"]


def infer_execution(method: str, path: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """For an async server: "inline" (warm, tiny model: answer on the event loop),
    "pool" (warm, heavier model or a feature-store lookup: any worker thread), or None
    (may touch the database: the key is not cached here, or the process is cold)."""
    route = infer_route(path) if method == "POST" else None
    if route is None or api_key_cached(api_key_from_headers(headers)) is None:
        return None
    execution = warm_execution(model_name=route[0], version=route[1])
    if execution == "inline" and b'"entity_id"' in body:
        # The feature store is a network call (Redis) or a query (embedded): not on
        # the loop. A false positive (the text elsewhere in the body) costs one hop.
        return "pool"
    return execution


@csrf_exempt
def django_view(request: HttpRequest) -> HttpResponse:
    """The protocol behind Django (WSGI workers, the test client)."""
    try:
        body = request.body
    except RequestDataTooBig:
        result = _error(TooLarge("The request body is too large.", details={}))
    else:
        result = handle(request.method or "GET", request.path, request.headers, body)
    response = HttpResponse(result.body, status=result.status, content_type=result.content_type)
    for name, value in result.headers.items():
        response[name] = value
    return response
