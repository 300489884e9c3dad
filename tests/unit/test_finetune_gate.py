"""The gate's vote retrieval (the ``content`` strategy's item votes) and its paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from encoder.examples import Example
from encoder.gate import GainInterval, gate, paired_bootstrap
from encoder.retrieval import (
    RetrievalMetrics,
    rank_metrics,
    retrieval_scores,
    vote_queries,
    vote_scores,
)


def test_rank_metrics_counts_every_target_and_skips_the_excluded() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    # targets 1 and 3; row 0 excluded: ranks 1 and 3 among the rest
    ndcg, hit = rank_metrics(scores, [1, 3], [0], k=10)
    ideal = 1 + 1 / np.log2(3)
    assert ndcg == pytest.approx((1 + 1 / np.log2(4)) / ideal)
    assert hit == 1.0
    assert rank_metrics(scores, [4], [], k=2) == (0.0, 0.0)
    # a tie goes to the smaller row, so the order is total
    assert rank_metrics(np.array([0.5, 0.5]), [1], [], k=1) == (0.0, 0.0)
    assert rank_metrics(np.array([0.5, 0.5]), [0], [], k=1) == (1.0, 1.0)


def test_vote_scores_sum_sharpened_positive_cosines() -> None:
    vecs = np.array([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)], [-1.0, 0.0]])
    s = vote_scores(vecs, [0, 1], [2.0, 1.0], power=3.0)
    assert s[0] == pytest.approx(2.0)  # cos 1 with item 0, 0 with item 1
    assert s[2] == pytest.approx(3.0 * np.sqrt(0.5) ** 3)
    assert s[3] == pytest.approx(0.0)  # negative cosines cast no vote


def test_vote_queries_are_baskets_with_weighted_histories() -> None:
    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    held = [
        Example("u", "A ; B", "c", "C", 5.0, ("a", "b"), (3.0, 1.0)),
        Example("u", "A ; B", "d", "D", 5.0, ("a", "b"), (3.0, 1.0)),  # same basket
        Example("v", "A", "b", "B", 6.0, ("a", "zz"), ()),  # no weights: 1 each; zz not indexed
        Example("w", "A", "a", "A", 7.0, ("a",), (1.0,)),  # its target is its history: dropped
    ]
    qs = vote_queries(held, index)
    assert [(q.user_id, q.history, q.weights, q.targets) for q in qs] == [
        ("u", (0, 1), (3.0, 1.0), (2, 3)),
        ("v", (0,), (1.0,), (1,)),
    ]


def test_vote_retrieval_ranks_the_neighbour_of_the_history_first() -> None:
    from encoder.protocol import HashingEncoder

    catalog = {"a": "red apple pie", "b": "red apple tart", "c": "blue steel bolt"}
    held = [Example("u", "red apple pie", "b", "red apple tart", 1.0, ("a",), (5.0,))]
    scores = retrieval_scores(HashingEncoder(64), held, catalog, k=1, query_mode="vote")
    m = scores.metrics()
    assert (m.queries, m.users, m.examples, m.catalog) == (1, 1, 1, 3)
    assert m.hr_at_10 == 1.0 and m.ndcg_at_10 == 1.0  # a itself is excluded, b beats c


def test_bootstrap_of_identical_figures_is_zero_and_rejected() -> None:
    users = [f"u{i % 50}" for i in range(200)]
    x = np.random.default_rng(1).random(200)
    ci = paired_bootstrap(users, x, x.copy(), resamples=500)
    assert (ci.gain, ci.lower, ci.upper) == (0.0, 0.0, 0.0)
    assert (ci.users, ci.queries) == (50, 200)
    before = RetrievalMetrics(0.1, 0.05, 200, 1000)
    assert not gate(before, before, 0.0, interval=ci).promote


def test_bootstrap_excludes_zero_for_a_consistent_gain_only() -> None:
    rng = np.random.default_rng(2)
    users = [f"u{i}" for i in range(400)]
    before = rng.random(400) * 0.2
    after = before + 0.02 + rng.normal(0, 0.05, 400)
    ci = paired_bootstrap(users, before, after, resamples=1000, seed=3)
    assert 0.0 < ci.lower < ci.gain < ci.upper
    noise = before + rng.normal(0, 0.05, 400)
    ci_noise = paired_bootstrap(users, before, noise, resamples=1000, seed=3)
    assert ci_noise.lower < 0.0 < ci_noise.upper
    m = RetrievalMetrics(0.1, 0.05, 400, 1000)
    assert gate(m, m, 0.0, interval=ci).promote
    decision = gate(m, m, 0.0, interval=ci_noise)
    assert not decision.promote and "CI" in decision.reason


def test_bootstrap_resamples_users_not_queries() -> None:
    # one user with many queries carries the whole gain: resampling queries would call it sure,
    # resampling users leaves that user out of a third of the draws
    users = ["big"] * 100 + [f"u{i}" for i in range(20)]
    before = np.zeros(120)
    after = np.concatenate([np.full(100, 0.1), np.zeros(20)])
    ci = paired_bootstrap(users, before, after, resamples=2000, seed=0)
    assert ci.gain > 0 and ci.lower == 0.0
    assert ci.users == 21


def test_bootstrap_is_seeded_and_validates() -> None:
    rng = np.random.default_rng(4)
    users = [f"u{i % 30}" for i in range(90)]
    a, b = rng.random(90), rng.random(90)
    assert paired_bootstrap(users, a, b, seed=7) == paired_bootstrap(users, a, b, seed=7)
    ci = paired_bootstrap(users, a, b, seed=7)
    assert GainInterval.from_json(ci.to_json()) == ci
    with pytest.raises(ValueError):
        paired_bootstrap(users[:-1], a, b)
    with pytest.raises(ValueError):
        paired_bootstrap(users, a, b, confidence=1.0)
    empty = paired_bootstrap([], np.zeros(0), np.zeros(0))
    assert empty.queries == 0 and empty.lower == 0.0
