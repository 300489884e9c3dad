"""The protocol's two baselines, exactly as PROTOCOL.md defines them. Pure (numpy/scipy), no I/O.

- ``popular``: items ranked by purchase count (purchase events) in the 30 days before d;
- ``cooccurrence``: item-kNN, C[i, j] = users who purchased both i and j before d, divided by
  sqrt(count_i count_j) (count = users who purchased the item), diagonal zero; a user's score for i
  is the sum of C[i, j] over the items j in the user's history (every item touched before d).

Items are indexed in sorted id order and top-K lists are cut with the same numpy calls as the
reference script, so even ties fall the same way. Co-occurrence scores never materialise C:
score_u = D^-1/2 B^T B D^-1/2 h_u (B: user x item purchases, D: item purchase counts, h_u: history
indicator); the diagonal term only touches items in the history, which are excluded anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta

import numpy as np
import scipy.sparse as sp

from evaluation.protocol import TARGET_TYPE, Interaction

POPULAR_WINDOW_DAYS = 30


def top_k(
    scores: np.ndarray, exclude: Sequence[int], k: int, allowed: np.ndarray | None = None
) -> list[int]:
    """Indices of the k best scores, best first, never an excluded index (the reference's cut);
    with ``allowed`` (a boolean mask) only allowed indices."""
    scores = scores.astype(np.float64, copy=True)
    if len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    if allowed is not None:
        scores[~allowed] = -np.inf
    k = min(k, len(scores))
    if k <= 0:
        return []
    top = np.argpartition(-scores, k)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top])]
    return [int(i) for i in top if np.isfinite(scores[i])]


class Baselines:
    """Both baselines' state, fed one day at a time in order; ``prepare(d)``, then rank for d."""

    def __init__(self, item_ids: Iterable[str], user_ids: Iterable[str]) -> None:
        self.items = sorted(set(item_ids))
        self.item_index = {it: i for i, it in enumerate(self.items)}
        self.users = sorted(set(user_ids))
        self.user_index = {u: i for i, u in enumerate(self.users)}
        self._bought: set[tuple[int, int]] = set()
        self._purchases_by_day: dict[date, np.ndarray] = {}
        self._pop = np.zeros(len(self.items))
        self._b = sp.csr_matrix((len(self.users), len(self.items)), dtype=np.float64)
        self._dinv = np.zeros(len(self.items))

    def add_day(self, d: date, events: Iterable[Interaction]) -> None:
        counts = np.zeros(len(self.items), dtype=np.int64)
        for e in events:
            if e.type != TARGET_TYPE:
                continue
            i = self.item_index[e.item_id]
            counts[i] += 1
            self._bought.add((self.user_index[e.user_id], i))
        self._purchases_by_day[d] = counts

    def prepare(self, d: date) -> None:
        """Build the day's popularity vector and purchase matrix from everything added (all before
        d)."""
        start = d - timedelta(days=POPULAR_WINDOW_DAYS)
        pop = np.zeros(len(self.items))
        for day, counts in self._purchases_by_day.items():
            if start <= day < d:
                pop += counts
        self._pop = pop
        if self._bought:
            rows, cols = zip(*self._bought, strict=True)
            data = np.ones(len(rows))
        else:
            rows, cols, data = (), (), np.zeros(0)
        b = sp.csr_matrix((data, (rows, cols)), shape=(len(self.users), len(self.items)))
        self._b = b
        cnt = np.asarray(b.sum(axis=0)).ravel()
        with np.errstate(divide="ignore"):
            self._dinv = np.where(cnt > 0, 1.0 / np.sqrt(np.maximum(cnt, 1)), 0.0)

    def history_indices(self, items: Iterable[str]) -> list[int]:
        return sorted(self.item_index[i] for i in items if i in self.item_index)

    def popular(
        self, history: Sequence[int], k: int, allowed: np.ndarray | None = None
    ) -> list[str]:
        return [self.items[i] for i in top_k(self._pop, history, k, allowed)]

    def cooccurrence_scores(self, history: Sequence[int]) -> np.ndarray:
        h = np.zeros(len(self.items))
        h[np.asarray(history, dtype=np.int64)] = 1.0
        w = self._b @ (
            h * self._dinv
        )  # per user: sum over the history items they bought, / sqrt(cnt)
        return np.asarray(self._b.T @ w).ravel() * self._dinv

    def cooccurrence(
        self, history: Sequence[int], k: int, allowed: np.ndarray | None = None
    ) -> list[str]:
        scores = self.cooccurrence_scores(history)
        return [self.items[i] for i in top_k(scores, history, k, allowed)]
