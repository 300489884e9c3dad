"""The pure parts of the read side: blending, normalisation, per-category caps."""

from __future__ import annotations

import pytest

from graph.scoring import Scored, blend, cap_categories, normalise, topped_up


def test_normalise() -> None:
    assert normalise({}) == {}
    assert normalise({"a": 3.0}) == {"a": 1.0}
    assert normalise({"a": 1.0, "b": 3.0, "c": 2.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}


def test_blend_weights_normalised_components() -> None:
    parts = {
        "content": [Scored("a", 0.9, "x"), Scored("b", 0.1, "y")],
        "collaborative": [Scored("b", 10.0, "y"), Scored("c", 5.0, "x")],
        "popular": [Scored("c", 100.0, "x")],
    }
    out = blend(parts, {"content": 1.0, "collaborative": 2.0, "popular": 0.5})
    assert [(s.item_id, s.score) for s in out] == [("b", 2.0), ("a", 1.0), ("c", 0.5)]
    assert out[0].parts == {"content": 0.0, "collaborative": 1.0}
    assert out[2].category == "x"


def test_zero_weight_components_are_left_out() -> None:
    out = blend({"content": [Scored("a", 1.0)], "popular": [Scored("b", 1.0)]}, {"content": 1.0})
    assert [s.item_id for s in out] == ["a"]


def test_ties_break_on_item_id() -> None:
    out = blend({"content": [Scored("b", 1.0), Scored("a", 1.0)]}, {"content": 1.0})
    assert [s.item_id for s in out] == ["a", "b"]


@pytest.mark.parametrize(
    ("cap", "expected"), [(0, ["a", "b", "c"]), (1, ["a", "c", "e"]), (2, ["a", "b", "c"])]
)
def test_category_cap(cap: int, expected: list[str]) -> None:
    ranked = [
        Scored("a", 5, "x"),
        Scored("b", 4, "x"),
        Scored("c", 3, "y"),
        Scored("d", 2, "x"),
        Scored("e", 1, None),
    ]
    assert [s.item_id for s in cap_categories(ranked, 3, cap)] == expected


def test_content_is_topped_up_from_the_profile_at_score_zero() -> None:
    content = [Scored("a", 0.4, "x")]
    profile = [Scored("a", 0.9, "x"), Scored("b", 0.8, "y"), Scored("c", 0.7, "y")]
    out = topped_up(content, profile, 2)
    assert [(s.item_id, s.score) for s in out] == [("a", 0.4), ("b", 0.0)]
    assert topped_up(content, [], 5) == content
