"""The one dtype table and the numeric checks REST and v2 share (property tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.prediction import tables
from models_registry.tensor_types import (
    BY_ORT,
    TENSOR_TYPES,
    V2_NUMPY,
    TensorValueError,
    checked_array,
    checked_cast,
    numpy_dtype,
    signature_dtype,
    v2_datatype,
)

INTEGER_TYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FLOAT_TYPES = [np.float16, np.float32, np.float64]
# Integers far past 64 bits both ways, and floats of every size (no NaN: JSON has none).
integers = st.integers(min_value=-(2**70), max_value=2**70)
floats = st.floats(allow_nan=False, allow_infinity=False)


def test_every_spelling_of_a_type_agrees() -> None:
    for kind in TENSOR_TYPES:
        if kind.numpy is not None and kind.name != "string":
            assert np.dtype(kind.numpy).name == kind.name
            assert V2_NUMPY[kind.v2] is kind.numpy
        assert signature_dtype(kind.ort) == kind.name
        assert v2_datatype(kind.name) == kind.v2
        assert BY_ORT[kind.ort] is kind
    assert numpy_dtype("bfloat16") is np.float32  # numpy has none: as before
    assert numpy_dtype("no-such-type") is np.float32
    assert v2_datatype("object") == "BYTES"
    assert "BF16" not in V2_NUMPY


@settings(max_examples=300, deadline=None)
@given(dtype=st.sampled_from(INTEGER_TYPES), values=st.lists(integers, min_size=1, max_size=8))
def test_integers_are_kept_exactly_or_refused_as_out_of_range(
    dtype: Any, values: list[int]
) -> None:
    info = np.iinfo(dtype)
    if not all(info.min <= v <= info.max for v in values):
        with pytest.raises(TensorValueError) as raised:
            checked_array(values, dtype, name="x")
        assert raised.value.kind == "out_of_range"
        assert raised.value.details["range"] == f"[{info.min}, {info.max}]"
        return
    array = checked_array(values, dtype, name="x")
    assert array.dtype == np.dtype(dtype)
    assert [int(v) for v in array] == values


@settings(max_examples=300, deadline=None)
@given(dtype=st.sampled_from(INTEGER_TYPES), values=st.lists(floats, min_size=1, max_size=8))
def test_floats_for_integer_types_are_truncated_or_refused(dtype: Any, values: list[float]) -> None:
    info = np.iinfo(dtype)
    if not all(info.min <= int(v) <= info.max for v in values):  # int() truncates
        with pytest.raises(TensorValueError) as raised:
            checked_array(values, dtype, name="x")
        assert raised.value.kind == "out_of_range"
        return
    array = checked_array(values, dtype, name="x")
    assert [int(v) for v in array] == [int(v) for v in values]


@settings(max_examples=300, deadline=None)
@given(
    dtype=st.sampled_from(FLOAT_TYPES),
    values=st.lists(st.one_of(floats, integers), min_size=1, max_size=8),
)
def test_floats_beyond_the_type_are_refused_and_the_rest_stay_finite(
    dtype: Any, values: list[float]
) -> None:
    top = float(np.finfo(dtype).max)
    if not all(abs(float(v)) <= top for v in values):
        with pytest.raises(TensorValueError) as raised:
            checked_array(values, dtype, name="x")
        assert raised.value.kind == "out_of_range"
        return
    array = checked_array(values, dtype, name="x")
    assert array.dtype == np.dtype(dtype)
    assert np.isfinite(array).all()


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from([*INTEGER_TYPES, *FLOAT_TYPES, np.bool_]),
    values=st.lists(st.one_of(st.none(), integers, floats, st.booleans()), min_size=1),
)
def test_mixed_values_give_an_array_or_a_tensor_value_error_never_anything_else(
    dtype: Any, values: list[Any]
) -> None:
    if any(v is None for v in values):
        with pytest.raises(TensorValueError) as raised:
            checked_array(values, dtype, name="x")
        assert raised.value.kind == "null"
        return
    try:
        array = checked_array(values, dtype, name="x")
    except TensorValueError as error:  # the only other way out: a value past the type
        kind = error.kind
    else:
        kind = "ok"
        assert array.dtype == np.dtype(dtype)
        assert array.shape == (len(values),)
    assert kind in ("ok", "out_of_range")


@settings(max_examples=300, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=8))
def test_cast_to_a_float32_input_refuses_what_would_become_inf(values: list[float]) -> None:
    source = np.array(values, dtype=np.float64)
    top = float(np.finfo(np.float32).max)
    if np.abs(source).max() > top:
        with pytest.raises(TensorValueError) as raised:
            checked_cast(source, np.float32, name="X")
        assert raised.value.details["input"] == "X"
        return
    cast = checked_cast(source, np.float32, name="X")
    assert np.isfinite(cast).all()
    assert cast.dtype == np.float32


@settings(max_examples=300, deadline=None)
@given(row=st.fixed_dictionaries({"a": floats, "b": st.one_of(floats, integers), "c": floats}))
def test_rest_tables_name_exactly_the_features_a_float32_input_cannot_hold(
    row: dict[str, float],
) -> None:
    layout = tables.layout_for(["a", "b", "c"], [("X", np.float32, [None, 3])])
    assert layout is not None
    top = float(np.finfo(np.float32).max)
    beyond = [name for name in ("a", "b", "c") if abs(float(row[name])) > top]
    if beyond:
        with pytest.raises(tables.UnusableFeatures) as raised:
            tables.table(row, layout.feature_names, max_rows=10, bounds=layout.bounds)
        assert raised.value.details["out_of_range"] == beyond
        assert all(name in raised.value.message for name in beyond)
        return
    matrix, rows = tables.table(row, layout.feature_names, max_rows=10, bounds=layout.bounds)
    assert np.isfinite(tables.feeds(layout, matrix)["X"]).all()
    assert rows == [row]


@pytest.mark.parametrize(
    ("dtype", "data", "kind"),
    [
        (np.int8, [52000], "out_of_range"),
        (np.uint8, [-1], "out_of_range"),
        (np.int64, [1e30], "out_of_range"),
        (np.int64, [2.0**63], "out_of_range"),
        (np.float32, [1e39], "out_of_range"),
        (np.float32, [None], "null"),
        (np.float32, ["1"], "not_a_number"),
        (np.float64, [[1.0], [None]], "null"),
    ],
)
def test_the_issue_s_examples(dtype: Any, data: list[Any], kind: str) -> None:
    with pytest.raises(TensorValueError) as raised:
        checked_array(data, dtype, name="x")
    assert raised.value.kind == kind


def test_largest_values_of_a_type_are_accepted() -> None:
    assert checked_array([2**63 - 1, -(2**63)], np.int64, name="x").tolist() == [
        2**63 - 1,
        -(2**63),
    ]
    assert checked_array([2**64 - 1], np.uint64, name="x").tolist() == [2**64 - 1]
    assert checked_array([127.9, -128.9], np.int8, name="x").tolist() == [127, -128]
    assert np.isfinite(checked_array([3.4e38], np.float32, name="x")).all()


@pytest.mark.parametrize(
    "features",
    [
        {"a": 10**400, "b": 0.0, "c": 0.0},  # what Python's json would hand over
        [[0.0, 0.0, 10**400]],
        {"a": float("inf"), "b": float("-inf"), "c": 0.0},
        [[float("inf"), 0.0, 0.0]],
    ],
)
def test_rest_tables_name_values_past_any_float_or_infinite(features: Any) -> None:
    layout = tables.layout_for(["a", "b", "c"], [("X", np.float32, [None, 3])])
    assert layout is not None

    with pytest.raises(tables.UnusableFeatures) as raised:
        tables.table(features, layout.feature_names, max_rows=10, bounds=layout.bounds)

    assert raised.value.details["out_of_range"]
