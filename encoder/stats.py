"""Monotonic counters of an encoder, read by the metrics layer (as Prometheus counters)."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field


@dataclass
class EncoderStats:
    """Counters that only grow. Read a consistent copy with :meth:`snapshot`.

    - ``cache_hits``: texts answered without a forward pass (from the cache, or a duplicate of
      another text of the same call); ``cache_misses``: distinct texts that had to be encoded.
    - ``texts_encoded``: texts that went through the model; ``tokens``: their real tokens after
      truncation (special tokens included); ``padded_tokens``: token slots computed, padding
      included.
    - ``truncations``: texts cut to ``max_len``; ``batches``: forward calls; ``encode_seconds``:
      wall time spent in ``encode`` (tokenizing, forward passes and cache work).
    """

    cache_hits: int = 0
    cache_misses: int = 0
    texts_encoded: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    truncations: int = 0
    batches: int = 0
    encode_calls: int = 0
    encode_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Add non-negative ``deltas`` to the named counters, atomically."""
        with self._lock:
            for name, delta in deltas.items():
                if delta < 0:
                    raise ValueError(f"counter {name} is monotonic; got delta {delta}")
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> EncoderStats:
        """A consistent copy, safe to read while encoding goes on."""
        with self._lock:
            values = {
                f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "_lock"
            }
        return EncoderStats(**values)

    def as_dict(self) -> dict[str, float]:
        snap = self.snapshot()
        return {
            f.name: getattr(snap, f.name) for f in dataclasses.fields(snap) if f.name != "_lock"
        }
