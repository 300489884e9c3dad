"""HR@K, Recall@K and NDCG@K with binary relevance, per pair and averaged. Pure, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence, Set
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PairScore:
    hr: float
    recall: float
    ndcg: float
    hits: int


def pair_metrics(ranked: Sequence[str], targets: Set[str], k: int) -> PairScore:
    """Metrics of one ranked list (only its first ``k`` count) against a non-empty target set."""
    if not targets:
        raise ValueError("targets must not be empty")
    if k < 1:
        raise ValueError("k must be at least 1")
    top = list(ranked[:k])
    hit_flags = [1 if item in targets else 0 for item in top]
    hits = sum(hit_flags)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hit_flags))
    ideal = min(k, len(targets))
    idcg = sum(1.0 / math.log2(r + 2) for r in range(ideal))
    return PairScore(1.0 if hits else 0.0, hits / ideal, dcg / idcg, hits)


@dataclass
class Totals:
    """Running sums of pair metrics; ``summary`` gives the averages under the protocol's keys."""

    k: int
    n: int = 0
    hr: float = 0.0
    recall: float = 0.0
    ndcg: float = 0.0
    hits: int = 0
    targets: int = 0

    def add(self, score: PairScore, n_targets: int) -> None:
        self.n += 1
        self.hr += score.hr
        self.recall += score.recall
        self.ndcg += score.ndcg
        self.hits += score.hits
        self.targets += n_targets

    def summary(self, digits: int = 4) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            f"hr@{self.k}": round(self.hr / n, digits),
            f"recall@{self.k}": round(self.recall / n, digits),
            f"ndcg@{self.k}": round(self.ndcg / n, digits),
        }

    @property
    def target_share(self) -> float:
        """The share of all target items that appeared in a top K."""
        return self.hits / self.targets if self.targets else 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one strategy did for one pair: the 0-based ranks of the hits in its top list."""

    day_index: int
    n_targets: int
    hit_ranks: tuple[int, ...]


def hit_ranks(ranked: Sequence[str], targets: Set[str]) -> tuple[int, ...]:
    return tuple(r for r, item in enumerate(ranked) if item in targets)


def score_at(outcome: Outcome, k: int) -> PairScore:
    """Metrics at cut-off ``k`` (at most the list length the outcome was recorded with)."""
    ranks = [r for r in outcome.hit_ranks if r < k]
    ideal = min(k, outcome.n_targets)
    dcg = sum(1.0 / math.log2(r + 2) for r in ranks)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(ideal))
    return PairScore(1.0 if ranks else 0.0, len(ranks) / ideal, dcg / idcg, len(ranks))


def summarise(outcomes: Sequence[Outcome], k: int) -> Totals:
    totals = Totals(k)
    for o in outcomes:
        totals.add(score_at(o, k), o.n_targets)
    return totals
