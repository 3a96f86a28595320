"""ONNX Runtime sessions: execution providers, session options, warm-up timing,
and the fall back to the CPU when the GPU fails at run time.

CUDA is used only when it really loads: onnxruntime-gpu lists
``CUDAExecutionProvider`` as available even on machines with no GPU (or no
matching CUDA libraries) and then silently falls back to the CPU, so a tiny
probe session is created once and its providers are read back.

A GPU session can still fail while serving: out of device memory, a lost or reset
device, a CUDA library error. DESIGN.md's failure table asks that the service stay
up at lower speed, so such a failure re-creates that version's session on the CPU
provider (once, under a lock), the request is retried there, and the version is
reported degraded (readiness detail, ``phoenix_model_degraded``, a log line).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
from django.conf import settings

from models_registry.tensor_types import numpy_dtype

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# A model whose warm single-row call is this fast runs inline in async code:
# a thread hop costs more than the call itself.
INLINE_THRESHOLD_S = 0.0002

_providers_lock = threading.Lock()
_providers: list[str] | None = None


def _probe_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _cuda_really_loads() -> bool:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    # The GPU build logs loud errors while falling back; keep the probe quiet.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(_probe_model(), options, providers=[CUDA, CPU])
        session.run(None, {"x": np.zeros(1, dtype=np.float32)})
        return bool(session.get_providers()[0] == CUDA)
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(2)


def execution_providers() -> list[str]:
    """The providers sessions are created with, decided once per process.

    ``PHOENIX_ONNX_PROVIDERS`` overrides; otherwise CUDA first when it really loads, then CPU.
    """
    global _providers
    with _providers_lock:
        if _providers is None:
            configured: list[str] = list(settings.PHOENIX_ONNX_PROVIDERS)
            available = ort.get_available_providers()
            if configured:
                chosen = [p for p in configured if p in available] or [CPU]
                logger.info("onnxruntime providers (configured): %s", ", ".join(chosen))
            elif CUDA in available and _cuda_really_loads():
                chosen = [CUDA, CPU]
                logger.info("onnxruntime: CUDA loads, serving on the GPU with CPU fallback")
            else:
                chosen = [CPU]
                logger.info("onnxruntime: no usable CUDA device, serving on the CPU")
            _providers = chosen
        return list(_providers)


def session_options() -> ort.SessionOptions:
    """Options for small tabular models: few threads, no spinning, full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.PHOENIX_ONNX_INTRA_OP_THREADS
    options.inter_op_num_threads = settings.PHOENIX_ONNX_INTER_OP_THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the cores the web workers need between small calls.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: list[int | None]


# What onnxruntime says when the device, not the input, is at fault. Its Python
# errors carry no error code for this (they are RuntimeError / ORT's Fail with the
# provider's message), so the message is what can be read.
_DEVICE_FAILURE_MARKERS = (
    "cuda",
    "cudnn",
    "cublas",
    "cufft",
    "curand",
    "tensorrt",
    "out of memory",
    "failed to allocate memory",
    "bfcarena",
    "device-side assert",
)


def device_failure(exc: BaseException) -> bool:
    """Whether ``exc`` from a session run means the accelerator failed (out of memory,
    a CUDA/cuDNN/cuBLAS error) rather than that the input was wrong."""
    message = str(exc).lower()
    return any(marker in message for marker in _DEVICE_FAILURE_MARKERS)


@dataclass
class LoadedModel:
    """One warm ONNX Runtime session and what is known about calling it."""

    sha256: str
    session: ort.InferenceSession
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    provider: str
    warm_call_s: float = 0.0
    load_s: float = 0.0
    output_names: list[str] = field(default_factory=list)
    # Where the session came from, so it can be re-created on the CPU.
    path: str = ""
    # Why this version now runs on the CPU instead of its accelerator; None: it does not.
    degraded: str | None = None
    # Called once with (old provider, reason) after a fall back to the CPU.
    on_degraded: Callable[[str, str], None] | None = None
    _fallback_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def inline(self) -> bool:
        """Whether a call is cheap enough to run on the event loop's thread."""
        return self.warm_call_s < INLINE_THRESHOLD_S

    def run(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        """Run the model; outputs in ``output_names`` order.

        A device failure on an accelerator session moves this version to the CPU and
        runs ``feeds`` once more there; any other error (and any error on the CPU) is
        raised as onnxruntime raised it.
        """
        session = self.session
        try:
            return list(session.run(self.output_names, feeds))
        except Exception as exc:
            if self.provider == CPU or not device_failure(exc):
                raise
            self._fall_back_to_cpu(session, exc)
        return list(self.session.run(self.output_names, feeds))

    def _fall_back_to_cpu(self, failed: ort.InferenceSession, exc: BaseException) -> None:
        with self._fallback_lock:
            if self.session is not failed:
                return  # another request already moved it
            if not self.path:
                raise RuntimeError("no model file to re-create the session from") from exc
            cpu = ort.InferenceSession(self.path, session_options(), providers=[CPU])
            previous, reason = self.provider, f"{type(exc).__name__}: {exc}"
            self.session, self.provider, self.degraded = cpu, CPU, reason
        if self.on_degraded is not None:
            self.on_degraded(previous, reason)  # the session cache logs it with the label
        else:
            logger.error(
                "model %s failed on %s, now serving on the CPU (degraded): %s",
                self.sha256[:12],
                previous,
                reason,
            )


# onnxruntime names element types after ONNX ("tensor(float)"); the registry uses numpy's.
_ORT_TO_NUMPY = {"float": "float32", "double": "float64"}


def _specs(args: list[Any]) -> list[TensorSpec]:
    specs = []
    for arg in args:
        element = str(arg.type).removeprefix("tensor(").removesuffix(")")
        shape = [d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or [])]
        specs.append(TensorSpec(arg.name, _ORT_TO_NUMPY.get(element, element), shape))
    return specs


def dummy_feeds(inputs: list[TensorSpec], rows: int = 1) -> dict[str, np.ndarray]:
    """A batch of zeros (or empty strings) shaped like the signature, dynamic dims = ``rows``."""
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        shape = [rows if i == 0 and d is None else (d or 1) for i, d in enumerate(spec.shape)]
        dtype = numpy_dtype(spec.dtype)
        if dtype is np.object_:
            feeds[spec.name] = np.full(shape, "", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=dtype)
    return feeds


def model_load(*, path: str, sha256: str, warm_up_calls: int = 20) -> LoadedModel:
    """Create a session for ``path`` and warm it up with a dummy batch from its signature.

    Returns the loaded model with its median warm single-row call time. Raises whatever
    onnxruntime raises for a file it cannot load.
    """
    started = time.perf_counter()
    session = ort.InferenceSession(path, session_options(), providers=execution_providers())
    inputs = _specs(session.get_inputs())
    outputs = _specs(session.get_outputs())
    model = LoadedModel(
        sha256=sha256,
        session=session,
        inputs=inputs,
        outputs=outputs,
        provider=session.get_providers()[0],
        output_names=[o.name for o in outputs],
        path=path,
    )
    feeds = dummy_feeds(inputs)
    timings: list[float] = []
    for _ in range(max(warm_up_calls, 1)):
        t0 = time.perf_counter()
        model.run(feeds)
        timings.append(time.perf_counter() - t0)
    model.warm_call_s = float(np.median(timings))
    model.load_s = time.perf_counter() - started
    return model
