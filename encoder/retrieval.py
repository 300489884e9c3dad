"""Next-item retrieval on held-out examples: how the gate scores an encoder (`encoder.gate`).

Every catalogue item is a candidate and the items already in a query's context are left out of
the ranking. How a query scores the candidates is the query mode (`QUERY_MODES`):

* ``vote`` (the default): the retrieval of the graph's ``content`` strategy. The held-out examples
  of one basket (same user, same timestamp) are one query; every context item ``j`` votes for
  every candidate ``i`` with ``w_j * max(cos(i, j), 0) ** power`` (``w_j``: the example's context
  weight, event-type weight x time decay), and the basket's chosen items are the targets:
  NDCG@k = DCG of the targets in the top k / the ideal DCG, HR@k = 1 if any target is in the top k.
* ``text`` / ``mean``: one query per example, its context text (or the mean of its items'
  embeddings) against the candidates by cosine; the chosen item is the one target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from encoder.examples import CONTEXT_SEP, Example
from encoder.protocol import TextEncoder


@dataclass(frozen=True)
class RetrievalMetrics:
    hr_at_10: float
    ndcg_at_10: float
    examples: int
    catalog: int
    k: int = 10
    queries: int = 0
    users: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RetrievalMetrics:
        return cls(
            hr_at_10=float(d["hr_at_10"]),
            ndcg_at_10=float(d["ndcg_at_10"]),
            examples=int(d["examples"]),
            catalog=int(d["catalog"]),
            k=int(d.get("k", 10)),
            queries=int(d.get("queries", 0)),
            users=int(d.get("users", 0)),
        )


QUERY_MODES = ("vote", "text", "mean")
"""How a context becomes a query: ``vote`` lets each context item vote for its neighbours
(multi-interest, the ``content`` strategy's retrieval); ``text`` encodes the joined context text;
``mean`` averages the embeddings of the context's items (L2-normalised), the older single-profile
``content`` strategy."""

VOTE_POWER = 3.0
"""The default sharpening ``p`` of ``max(cos, 0) ** p`` in a vote."""


@dataclass(frozen=True)
class QueryScores:
    """Per-query figures of one encoder on a held-out set, in a fixed query order, so two encoders
    scored on the same set can be compared query by query (`paired_bootstrap`)."""

    users: tuple[str, ...]
    ndcg: np.ndarray
    hit: np.ndarray
    examples: int
    catalog: int
    k: int = 10

    def metrics(self) -> RetrievalMetrics:
        n = len(self.users)
        if n == 0:
            return RetrievalMetrics(0.0, 0.0, self.examples, self.catalog, self.k, 0, 0)
        return RetrievalMetrics(
            hr_at_10=float(self.hit.mean()),
            ndcg_at_10=float(self.ndcg.mean()),
            examples=self.examples,
            catalog=self.catalog,
            k=self.k,
            queries=n,
            users=len(set(self.users)),
        )


@dataclass(frozen=True)
class VoteQuery:
    """One basket of a held-out user: the context items (catalogue rows) with their weights, and
    the items chosen (catalogue rows, none of them in the context)."""

    user_id: str
    history: tuple[int, ...]
    weights: tuple[float, ...]
    targets: tuple[int, ...]


def vote_queries(held_out: Sequence[Example], index: Mapping[str, int]) -> list[VoteQuery]:
    """Groups held-out examples into baskets (same user and timestamp, in first-seen order).

    A context item outside the catalogue casts no vote; examples without context weights (files
    written before they existed) weigh every context item 1. Baskets with no target in the
    catalogue or no context item in it are dropped.
    """
    groups: dict[tuple[str, float], list[Example]] = {}
    for ex in held_out:
        groups.setdefault((ex.user_id, ex.ts), []).append(ex)
    out: list[VoteQuery] = []
    for (user_id, _), members in groups.items():
        first = members[0]
        weights = first.context_weights
        if len(weights) != len(first.context_ids):
            weights = (1.0,) * len(first.context_ids)
        hist = [
            (index[c], w)
            for c, w in zip(first.context_ids, weights, strict=True)
            if c in index and w > 0
        ]
        seen = {h for h, _ in hist}
        targets = tuple(dict.fromkeys(index[m.item_id] for m in members if m.item_id in index))
        targets = tuple(t for t in targets if t not in seen)
        if hist and targets:
            out.append(
                VoteQuery(user_id, tuple(h for h, _ in hist), tuple(w for _, w in hist), targets)
            )
    return out


def vote_scores(
    item_vecs: np.ndarray, history: Sequence[int], weights: Sequence[float], power: float
) -> np.ndarray:
    """``score_i = sum_j w_j * max(cos(i, j), 0) ** power`` for every catalogue row ``i``
    (``item_vecs`` L2-normalised, ``history`` rows of it)."""
    sims = item_vecs @ item_vecs[list(history)].T
    np.maximum(sims, 0.0, out=sims)
    if power != 1.0:
        np.power(sims, power, out=sims)
    return sims @ np.asarray(weights, dtype=sims.dtype)


def rank_metrics(
    scores: np.ndarray, targets: Sequence[int], excluded: Sequence[int], k: int
) -> tuple[float, float]:
    """(NDCG@k, HR@k) of ``targets`` when candidates are ranked by ``scores`` without the
    ``excluded`` rows. A tie is broken by the row index (the smaller ranks first), so the order
    is total; a target's rank counts the other targets above it, as in the offline evaluation."""
    s = np.asarray(scores)
    keep = np.ones(len(s), dtype=bool)
    if excluded:
        keep[list(excluded)] = False
    rows = np.arange(len(s))
    dcg = 0.0
    for t in targets:
        better = ((s > s[t]) | ((s == s[t]) & (rows < t))) & keep
        rank = 1 + int(better.sum())
        if rank <= k:
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(targets), k)))
    return (dcg / ideal if ideal else 0.0), (1.0 if dcg > 0 else 0.0)


