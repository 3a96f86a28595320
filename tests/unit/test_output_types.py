"""Whether a label fits a model's output type (models_registry.output_types, pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models_registry.output_types import (
    CLASSIFIER,
    OTHER,
    REGRESSOR,
    OutputType,
    label_problem,
    output_type_read,
)
from tests.inference_support import onnx_classifier, onnx_regressor, onnx_text_classifier
from tests.registry_support import EXPAND_MODEL


def test_a_classifier_names_its_classes(tmp_path: Path) -> None:
    read = output_type_read(onnx_classifier(tmp_path / "c.onnx"))

    assert read == OutputType(kind=CLASSIFIER, classes=(0, 1), label_type="int")


def test_a_text_classifier_and_a_regressor_and_a_plain_graph(tmp_path: Path) -> None:
    assert output_type_read(onnx_text_classifier(tmp_path / "t.onnx")).classes == (0, 1, 2)
    assert output_type_read(onnx_regressor(tmp_path / "r.onnx")) == OutputType(kind=REGRESSOR)
    assert output_type_read(EXPAND_MODEL).kind in (REGRESSOR, OTHER)


@pytest.mark.parametrize(
    ("output_type", "value", "fits"),
    [
        (OutputType(CLASSIFIER, (0, 1), "int"), 1, True),
        (OutputType(CLASSIFIER, (0, 1), "int"), 2, False),
        (OutputType(CLASSIFIER, (0, 1), "int"), True, False),
        (OutputType(CLASSIFIER, (0, 1), "int"), "1", False),
        (OutputType(CLASSIFIER, ("no", "yes"), "str"), "yes", True),
        (OutputType(CLASSIFIER, ("no", "yes"), "str"), "maybe", False),
        (OutputType(CLASSIFIER, None, "str"), "anything", True),
        (OutputType(CLASSIFIER, None, "str"), 3, False),
        (OutputType(REGRESSOR), 3, True),
        (OutputType(REGRESSOR), -2.5, True),
        (OutputType(REGRESSOR), float("inf"), False),
        (OutputType(REGRESSOR), float("nan"), False),
        (OutputType(REGRESSOR), "3", False),
        (OutputType(REGRESSOR), False, False),
        (OutputType(OTHER), "x", True),
        (OutputType(OTHER), {"a": 1}, False),
        (OutputType(OTHER), None, False),
    ],
)
def test_label_problem(output_type: OutputType, value: object, fits: bool) -> None:
    assert (label_problem(output_type, value) is None) == fits
