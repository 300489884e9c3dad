"""The blend's scoring (graph/scoring.py, tuned with `tastegraph evaluate`): per-user scaling and
the consensus term."""

from __future__ import annotations

import pytest

from config.settings import Settings
from graph.scoring import (
    CONSENSUS_K0,
    CONSENSUS_WEIGHTS,
    DEFAULT_BLEND,
    EVIDENCE_PRIORS,
    Scored,
    blend_inputs,
    blend_scaled,
    consensus,
)


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


def test_consensus_sums_reciprocal_ranks_of_positive_entries() -> None:
    parts = {
        "co_engaged": [Scored("a", 0.9), Scored("b", 0.1)],
        "content": [Scored("b", 0.5), Scored("c", 0.0)],  # a zero-score top-up is no vote
        "popular": [Scored("c", 900.0)],  # not a consensus component
    }
    got = consensus(parts)
    w_eng, w_content = CONSENSUS_WEIGHTS["co_engaged"], CONSENSUS_WEIGHTS["content"]
    assert got == {
        "a": pytest.approx(w_eng / CONSENSUS_K0),
        "b": pytest.approx(w_eng / (CONSENSUS_K0 + 1) + w_content / CONSENSUS_K0),
    }


def test_consensus_lifts_what_several_components_rank_high() -> None:
    """ "a" tops one list by far; "b" is second in three lists: with the consensus term and a
    user whose co-interest rests on full evidence, "b" wins; without it, "a" does."""
    parts = {
        "co_interest": [Scored("x", 1.0), Scored("b", 0.5)],
        "co_engaged": [Scored("a", 0.9), Scored("b", 0.05)],
        "co_engaged_in": [Scored("y", 0.9), Scored("b", 0.05)],
    }
    weights = {"co_interest": 1.0, "co_engaged": 10.0, "co_engaged_in": 10.0}
    plain = blend_scaled(parts, weights)
    assert plain[0].item_id == "a"
    fused = blend_scaled(parts, {**weights, "consensus": 60.0})
    assert fused[0].item_id == "b"
    assert fused[0].parts["consensus"] == pytest.approx(
        sum(CONSENSUS_WEIGHTS[n] for n in parts) / (CONSENSUS_K0 + 1)
    )


def test_consensus_follows_the_users_co_interest_confidence() -> None:
    """Without co-interest evidence (a household sharing a staple or two) the term adds nothing:
    the blend leans on the scored components, popularity among them."""
    lists = {
        "co_engaged": [Scored("a", 0.9), Scored("b", 0.05)],
        "popular": [Scored("p", 500.0)],
    }
    weights = {"co_engaged": 1.0, "popular": 1.0, "consensus": 30.0}
    for gate in ([], [Scored("z", 0.0)]):
        with_gate = {**lists, "co_interest": gate}
        assert [(s.item_id, s.score) for s in blend_scaled(with_gate, weights)] == [
            (s.item_id, s.score) for s in blend_scaled(lists, {**weights, "consensus": 0.0})
        ]
    half = blend_scaled({**lists, "co_interest": [Scored("z", 0.5)]}, weights)
    full = blend_scaled({**lists, "co_interest": [Scored("z", 1.0)]}, weights)
    votes = {s.item_id: s.parts["consensus"] for s in full if "consensus" in s.parts}
    assert votes["a"] > votes["b"] > 0
    scores = {s.item_id: s.score for s in half}
    full_scores = {s.item_id: s.score for s in full}
    assert full_scores["b"] - scores["b"] == pytest.approx(30.0 * 0.5 * votes["b"])


def test_blend_inputs_keep_the_consensus_components() -> None:
    parts = {n: [Scored("a", 1.0)] for n in ("content", "co_interest", "popular", "profile")}
    assert list(blend_inputs(parts, {"popular": 1.0})) == ["popular"]
    assert list(blend_inputs(parts, {"popular": 1.0, "consensus": 30.0})) == [
        "content",
        "co_interest",
        "popular",
    ]


def test_consensus_reaches_items_of_components_weighted_zero() -> None:
    parts = {
        "co_interest": [Scored("a", 1.0, "x")],
        "collaborative": [Scored("c", 7.0, "y")],  # weight 0 in the sum, still a consensus vote
    }
    out = blend_scaled(parts, {"co_interest": 1.0, "consensus": 30.0})
    assert [(s.item_id, s.category) for s in out] == [("a", "x"), ("c", "y")]
    assert out[1].parts == {"consensus": CONSENSUS_WEIGHTS["collaborative"] / CONSENSUS_K0}
