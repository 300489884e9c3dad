"""Blend weights scored offline (`tastegraph tune-blend`) reproduce the served blend exactly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from evaluation.blend_search import (
    gain_interval,
    grid,
    pair_ndcg,
    parse_axes,
    prepare,
    ranked,
    score,
)
from evaluation.components import ComponentsWriter, PairComponents, read_components
from evaluation.metrics import pair_metrics
from graph.scoring import DEFAULT_BLEND, Scored, blend_inputs, blend_scaled, cap_categories

WEIGHTS = list(DEFAULT_BLEND)
NAMES = [n for n in WEIGHTS if n != "consensus"]  # the components (consensus is a term)


def random_record(rng: random.Random, k: int = 10) -> PairComponents:
    catalogue = [f"i{n:03d}" for n in range(60)]
    parts = {}
    for name in NAMES:
        if rng.random() < 0.15:
            continue  # a component the user has nothing in
        chosen = rng.sample(catalogue, rng.randint(0, 25))
        # coarse scores make ties, zeros and (for content's cold start) all-zero lists
        scale = 0.0 if rng.random() < 0.1 else rng.choice([1.0, 40.0, 0.01])
        parts[name] = [(i, scale * rng.randint(0, 4) / 4) for i in chosen]
    targets = frozenset(rng.sample(catalogue, rng.randint(1, 4)))
    drop = frozenset(rng.sample(catalogue, rng.randint(0, 2)))
    return PairComponents("u", 0.0, k, targets, drop, parts)


def served(record: PairComponents, weights: dict[str, float]) -> list[str]:
    """What the evaluation's blend list is: blend_scaled, the first k, then the filter."""
    lists = {name: [Scored(i, s) for i, s in ranked_] for name, ranked_ in record.parts.items()}
    top = cap_categories(blend_scaled(blend_inputs(lists, weights), weights), record.k, 0)
    return [s.item_id for s in top if s.item_id not in record.drop]


def test_offline_blend_equals_the_served_blend_under_random_weights() -> None:
    rng = random.Random(7)
    records = [random_record(rng) for _ in range(300)]
    pairs = prepare(records)
    for _ in range(20):
        weights = {n: rng.choice([0.0, 0.1, 1.0, 3.0, 32.0]) for n in WEIGHTS}
        for record, pair in zip(records, pairs, strict=True):
            assert ranked(pair, weights) == served(record, weights)
    # the metrics are the protocol's, pair by pair
    weights = dict(DEFAULT_BLEND)
    lists = [served(r, weights) for r in records]
    ndcg = [pair_metrics(x, r.targets, r.k).ndcg for x, r in zip(lists, records, strict=True)]
    expected = sum(ndcg) / len(ndcg)
    assert score(pairs, weights)["ndcg@10"] == round(expected, 4)


def test_weights_change_the_ranking() -> None:
    record = PairComponents(
        "u",
        0.0,
        2,
        frozenset({"b"}),
        frozenset(),
        {"content": [("a", 0.9), ("b", 0.1)], "co_engaged": [("b", 0.05)]},
    )
    (pair,) = prepare([record])
    assert ranked(pair, {"content": 1.0, "co_engaged": 0.0}) == ["a", "b"]
    assert ranked(pair, {"content": 1.0, "co_engaged": 32.0}) == ["b", "a"]
    assert score([pair], {"content": 1.0, "co_engaged": 32.0})["ndcg@2"] == 1.0


def test_components_round_trip_in_day_and_user_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    records = [random_record(rng) for _ in range(5)]
    records = [
        PairComponents(f"u{n}", float(5 - n), r.k, r.targets, r.drop, r.parts)
        for n, r in enumerate(records)
    ]
    writer = ComponentsWriter(tmp_path / "c" / "parts.jsonl.gz")
    for r in records:
        writer.write(r)
    writer.close()
    assert writer.records == 5
    assert read_components(tmp_path / "c" / "parts.jsonl.gz") == records[::-1]


def test_grid_scores_the_base_first_then_every_other_combination() -> None:
    base = {"content": 3.0, "popular": 0.1}
    got = list(grid(base, {"content": [1.0, 3.0], "popular": [0.1, 1.0]}))
    assert got[0] == base
    assert len(got) == 4 and {tuple(w.values()) for w in got} == {
        (1.0, 0.1),
        (1.0, 1.0),
        (3.0, 0.1),
        (3.0, 1.0),
    }
    assert parse_axes(["content=1,3", " popular = 0.5 "]) == {
        "content": [1.0, 3.0],
        "popular": [0.5],
    }
    for bad in ("content", "content=", "=1", "content=a,b"):
        with pytest.raises(ValueError):
            parse_axes([bad])


def test_the_gain_interval_resamples_users() -> None:
    """Per-pair NDCG averages to ``score``; a weight set that lifts the target in some users'
    lists and never lowers one has a gain interval above 0; the same weights have [0, 0]."""
    records = [
        PairComponents(
            f"u{n % 40}",
            float(n),
            2,
            frozenset({"b"}),
            frozenset(),
            {
                "content": [("a", 0.9), ("b", 0.1)],
                "co_engaged": [("b", 0.05 if n % 40 % 2 else 0.0)],
            },
        )
        for n in range(120)
    ]
    pairs = prepare(records)
    plain, lifted = {"content": 1.0}, {"content": 1.0, "co_engaged": 32.0}
    before, after = pair_ndcg(pairs, plain), pair_ndcg(pairs, lifted)
    assert round(float(after.mean()), 4) == score(pairs, lifted)["ndcg@2"]
    ci = gain_interval(pairs, before, after)
    assert 0.0 < ci.lower <= ci.gain <= ci.upper
    assert ci.users == 40 and ci.queries == 120
    same = gain_interval(pairs, before, before)
    assert (same.lower, same.gain, same.upper) == (0.0, 0.0, 0.0)
