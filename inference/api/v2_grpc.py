"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService``.

Served by grpcio in its own process (``manage.py serve_grpc``), so Triton and KServe
gRPC clients work unchanged. The messages and the servicer base are the ones
``tritonclient`` ships (Triton's service is a superset of KServe v2's, same package
and method names); the methods outside KServe v2 (shared memory, repository, trace,
statistics) answer UNIMPLEMENTED.

Nothing here decides anything the HTTP protocol decides: health, metadata and
readiness answers are the HTTP protocol's (``v2.handle``) carried over; inference
goes to the same prediction service with the same API keys (metadata
``authorization: Bearer <key>`` or ``x-api-key``), routing, metrics and events; every
input tensor is read by the HTTP protocol's reader, so the same values are refused
the same way. Errors keep their message and map to gRPC status codes by HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import numpy as np
import orjson
from django.db import close_old_connections
from tritonclient.grpc import service_pb2, service_pb2_grpc

from phoenix.exceptions import ApplicationError, InvalidInput, status_for

from ..auth import api_key_authenticate, api_key_cached, api_key_from_headers
from ..prediction import Prediction, tensor_infer, warm_execution
from . import v2

logger = logging.getLogger(__name__)

# HTTP status of the error table -> gRPC status (as KServe and Triton map them).
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

# Where each datatype's values sit in typed ``InferTensorContents`` (FP16 has none:
# it travels only as raw contents, as in KServe's protocol).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

Reply = TypeVar("Reply")


def grpc_code(status: int) -> grpc.StatusCode:
    return _CODES.get(status, grpc.StatusCode.INTERNAL)


def _code_for(error: ApplicationError) -> grpc.StatusCode:
    status = error.status if isinstance(error, _ProtocolError) else status_for(error)
    return grpc_code(status)


def _headers(context: Any) -> dict[str, str]:
    """The call's metadata under the header names the key reader looks for."""
    metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
    headers = {}
    if "authorization" in metadata:
        headers["Authorization"] = metadata["authorization"]
    if "x-api-key" in metadata:
        headers["X-API-Key"] = metadata["x-api-key"]
    return headers


def _parameter(parameter: Any) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None


def _input_tensors(request: Any) -> dict[str, np.ndarray]:
    """The request's tensors, each read as the HTTP protocol reads one input."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"{len(raw)} raw input contents for {len(request.inputs)} inputs; "
            "send one per input or none.",
            details={},
        )
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        spec: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if raw:
            spec["parameters"] = {"binary_data_size": len(raw[index])}
            array, _ = v2._input_tensor(spec, memoryview(raw[index]), 0)
        else:
            field = _CONTENTS_FIELD.get(tensor.datatype)
            spec["data"] = list(getattr(tensor.contents, field)) if field else None
            array, _ = v2._input_tensor(spec, memoryview(b""), 0)
        tensors[tensor.name] = array
    return tensors


def _infer_response(request: Any, prediction: Prediction) -> Any:
    wanted = [o.name for o in request.outputs]
    known = {spec.name for spec, _ in prediction.outputs}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise InvalidInput(f"Unknown outputs requested: {unknown}.", details={"outputs": unknown})
    response = service_pb2.ModelInferResponse(
        model_name=prediction.model, model_version=prediction.version, id=prediction.request_id
    )
    response.parameters["routed_by"].string_param = prediction.routed_by
    response.parameters["latency_ms"].double_param = float(prediction.latency_ms)
    for spec, array in prediction.outputs:
        if wanted and spec.name not in wanted:
            continue
        datatype = "BYTES" if array.dtype == object else v2._datatype(str(array.dtype))
        response.outputs.add(name=spec.name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(
            v2._encode_bytes(array)
            if datatype == "BYTES"
            else np.ascontiguousarray(array).tobytes()
        )
    return response


def _tensor_metadata(entries: Iterable[dict[str, Any]]) -> list[Any]:
    return [
        service_pb2.ModelMetadataResponse.TensorMetadata(
            name=e["name"], datatype=e["datatype"], shape=e["shape"]
        )
        for e in entries
    ]


def _model_path(name: str, version: str) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version else "")


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """KServe v2's six methods over the project's protocol handling and service.

    On grpc.aio, as the HTTP data plane runs: a warm inference (key cached, plan read,
    sessions loaded, a model cheaper than a thread hop) is answered on the event loop;
    everything else (metadata, first calls, heavier models, feature-store lookups)
    on the worker threads, where the database may be read.
    """

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        body = await self._pool(context, _protocol_json, "/v2/health/ready", _headers(context))
        return service_pb2.ServerReadyResponse(ready=bool(body.get("ready")))

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        body = await self._pool(context, _protocol_json, "/v2", _headers(context))
        return service_pb2.ServerMetadataResponse(
            name=body["name"], version=body["version"], extensions=body.get("extensions", [])
        )

    async def ModelReady(self, request: Any, context: Any) -> Any:
        path = _model_path(request.name, request.version) + "/ready"
        body = await self._pool(context, _protocol_json, path, _headers(context))
        return service_pb2.ModelReadyResponse(ready=bool(body.get("ready")))

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        path = _model_path(request.name, request.version)
        body = await self._pool(context, _protocol_json, path, _headers(context))
        return service_pb2.ModelMetadataResponse(
            name=body["name"],
            versions=body["versions"],
            platform=body["platform"],
            inputs=_tensor_metadata(body["inputs"]),
            outputs=_tensor_metadata(body["outputs"]),
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        headers = _headers(context)
        if _warm_inline(request, headers):
            try:
                return _infer(request, headers)
            except ApplicationError as error:
                await context.abort(_code_for(error), error.message)
        return await self._pool(context, _infer, request, headers)

    async def _pool(self, context: Any, function: Callable[..., Reply], *args: Any) -> Reply:
        """``function(*args)`` on a worker thread as Django runs a request (stale
        connections closed before and after); a domain error aborts with its status."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, _with_connections, function, *args)
        except ApplicationError as error:
            await context.abort(_code_for(error), error.message)
            raise  # abort raises; this line only satisfies the type checker


