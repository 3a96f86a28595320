"""The one way every contender opens the benchmark model: same onnxruntime options everywhere.

One intra-op and one inter-op thread, sequential execution, full graph optimisation
and no spinning (what Phoenix's ``inference/runtime.py`` uses): spinning threads would
burn the cores the servers and the load generator share. CPU provider only. A copy, not
an import: the peers' venvs have no Django, and Phoenix's options come from its settings.
"""

from __future__ import annotations

import onnxruntime as ort


def session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def load_session(path: str) -> ort.InferenceSession:
    """An inference session on the CPU provider with :func:`session_options`."""
    return ort.InferenceSession(path, session_options(), providers=["CPUExecutionProvider"])
