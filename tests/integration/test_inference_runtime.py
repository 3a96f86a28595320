"""inference.runtime: providers, session options from settings, warm-up, dummy batches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference import runtime
from tests.inference_support import onnx_classifier


@pytest.fixture(autouse=True)
def _fresh_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_providers", None)


def test_providers_decided_once_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="inference.runtime"):
        first = runtime.execution_providers()
        second = runtime.execution_providers()

    assert first == second
    assert first[-1] == runtime.CPU
    assert len([r for r in caplog.records if "onnxruntime" in r.getMessage()]) == 1


def test_configured_providers_keep_only_available_ones(settings: Any) -> None:
    settings.PHOENIX_ONNX_PROVIDERS = ["NoSuchExecutionProvider", runtime.CPU]
    assert runtime.execution_providers() == [runtime.CPU]


def test_session_options_follow_settings(settings: Any) -> None:
    settings.PHOENIX_ONNX_INTRA_OP_THREADS = 2
    settings.PHOENIX_ONNX_INTER_OP_THREADS = 3
    options = runtime.session_options()
    assert options.intra_op_num_threads == 2
    assert options.inter_op_num_threads == 3


def test_model_load_warms_up_and_reads_its_signature(tmp_path: Path) -> None:
    model = runtime.model_load(path=str(onnx_classifier(tmp_path / "m.onnx")), sha256="abc")

    assert model.provider == runtime.execution_providers()[0]
    assert [(s.name, s.dtype, s.shape) for s in model.inputs] == [("X", "float32", [None, 3])]
    assert model.output_names == ["label", "probabilities"]
    assert 0 < model.warm_call_s < 0.05
    # A tiny logistic regression is far under the inline threshold on any machine here.
    assert model.inline


def test_dummy_feeds_fill_dynamic_dimensions() -> None:
    feeds = runtime.dummy_feeds(
        [
            runtime.TensorSpec("a", "float32", [None, 4]),
            runtime.TensorSpec("b", "string", [None, 1]),
            runtime.TensorSpec("c", "int64", [2, None]),
        ],
        rows=3,
    )
    assert feeds["a"].shape == (3, 4)
    assert feeds["a"].dtype == np.float32
    assert feeds["b"].dtype == object
    assert feeds["c"].shape == (2, 1)
