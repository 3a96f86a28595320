"""Reference (training) data tables: parse and check them against a model's features.

A CSV must have a header naming every feature once (any order); a ``.npy`` file is a
2-D array whose columns are already in feature order. Values must be numbers, except
in the columns of text features (a model input of type string, named in
``text_features``): those hold the texts themselves, and the table is then an object
array (str in text columns, float elsewhere).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import InvalidReferenceData

SUFFIXES = ("csv", "npy")


def text_feature_names(signature: dict[str, Any], feature_names: Sequence[str]) -> list[str]:
    """The features that are texts: model inputs of type string named as features."""
    texts = {s.get("name") for s in signature.get("inputs", []) if s.get("dtype") == "string"}
    return [name for name in feature_names if name in texts]


def reference_suffix(filename: str) -> str:
    """The table format named by ``filename``; raises InvalidReferenceData if unsupported."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in SUFFIXES:
        raise InvalidReferenceData(
            f"Reference data must be a .csv file with a header or a .npy array, not {filename!r}."
        )
    return suffix


def reference_table_read(
    path: Path,
    *,
    suffix: str,
    feature_names: list[str],
    text_features: Collection[str] = (),
) -> np.ndarray:
    """Rows x features (float64, columns in ``feature_names`` order; an object array
    when some features are ``text_features``).

    Raises InvalidReferenceData with the first problem found.
    """
    if not feature_names:
        raise InvalidReferenceData(
            "This model's inputs have no tabular feature names, so reference data cannot be "
            "checked against them."
        )
    texts = [j for j, name in enumerate(feature_names) if name in set(text_features)]
    if suffix == "csv":
        table = _read_csv(path, feature_names, texts)
    else:
        table = _read_npy(path, feature_names, texts)
    if table.shape[0] == 0:
        raise InvalidReferenceData("The reference data has no rows.")
    numeric = [j for j in range(len(feature_names)) if j not in texts]
    if texts:
        if not np.isfinite(table[:, numeric].astype(np.float64)).all():
            raise InvalidReferenceData("The reference data holds NaN or infinite values.")
        return table
    if not np.isfinite(table).all():
        raise InvalidReferenceData("The reference data holds NaN or infinite values.")
    return table


def _read_csv(path: Path, feature_names: list[str], texts: list[int]) -> np.ndarray:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            _check_header(header, feature_names)
            order = [header.index(name) for name in feature_names]
            rows: list[list[Any]] = []
            for line_no, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise InvalidReferenceData(
                        f"Line {line_no} has {len(row)} values; the header names {len(header)}."
                    )
                rows.append(
                    [
                        row[i] if j in texts else _number(row[i], line_no, header[i])
                        for j, i in enumerate(order)
                    ]
                )
    except UnicodeDecodeError as exc:
        raise InvalidReferenceData("The reference CSV is not UTF-8 text.") from exc
    except csv.Error as exc:
        raise InvalidReferenceData(f"The reference CSV could not be read: {exc}") from exc
    dtype: Any = object if texts else np.float64
    table = np.empty((len(rows), len(feature_names)), dtype=dtype)
    if rows:
        table[:] = rows
    return table


def _check_header(header: list[str], feature_names: list[str]) -> None:
    if sorted(header) != sorted(feature_names):
        raise InvalidReferenceData(
            f"The reference CSV header must name the model's {len(feature_names)} features "
            f"{feature_names}; it names {len(header)}: {header}.",
            details={"expected": feature_names, "found": header},
        )


def _number(cell: str, line_no: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise InvalidReferenceData(
            f"Line {line_no}, column {column!r}: {cell!r} is not a number."
        ) from None
    if math.isnan(value):
        raise InvalidReferenceData(f"Line {line_no}, column {column!r} is empty or NaN.")
    return value


def _read_npy(path: Path, feature_names: list[str], texts: list[int]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidReferenceData(f"The reference file is not a .npy array: {exc}") from exc
    allowed = "biufU" if texts else "biuf"
    if not isinstance(array, np.ndarray) or array.dtype.kind not in allowed:
        raise InvalidReferenceData(
            "The reference array must hold numbers only"
            + (" (texts as a unicode array)." if texts else ".")
        )
    if array.ndim == 1 and len(feature_names) == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != len(feature_names):
        raise InvalidReferenceData(
            f"The reference array must be rows x {len(feature_names)} features "
            f"{feature_names}; its shape is {list(array.shape)}.",
            details={"expected": feature_names, "shape": list(array.shape)},
        )
    if texts:
        table: np.ndarray = array.astype(object)
        numeric = [j for j in range(array.shape[1]) if j not in texts]
        try:
            table[:, numeric] = array[:, numeric].astype(np.float64)
        except ValueError as exc:
            raise InvalidReferenceData(
                f"Non-text reference columns must be numbers: {exc}"
            ) from exc
        table[:, texts] = array[:, texts].astype(str)
        return table
    numbers: np.ndarray = array.astype(np.float64)
    return numbers
