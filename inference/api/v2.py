"""Open Inference Protocol (KServe v2) adapter, so Triton and KServe clients work unchanged.

Plain Django views (no DRF: the protocol has its own request shape, and the path is
built for throughput). JSON tensors and the binary tensor extension
(``Inference-Header-Content-Length``) that ``tritonclient`` uses by default are
both understood, in requests and in responses.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from phoenix.exceptions import ApplicationError, InvalidInput, NotFound, status_for
from phoenix.health import readiness_report

from ..auth import api_key_authenticate, api_key_authorize, api_key_from_headers
from ..selectors import ServedVersion
from ..services import Prediction, tensor_infer
from ..session_cache import session_cache

SERVER_NAME = "phoenix"
SERVER_VERSION = "1.0.0"
HEADER_LENGTH = "Inference-Header-Content-Length"

# v2 datatype <-> numpy
_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_BY_NUMPY_NAME = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
    "object": "BYTES",
}


def _json(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status=status,
        content_type="application/json",
    )


def _error(error: ApplicationError) -> HttpResponse:
    # The protocol's error shape is {"error": "<message>"} (tritonclient reads it as a
    # string); the project's code and details ride along beside it.
    body = {"error": error.message, "code": error.code, "details": error.details}
    return _json(body, status_for(error))


def _protocol_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Domain errors become the JSON error shape; anything else stays a real 500."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ApplicationError as error:
            return _error(error)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return csrf_exempt(wrapped)


def _datatype(numpy_name: str) -> str:
    return _BY_NUMPY_NAME.get(numpy_name, "BYTES")


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
    plan = session_cache.plans().get(name)
    if version is None:
        if plan is None or plan.champion is None:
            raise NotFound(f"No servable model named {name!r}.", details={"model": name})
        return plan.champion
    served = plan.versions.get(version) if plan else None
    if served is None:
        from ..selectors import served_version_get

        served = served_version_get(model_name=name, version=version)
    return served


def _authorized(request: HttpRequest, name: str) -> None:
    principal = api_key_authenticate(key=api_key_from_headers(request.headers))
    api_key_authorize(principal=principal, model_name=name)


# --- server -----------------------------------------------------------------------------


@require_GET
@_protocol_view
def server_metadata(request: HttpRequest) -> HttpResponse:
    return _json(
        {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}
    )


@require_GET
@_protocol_view
def server_live(request: HttpRequest) -> HttpResponse:
    return _json({"live": True})


@require_GET
@_protocol_view
def server_ready(request: HttpRequest) -> HttpResponse:
    ready, _ = readiness_report()
    return _json({"ready": ready}, 200 if ready else 503)


# --- models -----------------------------------------------------------------------------


@require_GET
@_protocol_view
def model_metadata(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    _authorized(request, name)
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


@require_GET
@_protocol_view
def model_ready(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    _authorized(request, name)
    served = _served(name, version)
    ready = session_cache.get(served.sha256) is not None
    return _json({"name": name, "version": served.version, "ready": ready}, 200 if ready else 503)


# --- inference ----------------------------------------------------------------------------


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
                array = np.asarray(data, dtype=dtype)
        return array.reshape(shape), offset
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"Input {name!r}: data does not fit shape {shape}: {exc}", details={"input": name}
        ) from exc


def _parse_infer(request: HttpRequest) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    body = request.body
    header_length = request.headers.get(HEADER_LENGTH)
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


def _infer_response(payload: dict[str, Any], prediction: Prediction) -> HttpResponse:
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
        return HttpResponse(header, content_type="application/json")
    response = HttpResponse(header + b"".join(chunks), content_type="application/octet-stream")
    response[HEADER_LENGTH] = str(len(header))
    return response


@require_POST
@_protocol_view
def model_infer(request: HttpRequest, name: str, version: str | None = None) -> HttpResponse:
    principal = api_key_authenticate(key=api_key_from_headers(request.headers))
    payload, tensors = _parse_infer(request)
    parameters = payload.get("parameters") or {}
    entity_id = parameters.get("entity_id") if isinstance(parameters, dict) else None
    request_id = payload.get("id")
    prediction = tensor_infer(
        principal=principal,
        model_name=name,
        inputs=tensors,
        version=version,
        entity_id=str(entity_id) if entity_id is not None else None,
        request_id=str(request_id) if request_id else None,
    )
    return _infer_response(payload, prediction)
