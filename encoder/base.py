"""What every batched sentence encoder shares, whatever runs its forward pass.

:class:`BatchedEncoder` holds the tokenizer, the token budget, the embedding cache, the counters
and the lock; it tokenizes, plans length-sorted token-budget batches, pads them, restores the
input order and counts. A subclass gives the forward pass of one padded batch
(:meth:`BatchedEncoder._embed_batch`): :class:`encoder.bert.BertEncoder` on PyTorch,
:class:`encoder.onnx_encoder.OnnxEncoder` on ONNX Runtime. No torch here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from encoder.batching import pad_batch, plan_batches, restore_order, truncate_ids
from encoder.cache import EmbeddingCache, encode_through_cache, normalise_text
from encoder.exceptions import EncoderError
from encoder.stats import EncoderStats

log = logging.getLogger("tastegraph.encoder")


def special_token_layout(tokenizer: Any) -> tuple[int, int]:
    """How many special ids a single sequence gets before and after its content ([CLS] / [SEP])."""
    probe = "hello world"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return start, len(full) - start - len(bare)
    raise EncoderError("cannot tell where the tokenizer puts its special tokens")


class BatchedEncoder:
    """Batched, cached sentence encoder: a :class:`encoder.protocol.TextEncoder` whose subclass
    gives the forward pass of one padded batch (:meth:`_embed_batch`).

    ``encode`` is thread-safe (calls are serialised); run it off the asyncio loop in a thread of
    its own (the worker's encoder thread). ``positions`` is how many tokens the model takes (the
    tokenizer's ``model_max_length`` when lower, as RoBERTa's 512 of 514); ``max_len`` over it is
    lowered to it with a warning.
    """

    def __init__(
        self,
        tokenizer: Any,
        version: str,
        dim: int,
        *,
        positions: int,
        max_tokens_per_batch: int = 8192,
        max_len: int = 128,
        cache_size: int = 100_000,
        cache: EmbeddingCache | None = None,
        pad_multiple: int = 1,
    ) -> None:
        if max_tokens_per_batch < 1:
            raise EncoderError("max_tokens_per_batch must be at least 1")
        if max_len < 2:
            raise EncoderError("max_len must be at least 2 (room for the special tokens)")
        tokenizer_limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
        limit = min(positions, tokenizer_limit) if tokenizer_limit > 0 else positions
        if max_len > limit:
            log.warning(
                "max_len %d is over the model's %d positions; using %d", max_len, limit, limit
            )
            max_len = limit
        self.max_len = max_len
        self.max_tokens_per_batch = max_tokens_per_batch
        # close a batch early rather than pad short texts to a long one (plan_batches): measured
        # +53 % texts/s with one CPU thread (padding 32 % -> 8 % at 300 texts); neutral at two
        self.max_spread: float | None = 1.2
        self._pad_multiple = pad_multiple
        self._tokenizer = tokenizer
        self._version = version
        self._dim = dim
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._prefix, self._suffix = special_token_layout(tokenizer)
        self.cache = cache if cache is not None else EmbeddingCache(cache_size)
        self.stats = EncoderStats()
        self._lock = threading.Lock()

    # --- TextEncoder ------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, rows L2-normalised, in input order; cache first."""
        start = time.perf_counter()
        with self._lock:
            out, hits, misses = encode_through_cache(
                texts, self._version, self.cache, self._dim, self._encode_batches
            )
            self.stats.add(
                cache_hits=hits,
                cache_misses=misses,
                encode_calls=1,
                encode_seconds=time.perf_counter() - start,
            )
            return out

    # --- the rest of the API ----------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Like :meth:`encode` without the cache and without de-duplication (benchmarks)."""
        start = time.perf_counter()
        with self._lock:
            out = self._encode_batches([normalise_text(t) for t in texts])
            self.stats.add(encode_calls=1, encode_seconds=time.perf_counter() - start)
            return out

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with special tokens, not truncated (one fast-tokenizer call for all texts)."""
        if not texts:
            return []
        enc = self._tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [list(ids) for ids in enc["input_ids"]]

    # --- for subclasses ---------------------------------------------------------------------------
    def _embed_batch(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled, L2-normalised float32 rows of one padded batch (``(batch, seq)`` int64 ids and
        0/1 mask)."""
        raise NotImplementedError

    def _forward_context(self) -> contextlib.AbstractContextManager[Any]:
        """Entered around all the forward passes of one call (PyTorch: inference mode)."""
        return contextlib.nullcontext()

    def _encode_batches(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.token_ids(texts)
        plan = plan_batches(
            [len(x) for x in ids],
            self.max_tokens_per_batch,
            self.max_len,
            self._pad_multiple,
            max_spread=self.max_spread,
        )
        parts: list[tuple[Sequence[int], np.ndarray]] = []
        with self._forward_context():
            for batch in plan.batches:
                seqs = [truncate_ids(ids[i], self.max_len, self._suffix) for i in batch.indices]
                input_ids, mask = pad_batch(seqs, batch.pad_len, self._pad_id)
                parts.append((batch.indices, self._embed_batch(input_ids, mask)))
        self.stats.add(
            texts_encoded=len(texts),
            tokens=plan.tokens,
            padded_tokens=plan.padded_tokens,
            truncations=plan.truncated,
            batches=len(plan.batches),
        )
        return restore_order(parts, len(texts), self._dim)
