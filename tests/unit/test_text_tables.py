"""Request bodies with text features -> input tensors (inference.prediction.tables),
whatever the model: a single string input, or strings beside numbers."""

from __future__ import annotations

import numpy as np
import pytest

from inference.prediction import tables


def test_a_string_matrix_input_makes_its_feature_a_text_feature() -> None:
    layout = tables.layout_for(["text"], [("text", np.object_, [None, 1])])

    assert layout is not None
    assert layout.text_features == frozenset({"text"})
    assert layout.bounds is None
    matrix, rows = tables.text_table(
        [{"text": "a b"}, {"text": "c"}], ["text"], text_features=layout.text_features, max_rows=10
    )
    feeds = tables.feeds(layout, matrix)
    assert feeds["text"].dtype == object
    assert feeds["text"].tolist() == [["a b"], ["c"]]
    assert rows == [{"text": "a b"}, {"text": "c"}]


def test_strings_beside_numbers_feed_each_input_its_own_type() -> None:
    layout = tables.layout_for(
        ["title", "price"], [("title", np.object_, [None, 1]), ("price", np.float32, [None, 1])]
    )
    assert layout is not None
    assert layout.text_features == frozenset({"title"})

    matrix, _ = tables.text_table(
        [["red bike", 120], ["old car", 900.5]],
        layout.feature_names,
        text_features=layout.text_features,
        max_rows=10,
        bounds=layout.bounds,
    )
    feeds = tables.feeds(layout, matrix)

    assert feeds["title"].tolist() == [["red bike"], ["old car"]]
    assert feeds["price"].dtype == np.float32
    assert feeds["price"].ravel().tolist() == [120.0, 900.5]


@pytest.mark.parametrize(
    ("features", "error", "kind"),
    [
        ({"title": 3, "price": 1}, tables.UnusableFeatures, "non_text"),
        ({"title": "x", "price": "cheap"}, tables.UnusableFeatures, "non_numeric"),
        ({"title": "x"}, tables.UnusableFeatures, "missing"),
        ([["x"]], tables.UnusableFeatures, "expected"),
        ("x", tables.MalformedTable, "features"),
        ([], tables.MalformedTable, "features"),
        ([{"title": "x", "price": 1}, ["x", 1]], tables.MalformedTable, "features"),
        ({"title": "x", "price": 1e39}, tables.UnusableFeatures, "out_of_range"),
    ],
)
def test_text_bodies_that_cannot_be_used_name_what_is_wrong(
    features: object, error: type[Exception], kind: str
) -> None:
    layout = tables.layout_for(
        ["title", "price"], [("title", np.object_, [None, 1]), ("price", np.float32, [None, 1])]
    )
    assert layout is not None

    with pytest.raises(error) as raised:
        tables.text_table(
            features,
            layout.feature_names,
            text_features=layout.text_features,
            max_rows=10,
            bounds=layout.bounds,
        )
    assert kind in raised.value.details  # type: ignore[attr-defined]


def test_more_texts_than_a_request_may_carry_is_too_many_rows() -> None:
    with pytest.raises(tables.TooManyRows):
        tables.text_table(
            [{"text": "a"}] * 3, ["text"], text_features=frozenset({"text"}), max_rows=2
        )