class _ProtocolError(ApplicationError):
    """An HTTP protocol answer that was not 200, carried to the call's abort."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, details={})
        self.status = status


def _protocol_json(path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The HTTP protocol's answer for GET ``path`` (a not-ready answer included)."""
    response = v2.handle("GET", path, headers, b"")
    body: dict[str, Any] = orjson.loads(response.body)
    if response.status == 200 or (response.status == 503 and "ready" in body):
        return body
    raise _ProtocolError(response.status, str(body.get("error", "request failed")))


def _warm_inline(request: Any, headers: dict[str, str]) -> bool:
    if "entity_id" in request.parameters:  # a feature-store lookup: network or database
        return False
    if api_key_cached(api_key_from_headers(headers)) is None:
        return False
    execution = warm_execution(model_name=request.model_name, version=request.model_version or None)
    return execution == "inline"


def _infer(request: Any, headers: dict[str, str]) -> Any:
    principal = api_key_authenticate(key=api_key_from_headers(headers))
    if len(request.id) > 64:  # PredictionLog.request_id's length, as over HTTP
        raise InvalidInput("'id' must be at most 64 characters.", details={"field": "id"})
    entity = request.parameters.get("entity_id")
    entity_id = _parameter(entity) if entity is not None else None
    prediction = tensor_infer(
        principal=principal,
        model_name=request.model_name,
        inputs=_input_tensors(request),
        version=request.model_version or None,
        entity_id=str(entity_id) if entity_id is not None else None,
        request_id=request.id or None,
    )
    return _infer_response(request, prediction)


def _with_connections(function: Callable[..., Reply], *args: Any) -> Reply:
    close_old_connections()
    try:
        return function(*args)
    finally:
        close_old_connections()


def grpc_server_build(*, host: str, port: int, threads: int) -> tuple[Any, int]:
    """A grpc.aio server on ``host:port``, not started; returns it and the bound port
    (``port=0`` picks a free one). Calls that may block run on ``threads`` threads.
    Build it inside the event loop that will run it."""
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="phoenix-grpc")
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", _max_message_bytes()),
            ("grpc.max_send_message_length", _max_message_bytes()),
        ],
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(executor), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    return server, bound


def _max_message_bytes() -> int:
    # The same body limit as the HTTP protocol's (a larger message is refused by grpcio
    # with RESOURCE_EXHAUSTED before it is parsed).
    from django.conf import settings

    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 10 * 1024 * 1024)
