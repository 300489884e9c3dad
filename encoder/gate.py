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

from encoder.examples import Example
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


def evaluate_retrieval(
    encoder: TextEncoder,
    held_out: Sequence[Example],
    catalog: Mapping[str, str],
    k: int = 10,
    *,
    chunk: int = 256,
) -> RetrievalMetrics:
    """HR@k and NDCG@k of ``encoder`` on ``held_out`` against ``catalog`` (item id -> text).

    Examples whose chosen item is not in the catalogue are skipped (and not counted).
    """
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
