"""Load an uploaded model and run it once, in a child process held to a budget.

A model of a few hundred bytes can describe a graph whose constant folding or first
run allocates gigabytes (``ConstantOfShape`` of 16000 x 16000, say). Loaded in the
web process, that memory is taken from every request it serves, and often never
given back. So the trial runs in a child forked from a small, single-threaded
server process (multiprocessing's forkserver, which has onnxruntime and numpy
imported already, so a trial starts in milliseconds): the child caps its own
address space at its start-up size plus ``memory_bytes`` (``RLIMIT_AS``), and its
CPU time, before it loads anything; the parent waits at most ``timeout_s`` and
then kills it. An allocation the cap refuses fails inside onnxruntime (its
``bad_alloc``) or numpy (``MemoryError``), which the child reports.

The trial creates the session as serving does (all graph optimisations) and runs it
once on zeros shaped like the inputs (dynamic dimensions as 1). A run that fails for
another reason (the zeros are not values the graph accepts) does not refuse the
model: it is reported, and serving's warm-up says the same. Pure: no Django.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tensor_types import numpy_dtype, signature_dtype

# What onnxruntime and numpy say when an allocation is refused.
_ALLOCATION_FAILURES = ("bad_alloc", "failed to allocate memory", "memoryerror", "out of memory")

_context_lock = threading.Lock()
_context: Any = None


@dataclass
class Trial:
    """What the child found. ``outcome``: ok, load_failed, over_memory, over_time,
    crashed. ``inputs``/``outputs``: (name, onnxruntime type, shape) of the session."""

    outcome: str
    error: str = ""
    inputs: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    outputs: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    # Why the run on zeros failed, when it failed for a reason other than memory.
    run_error: str = ""


def _multiprocessing() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            methods = multiprocessing.get_all_start_methods()
            method = "forkserver" if "forkserver" in methods else "spawn"
            context = multiprocessing.get_context(method)
            if method == "forkserver":
                # Imported once in the server, not per trial; and not __main__, which
                # under a web server or pytest is not ours to import again.
                context.set_forkserver_preload(["numpy", "onnxruntime", __name__])
            _context = context
        return _context


def onnx_model_trial(path: str, *, memory_bytes: int, timeout_s: float) -> Trial:
    """Load and run the model at ``path`` in a child process within the budget."""
    if multiprocessing.current_process().daemon:
        # A Celery prefork worker (retraining registers models) is a daemonic process,
        # which multiprocessing refuses children: start a fresh interpreter instead.
        return _trial_in_subprocess(path, memory_bytes=memory_bytes, timeout_s=timeout_s)
    context = _multiprocessing()
    receiver, sender = context.Pipe(duplex=False)
    cpu_s = max(1, math.ceil(timeout_s) + 1)
    child = context.Process(
        target=_trial_child,
        args=(path, memory_bytes, cpu_s, sender),
        name="phoenix-model-trial",
        daemon=True,
    )
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            return Trial("over_time", error=f"no answer within {timeout_s:g} s")
        try:
            answer: Trial = receiver.recv()
        except EOFError:  # the child died without a word: killed, or a signal
            child.join(5)
            return Trial("crashed", error=f"the validating process ended ({child.exitcode})")
        return answer
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _limit(memory_bytes: int, cpu_s: int) -> None:
    try:
        import resource
    except ImportError:  # not a Unix: the parent's timeout is the only bound
        return
    if memory_bytes > 0:
        start = _address_space_bytes()
        if start:
            cap = start + memory_bytes
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))


def _over_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, MemoryError) or any(m in text for m in _ALLOCATION_FAILURES)


def _zeros(ort_type: str, shape: list[Any]) -> Any:
    import numpy as np

    dims = [d if isinstance(d, int) and d >= 0 else 1 for d in shape]
    if signature_dtype(ort_type) == "string":
        return np.full(dims, "", dtype=object)
    return np.zeros(dims, dtype=numpy_dtype(signature_dtype(ort_type)))


def _trial_child(path: str, memory_bytes: int, cpu_s: int, sender: Any) -> None:
    """In the child: limit, load, run once on zeros, report one Trial."""
    try:
        _limit(memory_bytes, cpu_s)
        sender.send(_trial(path))
    except BaseException as exc:  # the report is the child's only way out
        outcome = "over_memory" if _over_memory(exc) else "crashed"
        # The parent may be gone, or the pipe: then there is nobody to tell.
        with contextlib.suppress(Exception):
            sender.send(Trial(outcome, error=str(exc)[:500]))
    finally:
        sender.close()
        os._exit(0)  # no atexit hooks or thread joins inherited from the server


def _trial(path: str) -> Trial:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # the outcome is reported, not logged from here
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        return Trial("over_memory" if _over_memory(exc) else "load_failed", error=str(exc)[:500])
    trial = Trial(
        "ok",
        inputs=[(a.name, a.type, list(a.shape or [])) for a in session.get_inputs()],
        outputs=[(a.name, a.type, list(a.shape or [])) for a in session.get_outputs()],
    )
    try:
        feeds = {name: _zeros(kind, shape) for name, kind, shape in trial.inputs}
        session.run(None, feeds)
    except Exception as exc:
        if _over_memory(exc):
            return Trial("over_memory", error=str(exc)[:500])
        trial.run_error = str(exc)[:500]
    return trial


def _trial_in_subprocess(path: str, *, memory_bytes: int, timeout_s: float) -> Trial:
    """The same trial in ``python -m models_registry.onnx_trial`` (slower to start: it
    imports onnxruntime itself), answering one JSON line."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    cpu_s = max(1, math.ceil(timeout_s) + 1)
    command = [sys.executable, "-m", __name__, path, str(memory_bytes), str(cpu_s)]
    try:
        done = subprocess.run(  # noqa: S603 (our own interpreter and module)
            command, capture_output=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return Trial("over_time", error=f"no answer within {timeout_s:g} s")
    try:
        answer = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Trial("crashed", error=f"the validating process ended ({done.returncode})")
    return Trial(
        answer["outcome"],
        error=answer["error"],
        inputs=[(n, k, list(shape)) for n, k, shape in answer["inputs"]],
        outputs=[(n, k, list(shape)) for n, k, shape in answer["outputs"]],
        run_error=answer["run_error"],
    )


def _subprocess_main(arguments: list[str]) -> None:
    path, memory_bytes, cpu_s = arguments[0], int(arguments[1]), int(arguments[2])
    try:
        _limit(memory_bytes, cpu_s)
        trial = _trial(path)
    except BaseException as exc:
        trial = Trial("over_memory" if _over_memory(exc) else "crashed", error=str(exc)[:500])
    sys.stdout.write(json.dumps(dataclasses.asdict(trial)) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    _subprocess_main(sys.argv[1:])
