"""Tables of named features -> the model's input tensors. Pure: numpy, the dtype table.

A REST body carries features as one object, a list of objects, or a list of rows in
the model's feature order. ``table`` turns any of them into a float64 matrix (and
the per-row feature dicts the event log keeps) in one C-level pass when the body is
well formed, the common case, and otherwise finds and names what is wrong (values the
model's inputs cannot hold included, by the shared dtype table's ranges).
``Layout`` says how that matrix feeds the model: one rows x features input, or one
input per feature. Errors are this module's own (``TableError``); the prediction
service maps them to the API's error categories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from models_registry.tensor_types import value_bounds

Feeds = dict[str, np.ndarray]


class TableError(Exception):
    """A body that cannot become the model's input; ``details`` names what is wrong."""

    def __init__(self, message: str, *, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class MalformedTable(TableError):
    """The body has the wrong shape (400)."""


class TooManyRows(TableError):
    """More rows than one request may carry (413)."""


class UnusableFeatures(TableError):
    """Valid JSON, but features missing, unexpected or not numbers (422)."""


@dataclass(frozen=True)
class Layout:
    """How a table of named features becomes the model's inputs."""

    feature_names: tuple[str, ...]
    # "matrix": one rows x features input; "columns": one input per feature.
    mode: str
    input_names: tuple[str, ...]
    input_dtypes: tuple[Any, ...]
    # The values every input can hold (float32: +-3.4e38); None: not checked (bool).
    bounds: tuple[float, float] | None = None
    # Features fed to string inputs: their values are texts, not numbers.
    text_features: frozenset[str] = frozenset()


def _is_text(dtype: Any) -> bool:
    return bool(np.dtype(dtype).kind in "OUS")


def _bounds(dtypes: Sequence[Any]) -> tuple[float, float] | None:
    found = [b for b in map(value_bounds, dtypes) if b is not None]
    if not found:
        return None
    return max(b[0] for b in found), min(b[1] for b in found)


def layout_for(
    feature_names: Sequence[str],
    inputs: Sequence[tuple[str, Any, Sequence[int | None]]],
) -> Layout | None:
    """The tabular layout of a model whose ``inputs`` are (name, numpy dtype, shape),
    or None when it takes no table of these features."""
    names = tuple(feature_names)
    if not names:
        return None
    if len(inputs) == 1 and len(inputs[0][2]) == 2:
        name, dtype, shape = inputs[0]
        if shape[1] in (None, len(names)):
            texts = frozenset(names) if _is_text(dtype) else frozenset()
            bounds = None if texts else _bounds([dtype])
            return Layout(names, "matrix", (name,), (dtype,), bounds, texts)
        return None
    if len(inputs) == len(names):
        by_name = {spec[0]: spec for spec in inputs}
        ordered = [by_name.get(n) for n in names]
        specs = [s for s in ordered if s is not None] if all(ordered) else list(inputs)
        dtypes = tuple(s[1] for s in specs)
        texts = frozenset(n for n, d in zip(names, dtypes, strict=True) if _is_text(d))
        numeric = [d for d in dtypes if not _is_text(d)]
        return Layout(names, "columns", tuple(s[0] for s in specs), dtypes, _bounds(numeric), texts)
    return None


def rows_check(rows: int, limit: int) -> None:
    """Raises TooManyRows past ``limit`` rows per request."""
    if rows > limit:
        raise TooManyRows(
            f"{rows} rows is more than the limit of {limit} per request.",
            details={"rows": rows, "limit": limit},
        )


def is_number(value: Any) -> bool:
    kind = type(value)
    return (kind is float or kind is int) and value == value  # NaN is not a feature value


_NUMERIC = frozenset({int, float})


def _numeric_table(
    rows: list[dict[str, Any]], names: Sequence[str], bounds: tuple[float, float] | None
) -> np.ndarray | None:
    """The matrix when every row has exactly ``names``, all plain numbers within
    ``bounds``; None otherwise (the caller then finds and names what is wrong)."""
    width = len(names)
    if any(len(row) != width for row in rows):
        return None
    pick = itemgetter(*names)
    try:
        values = [pick(row) for row in rows] if width > 1 else [[row[names[0]]] for row in rows]
    except KeyError:
        return None
    return _numeric_matrix(values, bounds)


def _numeric_matrix(values: list[Any], bounds: tuple[float, float] | None) -> np.ndarray | None:
    """Rows of plain numbers as a float64 matrix; None if any value is of another type
    (bool, str, None...), NaN, or outside ``bounds``. Checked in C-level passes over the
    values as Python objects: for a few rows cheaper than numpy's reductions."""
    flat = list(chain.from_iterable(values))
    if not set(map(type, flat)) <= _NUMERIC:
        return None
    try:
        total = sum(flat)
        if total != total:  # NaN (or inf - inf) somewhere
            return None
        if bounds is not None and (min(flat) < bounds[0] or max(flat) > bounds[1]):
            return None
        return np.array(values, dtype=np.float64)
    except OverflowError:  # an int past float64: the caller names it
        return None


def _in_bounds(
    matrix: np.ndarray, names: Sequence[str], bounds: tuple[float, float] | None
) -> None:
    """Raises UnusableFeatures naming the features with values the model's inputs
    cannot hold (a float64 feature beyond float32's range would turn into inf)."""
    if bounds is None:
        return
    low, high = bounds
    if matrix.min() >= low and matrix.max() <= high:
        return  # the common case: two reductions
    outside = ~((matrix >= low) & (matrix <= high))
    bad = [names[j] for j in range(len(names)) if outside[:, j].any()]
    raise UnusableFeatures(
        f"Feature values out of the range the model's input holds ({low:.7g} to {high:.7g}): "
        f"{', '.join(bad)}.",
        details={"out_of_range": bad, "range": [low, high]},
    )


def _fits_float(value: Any) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _slow_matrix(
    values: list[list[Any]], names: Sequence[str], bounds: tuple[float, float] | None
) -> np.ndarray:
    """Rows of numbers as a float64 matrix; raises UnusableFeatures naming the features
    out of ``bounds`` (or past float64: ints of hundreds of digits)."""
    try:
        matrix = np.array(values, dtype=np.float64)
    except OverflowError:
        huge = [n for j, n in enumerate(names) if any(not _fits_float(r[j]) for r in values)]
        raise UnusableFeatures(
            f"Feature values beyond any float: {', '.join(huge)}.",
            details={"out_of_range": huge},
        ) from None
    _in_bounds(matrix, names, bounds)
    return matrix


def bounds_check(matrix: np.ndarray, layout: Layout) -> None:
    """Raises UnusableFeatures naming features whose values ``layout``'s inputs cannot
    hold (for tensors that did not come through ``table``)."""
    if matrix.size:
        _in_bounds(matrix, layout.feature_names, layout.bounds)


def _row_problems(row: Mapping[str, Any], names: Sequence[str]) -> dict[str, list[str]]:
    if len(row) == len(names) and all(is_number(row.get(n)) for n in names):
        return {}  # the common case, checked in one pass
    missing = [n for n in names if n not in row or row[n] is None]
    allowed = set(names)
    unexpected = [k for k in row if k not in allowed]
    non_numeric = [n for n in names if row.get(n) is not None and not is_number(row[n])]
    return {
        k: v
        for k, v in (("missing", missing), ("unexpected", unexpected), ("non_numeric", non_numeric))
        if v
    }


def unusable(problems: dict[str, Any], row: int | None = None) -> UnusableFeatures:
    """The 422 for ``problems`` ({kind: [feature names]}), in ``row`` of a batch."""
    parts = [
        f"{kind.replace('_', '-')}: {', '.join(map(str, names))}"
        for kind, names in problems.items()
        if kind != "feature_status"
    ]
    where = f" in row {row}" if row is not None else ""
    details = dict(problems)
    if row is not None:
        details["row"] = row
    return UnusableFeatures(f"Unusable features{where} ({'; '.join(parts)}).", details=details)


def _body_rows(features: Any, *, max_rows: int, values: str) -> list[Any]:
    """The body's rows (one object is one row). Raises MalformedTable for another type
    or no rows, TooManyRows past ``max_rows``."""
    if isinstance(features, dict):
        rows: list[Any] = [features]
    elif isinstance(features, list):
        rows = features
    else:
        raise MalformedTable(
            f"'features' must be an object of {values}, a list of such objects, "
            "or a list of rows in the model's feature order.",
            details={"features": "wrong type"},
        )
    if not rows:
        raise MalformedTable("'features' has no rows.", details={"features": "empty"})
    rows_check(len(rows), max_rows)
    return rows


def table(
    features: Any,
    names: Sequence[str],
    *,
    max_rows: int,
    bounds: tuple[float, float] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Rows x features (float64) and the per-row feature dicts, from a request body.

    Raises MalformedTable for a body of the wrong shape, TooManyRows past ``max_rows``,
    UnusableFeatures naming missing, unexpected or non-numeric features, or features
    with values outside ``bounds`` (the model's inputs' range, ``Layout.bounds``).
    """
    rows = _body_rows(features, max_rows=max_rows, values="named features")
    width = len(names)
    if all(isinstance(r, dict) for r in rows):
        fast = _numeric_table(rows, names, bounds)
        if fast is not None:
            # Each row holds exactly the model's features: it is its own event record.
            return fast, rows
        for i, row in enumerate(rows):
            problems = _row_problems(row, names)
            if problems:
                raise unusable(problems, i if len(rows) > 1 else None)
        # Every value a number: some lie outside what the inputs hold.
        return _slow_matrix([[row[n] for n in names] for row in rows], names, bounds), rows
    if all(isinstance(r, list) for r in rows):
        if all(len(row) == width for row in rows):
            matrix_or_none = _numeric_matrix(rows, bounds)
            if matrix_or_none is not None:  # the common case; else find and name the problem
                return matrix_or_none, [dict(zip(names, row, strict=False)) for row in rows]
        for i, row in enumerate(rows):
            if len(row) != width:
                raise UnusableFeatures(
                    f"Row {i} has {len(row)} values; the model takes {width} ({', '.join(names)}).",
                    details={"row": i, "expected": list(names), "got": len(row)},
                )
            bad = [names[j] for j, v in enumerate(row) if not is_number(v)]
            if bad:
                raise unusable({"non_numeric": bad}, i)
        matrix = _slow_matrix(rows, names, bounds)
        return matrix, [dict(zip(names, row, strict=True)) for row in rows]
    raise MalformedTable(
        "'features' mixes objects and lists; send one or the other.",
        details={"features": "mixed rows"},
    )


def text_table(
    features: Any,
    names: Sequence[str],
    *,
    text_features: frozenset[str],
    max_rows: int,
    bounds: tuple[float, float] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """As ``table``, for a model with string inputs: rows x features as an object array
    (str in the ``text_features`` columns, float elsewhere) and the per-row dicts.

    A text feature's value must be a string (``{"text": "..."}``); the others numbers.
    Raises MalformedTable, TooManyRows, UnusableFeatures (``non_text`` names features
    whose values are not strings) as ``table`` does.
    """
    rows = _body_rows(
        features, max_rows=max_rows, values="named features (a string for each text feature)"
    )
    width = len(names)
    if all(isinstance(r, list) for r in rows):
        for i, values in enumerate(rows):
            if len(values) != width:
                raise UnusableFeatures(
                    f"Row {i} has {len(values)} values; the model takes {width} "
                    f"({', '.join(names)}).",
                    details={"row": i, "expected": list(names), "got": len(values)},
                )
        rows = [dict(zip(names, values, strict=True)) for values in rows]
    elif not all(isinstance(r, dict) for r in rows):
        raise MalformedTable(
            "'features' mixes objects and lists; send one or the other.",
            details={"features": "mixed rows"},
        )
    matrix = np.empty((len(rows), width), dtype=object)
    numeric = [j for j, n in enumerate(names) if n not in text_features]
    for i, row in enumerate(rows):
        problems = _text_row_problems(row, names, text_features)
        if problems:
            raise unusable(problems, i if len(rows) > 1 else None)
        matrix[i] = [row[n] for n in names]
    if numeric:
        checked = _slow_matrix(
            [[row[names[j]] for j in numeric] for row in rows], [names[j] for j in numeric], bounds
        )
        matrix[:, numeric] = checked
    return matrix, rows


def _text_row_problems(
    row: Mapping[str, Any], names: Sequence[str], text_features: frozenset[str]
) -> dict[str, list[str]]:
    missing = [n for n in names if n not in row or row[n] is None]
    allowed = set(names)
    unexpected = [k for k in row if k not in allowed]
    present = [n for n in names if row.get(n) is not None]
    non_text = [n for n in present if n in text_features and not isinstance(row[n], str)]
    non_numeric = [n for n in present if n not in text_features and not is_number(row[n])]
    return {
        k: v
        for k, v in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("non_text", non_text),
            ("non_numeric", non_numeric),
        )
        if v
    }


def feeds(layout: Layout, matrix: np.ndarray) -> Feeds:
    """The model's input tensors for a rows x features matrix."""
    if layout.mode == "matrix":
        return {layout.input_names[0]: matrix.astype(layout.input_dtypes[0], copy=False)}
    return {
        name: matrix[:, j : j + 1].astype(dtype)
        for j, (name, dtype) in enumerate(zip(layout.input_names, layout.input_dtypes, strict=True))
    }


def logged_rows(layout: Layout, tensors: Feeds) -> list[dict[str, Any]]:
    """The named features of each row, from tensors already shaped for the model
    (the v2 protocol's); [] when they do not form a table of the features."""
    try:
        matrix = (
            tensors[layout.input_names[0]]
            if layout.mode == "matrix"
            else np.column_stack([tensors[name].reshape(-1) for name in layout.input_names])
        )
    except ValueError:  # ragged columns: the model refuses them, with a 422
        return []
    if matrix.ndim != 2 or matrix.shape[1] != len(layout.feature_names):
        return []
    return [dict(zip(layout.feature_names, r, strict=True)) for r in matrix.tolist()]