def context_texts(example: Example) -> list[str]:
    """The texts of the example's context items, most recent first."""
    return [t for t in example.context.split(CONTEXT_SEP) if t]


def mean_queries(
    encoder: TextEncoder,
    batch: Sequence[Example],
    item_vecs: np.ndarray | None = None,
    index: Mapping[str, int] | None = None,
) -> np.ndarray:
    """``mean`` queries: the normalised mean of the context items' embeddings; items of the
    catalogue (``index`` into ``item_vecs``) reuse their catalogue vector, others are encoded."""
    index = index or {}
    pieces: list[list[tuple[str, str]]] = []
    missing: dict[str, int] = {}
    for ex in batch:
        texts = context_texts(ex)
        ids = list(ex.context_ids) if len(ex.context_ids) == len(texts) else [""] * len(texts)
        pieces.append(list(zip(ids, texts, strict=True)))
        for item_id, text in pieces[-1]:
            if (item_vecs is None or item_id not in index) and text not in missing:
                missing[text] = len(missing)
    encoded = (
        np.asarray(encoder.encode(list(missing)), dtype=np.float32) if missing else np.zeros((0,))
    )
    out = np.zeros((len(batch), encoder.dim), dtype=np.float32)
    for row, parts in enumerate(pieces):
        vecs = [
            item_vecs[index[item_id]]
            if item_vecs is not None and item_id in index
            else encoded[missing[text]]
            for item_id, text in parts
        ]
        if vecs:
            v = np.mean(vecs, axis=0)
            out[row] = v / max(float(np.linalg.norm(v)), 1e-12)
    return out


def retrieval_scores(
    encoder: TextEncoder,
    held_out: Sequence[Example],
    catalog: Mapping[str, str],
    k: int = 10,
    *,
    chunk: int = 256,
    query_mode: str = "vote",
    power: float = VOTE_POWER,
) -> QueryScores:
    """Per-query NDCG@k and HR@k of ``encoder`` on ``held_out`` against ``catalog`` (item id ->
    text); see the module docstring for the query modes. Examples whose chosen item is not in the
    catalogue are skipped (and not counted)."""
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query_mode must be one of {QUERY_MODES}")
    ids = list(catalog)
    index = {item_id: i for i, item_id in enumerate(ids)}
    usable = [ex for ex in held_out if ex.item_id in index]
    empty = np.zeros(0, dtype=np.float64)
    if not usable or not ids:
        return QueryScores((), empty, empty, 0, len(ids), k)
    item_vecs = np.asarray(encoder.encode([catalog[i] for i in ids]), dtype=np.float32)
    users: list[str] = []
    ndcg: list[float] = []
    hit: list[float] = []
    if query_mode == "vote":
        for q in vote_queries(usable, index):
            s = vote_scores(item_vecs, q.history, q.weights, power)
            n, h = rank_metrics(s, q.targets, q.history, k)
            users.append(q.user_id)
            ndcg.append(n)
            hit.append(h)
        return QueryScores(tuple(users), np.array(ndcg), np.array(hit), len(usable), len(ids), k)
    for start in range(0, len(usable), chunk):
        batch = usable[start : start + chunk]
        if query_mode == "mean":
            qv = mean_queries(encoder, batch, item_vecs, index)
        else:
            qv = np.asarray(encoder.encode([ex.context for ex in batch]), dtype=np.float32)
        scores = qv @ item_vecs.T
        for row, ex in enumerate(batch):
            excluded = [index[c] for c in ex.context_ids if c in index and c != ex.item_id]
            n, h = rank_metrics(scores[row], (index[ex.item_id],), excluded, k)
            users.append(ex.user_id)
            ndcg.append(n)
            hit.append(h)
    return QueryScores(tuple(users), np.array(ndcg), np.array(hit), len(usable), len(ids), k)


def evaluate_retrieval(
    encoder: TextEncoder,
    held_out: Sequence[Example],
    catalog: Mapping[str, str],
    k: int = 10,
    *,
    chunk: int = 256,
    query_mode: str = "text",
    power: float = VOTE_POWER,
) -> RetrievalMetrics:
    """The means of `retrieval_scores` (``query_mode`` defaults to ``text`` here, as before)."""
    return retrieval_scores(
        encoder, held_out, catalog, k, chunk=chunk, query_mode=query_mode, power=power
    ).metrics()
