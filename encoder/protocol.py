"""The protocol every encoder follows, and a deterministic fake for unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    @property
    def version(self) -> str:
        """Identifies the weights; embeddings of two versions are never compared."""
        ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Returns an array of shape (len(texts), dim), rows L2-normalised, in input order."""
        ...


class HashingEncoder:
    """Deterministic bag-of-words hashing encoder: same text, same vector; shared words, closer.

    For unit tests and offline tools that must not load torch. Not a substitute for the real model.
    """

    def __init__(self, dim: int = 32, version: str = "hashing-v1") -> None:
        self._dim = dim
        self._version = version

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split() or [""]:
                h = hashlib.blake2b(word.encode(), digest_size=8).digest()
                idx = int.from_bytes(h[:4], "little") % self._dim
                sign = 1.0 if h[4] & 1 else -1.0
                out[row, idx] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out
