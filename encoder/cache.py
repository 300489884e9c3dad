"""A bounded in-memory LRU of embeddings, keyed by (model version, hash of the normalised text)."""

from __future__ import annotations

import hashlib
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

CacheKey = tuple[str, bytes]


def normalise_text(text: str) -> str:
    """NFC, whitespace runs collapsed to one space, ends stripped.

    BERT-family tokenizers split on whitespace, so this never changes an embedding; it only lets
    texts that differ in spacing share a cache entry. Case is kept: cased models see it.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_hash(normalised: str) -> bytes:
    """A 128-bit BLAKE2b digest of a normalised text."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=16).digest()


def cache_key(version: str, text: str) -> CacheKey:
    """The cache key of a raw text under a model version."""
    return (version, text_hash(normalise_text(text)))


class EmbeddingCache:
    """Least-recently-used map from :data:`CacheKey` to a read-only float32 vector. Thread-safe.

    ``max_size=0`` disables it (every ``get`` misses, ``put`` stores nothing).
    """

    def __init__(self, max_size: int) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.max_size = max_size
        self._data: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: CacheKey) -> np.ndarray | None:
        with self._lock:
            vec = self._data.get(key)
            if vec is not None:
                self._data.move_to_end(key)
            return vec

    def put(self, key: CacheKey, vec: np.ndarray) -> None:
        if self.max_size == 0:
            return
        stored = np.array(vec, dtype=np.float32, copy=True)  # not a view into a whole batch
        stored.setflags(write=False)
        with self._lock:
            self._data[key] = stored
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def encode_through_cache(
    texts: Sequence[str],
    version: str,
    cache: EmbeddingCache,
    dim: int,
    encode_new: Callable[[list[str]], np.ndarray],
) -> tuple[np.ndarray, int, int]:
    """Every encoder's ``encode``: each distinct normalised text is looked up in ``cache`` under
    ``version``; the misses go to ``encode_new`` once each (duplicates within the call included),
    in one call, and are stored. Returns ``(vectors in input order, hits, misses)``; a duplicate
    of another text of the same call counts as a hit."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    pending: dict[CacheKey, list[int]] = {}
    to_encode: list[str] = []
    hits = 0
    for i, raw in enumerate(texts):
        text = normalise_text(raw)
        key = (version, text_hash(text))
        if key in pending:
            pending[key].append(i)
            hits += 1
            continue
        cached = cache.get(key)
        if cached is not None:
            out[i] = cached
            hits += 1
        else:
            pending[key] = [i]
            to_encode.append(text)
    if to_encode:
        vectors = encode_new(to_encode)
        for (key, rows), vec in zip(pending.items(), vectors, strict=True):
            out[rows] = vec
            cache.put(key, vec)
    return out, hits, len(to_encode)
