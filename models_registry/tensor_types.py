"""The one table of tensor element types, and the numeric checks every path shares.

A type has three spellings: the signature's (numpy's name, what the registry stores
and clients see), the Open Inference Protocol's (``FP32``) and onnxruntime's
(``tensor(float)``). The registry reads signatures with it, serving picks input
dtypes with it, and both REST and v2 (HTTP and gRPC) check values with it:

* ``checked_array``: client data declared as a type (v2 ``datatype``) -> an array of
  that type, refusing nulls, non-numbers and values outside the type's range (what a
  v2 client got wrong: 400); fractions for integer types are truncated, as numpy does;
* ``checked_cast``: an array -> the model's input type, refusing values the input
  cannot hold (a float64 feature beyond float32's range: 422, naming the input);
* ``value_bounds``: the range a type holds, which REST tables check in one pass.

Pure: numpy only. Errors are ``TensorValueError``; callers map them to the API.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorType:
    name: str  # the signature's (numpy's) name
    v2: str  # the Open Inference Protocol's datatype
    ort: str  # onnxruntime's type string
    numpy: Any  # the numpy dtype; None where numpy has none (bfloat16)


TENSOR_TYPES: tuple[TensorType, ...] = (
    TensorType("bool", "BOOL", "tensor(bool)", np.bool_),
    TensorType("uint8", "UINT8", "tensor(uint8)", np.uint8),
    TensorType("uint16", "UINT16", "tensor(uint16)", np.uint16),
    TensorType("uint32", "UINT32", "tensor(uint32)", np.uint32),
    TensorType("uint64", "UINT64", "tensor(uint64)", np.uint64),
    TensorType("int8", "INT8", "tensor(int8)", np.int8),
    TensorType("int16", "INT16", "tensor(int16)", np.int16),
    TensorType("int32", "INT32", "tensor(int32)", np.int32),
    TensorType("int64", "INT64", "tensor(int64)", np.int64),
    TensorType("float16", "FP16", "tensor(float16)", np.float16),
    TensorType("float32", "FP32", "tensor(float)", np.float32),
    TensorType("float64", "FP64", "tensor(double)", np.float64),
    TensorType("bfloat16", "BF16", "tensor(bfloat16)", None),
    TensorType("string", "BYTES", "tensor(string)", np.object_),
)
BY_NAME = {t.name: t for t in TENSOR_TYPES}
BY_ORT = {t.ort: t for t in TENSOR_TYPES}
# What a v2 request may declare: the types numpy can hold.
V2_NUMPY: dict[str, Any] = {t.v2: t.numpy for t in TENSOR_TYPES if t.numpy is not None}


def numpy_dtype(name: str) -> Any:
    """The numpy dtype of a signature type name (float32 when unknown or not numpy's)."""
    found = BY_NAME.get(name)
    return found.numpy if found is not None and found.numpy is not None else np.float32


def v2_datatype(name: str) -> str:
    """The v2 datatype of a signature (or numpy array) type name; BYTES when unknown."""
    found = BY_NAME.get(name)
    return found.v2 if found is not None else "BYTES"


def signature_dtype(ort_type: str) -> str:
    """The signature's name for an onnxruntime type string (itself when unknown)."""
    found = BY_ORT.get(ort_type)
    return found.name if found is not None else ort_type


class TensorValueError(ValueError):
    """Values that do not fit a type. ``message`` says what is wrong (the caller says
    where); ``kind``: null, not_a_number, out_of_range or not_finite;
    ``details`` names the tensor, type and range."""

    def __init__(self, message: str, *, kind: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.details = {"kind": kind, **details}


def value_bounds(dtype: Any) -> tuple[float, float] | None:
    """(lowest, highest) finite value ``dtype`` holds; None for bool and non-numbers."""
    kind = np.dtype(dtype).kind
    if kind == "f":
        top = float(np.finfo(dtype).max)
        return -top, top
    if kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return None


def _range_text(dtype: Any) -> str:
    kind = np.dtype(dtype).kind
    if kind in "iu":
        info = np.iinfo(dtype)
        return f"[{info.min}, {info.max}]"
    top = float(np.finfo(dtype).max)
    return f"[-{top:.7g}, {top:.7g}]"


def _refuse(kind: str, what: str, dtype: Any, name: str) -> TensorValueError:
    type_name = np.dtype(dtype).name
    details: dict[str, Any] = {"input": name, "dtype": type_name}
    if kind == "out_of_range":
        details["range"] = _range_text(dtype)
        message = f"{what} outside the {type_name} range {details['range']}"
    else:
        message = what
    return TensorValueError(message, kind=kind, details=details)


def _integers_checked(raw: np.ndarray, target: np.dtype[Any], name: str) -> None:
    if raw.size == 0:
        return
    info = np.iinfo(target)
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all():
            raise _refuse("not_finite", "values are not finite", target, name)
        # Fractions are truncated toward zero (numpy's cast, the protocol's habit), so
        # the truncated value must fit; in float64 info.max may round up (2**63 - 1 ->
        # 2**63), hence the comparison with max + 1.
        whole = np.trunc(raw)
        if whole.min() < float(info.min) or whole.max() >= float(info.max) + 1.0:
            raise _refuse("out_of_range", "values are", target, name)
    elif raw.dtype.kind in "iu" and (int(raw.min()) < info.min or int(raw.max()) > info.max):
        raise _refuse("out_of_range", "values are", target, name)


def _floats_checked(raw: np.ndarray, target: np.dtype[Any], name: str) -> None:
    if raw.size == 0 or raw.dtype.kind not in "fiu":
        return
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise _refuse("not_finite", "values are not finite", target, name)
    top = float(np.finfo(target).max)
    if raw.dtype.kind == "f" and raw.dtype.itemsize <= target.itemsize:
        return  # every finite value fits
    if float(np.abs(raw.astype(np.float64)).max()) > top:
        raise _refuse("out_of_range", "values are", target, name)


_PLAIN = frozenset({int, float})


@functools.cache
def _open_bounds(target: np.dtype[Any]) -> tuple[float, float, bool] | None:
    """(low, high, exclusive) a plain value must lie within for ``target``: integers
    take what truncates into their range (low - 1 < v < high + 1, exactly, since Python
    compares ints and floats exactly); floats their finite range, inclusive."""
    if target.kind in "iu":
        info = np.iinfo(target)
        return info.min - 1, info.max + 1, True
    if target.kind == "f":
        top = float(np.finfo(target).max)
        return -top, top, False
    return None


def _plain_numbers(data: Any, target: np.dtype[Any]) -> np.ndarray | None:
    """The array, when ``data`` is a flat list of ints and floats that all fit ``target``
    (the common request), checked as Python objects; None: the caller looks closer."""
    if type(data) is not list or not data or not set(map(type, data)) <= _PLAIN:
        return None
    bounds = _open_bounds(target)
    if bounds is None:
        return None
    low, high, exclusive = bounds
    try:
        total = sum(data)
        if total != total:  # NaN somewhere (or inf - inf)
            return None
        smallest, largest = min(data), max(data)
    except OverflowError:
        return None
    inside = (
        (low < smallest and largest < high) if exclusive else (low <= smallest and largest <= high)
    )
    return np.array(data, dtype=target) if inside else None


def checked_array(data: Any, dtype: Any, *, name: str) -> np.ndarray:
    """``data`` (nested lists of JSON values, or a sequence) as an array of ``dtype``.

    Raises TensorValueError for a null, a value that is not a number or not finite, or
    one outside the type's range (after truncation for integer types); ValueError for
    ragged data. Strings (object dtype) are the caller's business.
    """
    target = np.dtype(dtype)
    fast = _plain_numbers(data, target)
    if fast is not None:
        return fast
    raw = np.asarray(data)  # ValueError when ragged
    if raw.dtype == object:
        flat = raw.reshape(-1).tolist()
        if any(value is None for value in flat):
            raise _refuse("null", "null is not a value", target, name)
        if any(isinstance(value, (str, bytes, list, dict)) for value in flat):
            raise _refuse("not_a_number", "values must be numbers", target, name)
        try:  # ints past 64 bits: read as floats, then range-checked
            raw = raw.astype(np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _refuse("not_a_number", "values must be numbers", target, name) from exc
    elif raw.dtype.kind in "USV":
        raise _refuse("not_a_number", "values must be numbers", target, name)
    if target.kind in "iu":
        _integers_checked(raw, target, name)
    elif target.kind == "f":
        _floats_checked(raw, target, name)
    return raw.astype(target, copy=False)


def checked_cast(array: np.ndarray, dtype: Any, *, name: str) -> np.ndarray:
    """``array`` converted to the model input's ``dtype``. Raises TensorValueError when
    a value does not fit it (out of range, or not finite)."""
    target = np.dtype(dtype)
    if array.dtype == target:
        return array
    if array.dtype.kind in "fiu":
        if target.kind in "iu":
            _integers_checked(array, target, name)
        elif target.kind == "f":
            _floats_checked(array, target, name)
    return array.astype(target, copy=False)
