"""Feature naming and external-data paths, with plain values (no database)."""

from __future__ import annotations

import pytest

from models_registry.exceptions import InvalidModelFile
from models_registry.onnx_inspection import _relative_location, feature_names_for


def _inputs(*shapes: list[int | None]) -> list[dict[str, object]]:
    return [{"name": f"in{i}", "dtype": "float32", "shape": s} for i, s in enumerate(shapes)]


@pytest.mark.parametrize(
    ("inputs", "metadata", "expected"),
    [
        (_inputs([None, 3]), {"feature_names": "age, income ,debt"}, ["age", "income", "debt"]),
        (_inputs([None, 1], [None, 1]), {}, ["in0", "in1"]),
        (_inputs([None], [5]), {}, ["in0", "in1"]),
        (_inputs([None, 3]), {}, ["f0", "f1", "f2"]),
        (_inputs([None, 2], [None, 1]), {}, ["f0", "f1", "f2"]),
        (_inputs([None, None]), {}, []),
        (_inputs([1, 3, 224, 224]), {}, []),
        (_inputs([None, 3]), {"feature_names": " , "}, ["f0", "f1", "f2"]),
    ],
)
def test_feature_names(
    inputs: list[dict[str, object]], metadata: dict[str, str], expected: list[str]
) -> None:
    assert feature_names_for(inputs, metadata) == expected


@pytest.mark.parametrize(
    "location",
    ["../../etc/passwd", "/etc/passwd", "weights/../../x", "C:\\\\x.bin", "", "a\\\\..\\\\..\\\\b"],
)
def test_locations_that_leave_the_folder_are_refused(location: str) -> None:
    with pytest.raises(InvalidModelFile, match="outside its own folder"):
        _relative_location(location)


@pytest.mark.parametrize(("location", "expected"), [("w.bin", "w.bin"), ("a\\\\b.bin", "a/b.bin")])
def test_locations_inside_the_folder_are_kept(location: str, expected: str) -> None:
    assert str(_relative_location(location)) == expected
