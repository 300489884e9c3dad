"""Token-budget batching and the LRU cache: pure logic, no model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from encoder.batching import pad_batch, plan_batches, restore_order, round_up, truncate_ids
from encoder.cache import EmbeddingCache, cache_key, normalise_text
from encoder.stats import EncoderStats


@given(
    lengths=st.lists(st.integers(min_value=0, max_value=600), max_size=300),
    budget=st.integers(min_value=1, max_value=4096),
    max_len=st.integers(min_value=2, max_value=512),
    multiple=st.sampled_from([1, 8]),
    spread=st.sampled_from([None, 1.0, 1.2, 2.0]),
)
def test_plan_covers_every_text_once_within_budget(
    lengths: list[int], budget: int, max_len: int, multiple: int, spread: float | None
) -> None:
    plan = plan_batches(lengths, budget, max_len, multiple, max_spread=spread)
    seen = sorted(i for b in plan.batches for i in b.indices)
    assert seen == list(range(len(lengths)))
    for b in plan.batches:
        effective = [min(max(lengths[i], 1), max_len) for i in b.indices]
        # padded to its own longest, and no further than the rounding asks
        assert b.pad_len == round_up(max(effective), multiple)
        assert len(b.indices) == 1 or len(b.indices) * b.pad_len <= budget
    assert plan.truncated == sum(1 for n in lengths if n > max_len)
    assert plan.tokens == sum(min(max(n, 1), max_len) for n in lengths)
    assert plan.padded_tokens >= plan.tokens


def test_plan_sorts_by_length_so_padding_stays_small() -> None:
    lengths = [100, 5, 100, 5, 50, 5, 50, 100]
    plan = plan_batches(lengths, max_tokens_per_batch=300, max_len=128, max_spread=None)
    assert [sorted(lengths[i] for i in b.indices) for b in plan.batches] == [
        [5, 5, 5, 50, 50],
        [100, 100, 100],
    ]
    assert plan.padded_tokens == 5 * 50 + 3 * 100
    assert plan.truncated == 0


def test_plan_closes_a_batch_early_rather_than_pad_a_lot() -> None:
    lengths = [10] * 20 + [11] * 5 + [40] * 5
    budget_only = plan_batches(lengths, 8192, 128, max_spread=None)
    assert len(budget_only) == 1 and budget_only.padded_tokens == 30 * 40
    plan = plan_batches(lengths, 8192, 128, max_spread=1.2, min_fill=0.01)
    assert [len(b.indices) for b in plan.batches] == [25, 5]  # 11 is within 1.2 x 10, 40 is not
    assert plan.padded_tokens == 25 * 11 + 5 * 40
    # a batch that holds little of the budget keeps growing: small batches cost more than padding
    assert len(plan_batches(lengths, 8192, 128, max_spread=1.2, min_fill=0.5)) == 1


def test_plan_truncates_to_max_len_and_counts_it() -> None:
    plan = plan_batches([10, 200, 129, 128], max_tokens_per_batch=10_000, max_len=128)
    assert plan.truncated == 2
    assert plan.batches[-1].pad_len == 128


def test_oversized_text_gets_its_own_batch() -> None:
    plan = plan_batches([64, 64], max_tokens_per_batch=10, max_len=128)
    assert [len(b.indices) for b in plan.batches] == [1, 1]


def test_plan_rejects_a_nonsense_budget() -> None:
    with pytest.raises(ValueError):
        plan_batches([1], 0, 128)


def test_truncate_keeps_the_closing_special_token() -> None:
    ids = [101, 1, 2, 3, 4, 5, 102]
    assert truncate_ids(ids, 5, suffix=1) == [101, 1, 2, 3, 102]
    assert truncate_ids(ids, 7, suffix=1) == ids
    assert truncate_ids(ids, 4, suffix=0) == [101, 1, 2, 3]


def test_pad_batch_and_restore_order() -> None:
    ids, mask = pad_batch([[7, 8, 9], [5]], pad_len=4, pad_id=0)
    assert ids.tolist() == [[7, 8, 9, 0], [5, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    rows_a = np.array([[2.0], [0.0]], dtype=np.float32)
    rows_b = np.array([[1.0]], dtype=np.float32)
    out = restore_order([((2, 0), rows_a), ((1,), rows_b)], n=3, dim=1)
    assert out[:, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        restore_order([((0,), rows_b)], n=2, dim=1)


def test_normalisation_only_touches_whitespace_and_unicode_form() -> None:
    assert normalise_text("  Red\t shirt \n") == "Red shirt"
    assert normalise_text("Cafe\u0301") == "Caf\u00e9"
    assert normalise_text("Red") != normalise_text("red")
    assert cache_key("v1", " a  b ") == cache_key("v1", "a b")
    assert cache_key("v1", "a b") != cache_key("v2", "a b")


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache = EmbeddingCache(max_size=2)
    a, b, c = (cache_key("v", t) for t in "abc")
    cache.put(a, np.ones(3))
    cache.put(b, np.zeros(3))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, np.ones(3))
    assert cache.get(b) is None
    assert cache.get(a) is not None and cache.get(c) is not None
    assert len(cache) == 2 and cache.evictions == 1
    stored = cache.get(a)
    assert stored is not None and stored.dtype == np.float32 and not stored.flags.writeable


def test_disabled_cache_stores_nothing() -> None:
    cache = EmbeddingCache(0)
    cache.put(cache_key("v", "x"), np.ones(2))
    assert len(cache) == 0 and cache.get(cache_key("v", "x")) is None


def test_stats_are_monotonic_and_snapshots_are_copies() -> None:
    stats = EncoderStats()
    stats.add(cache_hits=2, tokens=10, encode_seconds=0.5)
    snap = stats.snapshot()
    stats.add(cache_hits=1)
    assert snap.cache_hits == 2 and stats.cache_hits == 3
    assert stats.as_dict()["tokens"] == 10
    with pytest.raises(ValueError):
        stats.add(cache_hits=-1)
