"""The blend's scoring (graph/scoring.py, tuned with `tastegraph evaluate`): per-user scaling."""

from __future__ import annotations

from config.settings import Settings
from graph.scoring import DEFAULT_BLEND, EVIDENCE_PRIORS, Scored, blend_scaled


def test_each_component_is_scaled_by_its_best_score_then_weighted() -> None:
    parts = {
        "collaborative": [Scored("a", 40.0, "x"), Scored("b", 10.0, "y")],
        "popular": [Scored("b", 300.0, "y"), Scored("c", 150.0, "x")],
        "content": [Scored("c", -0.2, "x")],  # a negative similarity counts as 0
    }
    out = blend_scaled(parts, {"collaborative": 1.0, "popular": 0.5, "content": 1.0}, priors={})
    got = {s.item_id: round(s.score, 6) for s in out}
    assert got == {"a": 1.0, "b": 0.75, "c": 0.25}
    assert [s.item_id for s in out] == ["a", "b", "c"]
    assert out[1].parts == {"collaborative": 0.25, "popular": 1.0}


def test_zero_weights_and_empty_components_add_nothing() -> None:
    parts = {"co_interest": [], "popular": [Scored("b", 2.0)], "content": [Scored("a", 1.0)]}
    out = blend_scaled(parts, {"co_interest": 1.0, "popular": 1.0})
    assert [s.item_id for s in out] == ["b"]


def test_ties_break_on_item_id() -> None:
    out = blend_scaled({"popular": [Scored("b", 1.0), Scored("a", 1.0)]}, {"popular": 1.0})
    assert [s.item_id for s in out] == ["a", "b"]


def test_settings_and_reads_share_the_default_weights() -> None:
    assert dict(Settings().blend_weights) == DEFAULT_BLEND


def test_calibrated_components_keep_their_confidence_scale() -> None:
    parts = {
        "co_interest": [Scored("a", 0.3), Scored("b", 0.15)],  # confidence 0.3: weak evidence
        "popular": [Scored("b", 50.0), Scored("c", 100.0)],
    }
    out = blend_scaled(parts, {"co_interest": 4.0, "popular": 1.0}, priors={})
    got = {s.item_id: round(s.score, 6) for s in out}
    assert got == {"a": 1.2, "b": 1.1, "c": 1.0}
    assert out[0].parts == {"co_interest": 0.3}
    # the same component max-scaled when it is not declared calibrated
    scaled = blend_scaled(parts, {"co_interest": 4.0, "popular": 1.0}, calibrated=(), priors={})
    assert {s.item_id: round(s.score, 6) for s in scaled}["a"] == 4.0


def test_little_popularity_evidence_stays_small() -> None:
    """One purchase (weight 5) is not scaled up to "most popular": best / (best + prior)."""
    one_purchase = {"popular": [Scored("x", 5.0)], "content": [Scored("s", 0.4)]}
    out = blend_scaled(one_purchase, {"popular": 1.0, "content": 0.5})
    assert [s.item_id for s in out] == ["s", "x"]
    assert out[1].parts == {"popular": 5.0 / (5.0 + EVIDENCE_PRIORS["popular"])}
    # a real shop's popularity (hundreds) keeps nearly its full weight
    shop = {"popular": [Scored("x", 975.0)], "content": [Scored("s", 0.4)]}
    assert [s.item_id for s in blend_scaled(shop, {"popular": 1.0, "content": 0.5})] == ["x", "s"]
    assert blend_scaled(shop, {"popular": 1.0})[0].score > 0.97
