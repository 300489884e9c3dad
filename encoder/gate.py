"""The evaluation gate: next-item retrieval on held-out examples, and the promotion rule.

For every held-out example the context is encoded as the query and every catalogue item as a
candidate; candidates are ranked by cosine similarity, the items already in the example's context
(other than the chosen one) are left out of the ranking, and the chosen item's rank gives
HR@k (1 if within the top k) and NDCG@k (1 / log2(rank + 1) if within the top k). Means over the
examples are reported. The same function, on the same examples and catalogue, scores the current
version and the candidate, so the two figures are comparable.
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
        )


QUERY_MODES = ("text", "mean")
"""How a context becomes a query: ``text`` encodes the joined context text; ``mean`` averages
the embeddings of the context's items (L2-normalised), as the graph builds a user's embedding from
the items they interacted with (the ``content`` strategy)."""


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


def evaluate_retrieval(
    encoder: TextEncoder,
    held_out: Sequence[Example],
    catalog: Mapping[str, str],
    k: int = 10,
    *,
    chunk: int = 256,
    query_mode: str = "text",
) -> RetrievalMetrics:
    """HR@k and NDCG@k of ``encoder`` on ``held_out`` against ``catalog`` (item id -> text).

    Examples whose chosen item is not in the catalogue are skipped (and not counted).
    ``query_mode``: see `QUERY_MODES`.
    """
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query_mode must be one of {QUERY_MODES}")
    ids = list(catalog)
    index = {item_id: i for i, item_id in enumerate(ids)}
    usable = [ex for ex in held_out if ex.item_id in index]
    if not usable or not ids:
        return RetrievalMetrics(0.0, 0.0, 0, len(ids), k)
    item_vecs = np.asarray(encoder.encode([catalog[i] for i in ids]), dtype=np.float32)
    hits = 0.0
    ndcg = 0.0
    for start in range(0, len(usable), chunk):
        batch = usable[start : start + chunk]
        if query_mode == "mean":
            q = mean_queries(encoder, batch, item_vecs, index)
        else:
            q = np.asarray(encoder.encode([ex.context for ex in batch]), dtype=np.float32)
        scores = q @ item_vecs.T
        for row, ex in enumerate(batch):
            s = scores[row]
            target = index[ex.item_id]
            target_score = s[target]
            excluded = [index[c] for c in ex.context_ids if c in index and c != ex.item_id]
            # rank = 1 + number of non-excluded candidates scoring strictly higher (ties favour
            # nobody: counted as higher when their index is smaller, so the order is total)
            higher = s > target_score
            ties = (s == target_score) & (np.arange(len(ids)) < target)
            better = higher | ties
            if excluded:
                better[excluded] = False
            rank = 1 + int(better.sum())
            if rank <= k:
                hits += 1.0
                ndcg += 1.0 / math.log2(rank + 1)
    n = len(usable)
    return RetrievalMetrics(hits / n, ndcg / n, n, len(ids), k)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(
    before: RetrievalMetrics, after: RetrievalMetrics, margin: float, *, min_examples: int = 1
) -> GateDecision:
    """Promote only when the candidate's NDCG@10 beats the current one's by at least ``margin``
    and its HR@10 is not lower; both must be measured on the same, non-empty held-out set."""
    if before.examples != after.examples or before.catalog != after.catalog:
        return GateDecision(False, "metrics measured on different held-out sets")
    if after.examples < min_examples:
        return GateDecision(False, f"too few held-out examples ({after.examples} < {min_examples})")
    gain = after.ndcg_at_10 - before.ndcg_at_10
    if gain < margin:
        return GateDecision(False, f"ndcg@10 gain {gain:+.4f} below margin {margin:.4f}")
    if after.hr_at_10 < before.hr_at_10:
        return GateDecision(False, f"hr@10 fell {before.hr_at_10:.4f} -> {after.hr_at_10:.4f}")
    return GateDecision(True, f"ndcg@10 gain {gain:+.4f} >= margin {margin:.4f}")
