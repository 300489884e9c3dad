"""Item-to-item training pairs: history -> next, basket rings, hard negatives, distinct batches."""

from __future__ import annotations

import random
from typing import Any

import pytest

from encoder.examples import Example, ExampleBuilder
from encoder.pairs import ItemPair, co_engagement_pairs, with_hard_negatives


def test_history_items_pair_with_the_next_item_and_baskets_ring() -> None:
    examples = [
        Example("u", "A ; B", "c", "C", 5.0, ("a", "b")),
        Example("u", "A ; B", "d", "D", 5.0, ("a", "b")),
        Example("u", "A ; B", "e", "E", 5.0, ("a", "b")),
        Example("v", "C", "d", "D", 6.0, ("c",)),
    ]
    pairs = co_engagement_pairs(examples)
    got = [(p.anchor_id, p.item_id) for p in pairs]
    history = [("a", "c"), ("b", "c"), ("a", "d"), ("b", "d"), ("a", "e"), ("b", "e"), ("c", "d")]
    assert got[: len(history)] == history
    assert got[len(history) :] == [("c", "d"), ("d", "e"), ("e", "c")]  # u's basket; v's is 1 item
    assert all(p.anchor_id != p.item_id for p in pairs)
    assert pairs[0].anchor_text == "A" and pairs[0].item_text == "C"
    assert len(co_engagement_pairs(examples, together=False)) == len(history)


def test_catalogue_texts_override_and_fill_the_examples_texts() -> None:
    examples = [Example("u", "A ; x ; y", "c", "C", 5.0, ("a", "b"))]  # a text held the separator
    pairs = co_engagement_pairs(examples, texts={"a": "A new", "b": "B", "c": "C new"})
    assert [(p.anchor_text, p.item_text) for p in pairs] == [("A new", "C new"), ("B", "C new")]


def test_hard_negatives_come_from_the_positives_category_only() -> None:
    categories = {"a": "mugs", "b": "mugs", "c": "mugs", "d": "mugs", "x": "lamps", "y": "solo"}
    texts = {i: i.upper() for i in categories}
    pairs = [
        ItemPair("a", "A", "b", "B"),
        ItemPair("a", "A", "y", "Y"),
        ItemPair("b", "B", "z", "Z"),
    ]
    out = with_hard_negatives(pairs * 20, categories, texts, random.Random(0))
    for p in out:
        if p.item_id == "b":
            assert p.negative_id in ("c", "d") and p.negative_text == p.negative_id.upper()
        else:  # a category of one, or no category: no negative
            assert p.negative_id == "" and p.ids() == (p.anchor_id, p.item_id)
    assert {p.negative_id for p in out if p.item_id == "b"} == {"c", "d"}


def test_pair_batches_never_repeat_an_item_on_any_side() -> None:
    from encoder.train_batches import distinct_pair_batches

    rng = random.Random(1)
    ids = [f"i{n}" for n in range(30)]
    pairs = []
    for _ in range(300):
        a, b, n = rng.sample(ids, 3)
        pairs.append(ItemPair(a, a, b, b, n, n) if rng.random() < 0.5 else ItemPair(a, a, b, b))
    batches = distinct_pair_batches(pairs, 8, random.Random(0))
    for _ in range(50):
        batch = next(batches)
        assert 2 <= len(batch) <= 8
        seen = [i for p in batch for i in p.ids()]
        assert len(seen) == len(set(seen))


def test_builder_weights_context_items_by_type_and_decay() -> None:
    b = ExampleBuilder(3, type_weights={"click": 2.0, "purchase": 5.0}, half_life_s=10.0)
    b.observe("u", "a", "A", "click", 0.0)
    b.observe("u", "a", "A", "purchase", 10.0)  # a: 2 halved once + 5 = 6 at t=10
    b.observe("u", "b", "B", "click", 20.0)
    e = b.observe("u", "c", "C", "purchase", 30.0)
    assert e is not None and e.context_ids == ("b", "a")
    assert e.context_weights == pytest.approx((2.0 * 0.5, 6.0 * 0.25))
    back = Example.from_json(e.to_json())
    assert back.context_weights == pytest.approx(e.context_weights)
    same = b.observe("u", "d", "D", "purchase", 30.0)  # same basket: c is not in its context yet
    assert same is not None and same.context_weights == e.context_weights


@pytest.mark.slow
def test_vote_training_learns_item_pairs_with_hard_negatives(tiny_bert: Any) -> None:
    pytest.importorskip("torch")
    from test_finetune import planted_examples

    from encoder.finetune import TrainConfig, train

    model, tokenizer, _ = tiny_bert(64)
    examples, texts = planted_examples(n_users=60, context_n=3)
    # the product noun as the category: a negative of the same noun and another brand teaches
    # the brand, which is what predicts the next purchase here
    categories = {i: t.split()[-1] for i, t in texts.items()}
    cfg = TrainConfig(steps=30, batch_size=16, lr=3e-3, max_len=16, query_mode="vote")
    model, stats = train(
        model, tokenizer, examples, cfg, progress=False, texts=texts, categories=categories
    )
    assert stats.steps == 30 and stats.pairs > len(examples)
    assert stats.hard_negatives > 0.9 * stats.pairs  # every noun has many items
    assert stats.first_loss is not None and stats.last_loss is not None
    assert stats.last_loss < stats.first_loss - 0.3, stats
