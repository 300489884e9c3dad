"""Blend weights scored offline on saved component lists (`tastegraph tune-blend`). Pure, no I/O.

``score`` reproduces ``graph.scoring.blend_scaled`` exactly (same arithmetic, same tie-break by
item id), so the default weights on a file saved by `tastegraph evaluate --save-components` give
that evaluation's blend figures to the last digit; any other weights give what the blend would
have scored with them, without rebuilding the graph.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from encoder.gate import GainInterval, paired_bootstrap
from evaluation.components import PairComponents
from evaluation.metrics import Outcome, hit_ranks, pair_metrics, summarise
from graph.scoring import CALIBRATED, EVIDENCE_PRIORS, Scored, consensus, consensus_gate


@dataclass(frozen=True)
class _Pair:
    user_id: str
    items: np.ndarray  # every item any component returned, in id order
    parts: tuple[tuple[str, np.ndarray, np.ndarray], ...]  # name, item positions, scaled values
    consensus_idx: np.ndarray  # item positions of the consensus term's votes
    consensus_values: np.ndarray  # and their values (graph.scoring.consensus)
    gate: float  # the consensus term's weight for this user (co-interest confidence)
    drop: frozenset[str]
    targets: frozenset[str]
    k: int


def prepare(records: Sequence[PairComponents]) -> list[_Pair]:
    """Each record's components scaled as the blend scales them (best plus evidence prior, or as
    they are when calibrated); components with nothing positive are left out, as the blend does.
    The consensus term's votes and gate, from ``graph.scoring`` itself."""
    out = []
    for r in records:
        items = sorted({i for ranked in r.parts.values() for i, _ in ranked})
        pos = {i: n for n, i in enumerate(items)}
        parts = []
        for name, ranked in r.parts.items():
            best = max((s for _, s in ranked), default=0.0)
            top = 1.0 if name in CALIBRATED else best + EVIDENCE_PRIORS.get(name, 0.0)
            if top <= 0.0 or best <= 0.0:
                continue
            idx = np.array([pos[i] for i, _ in ranked], dtype=np.int64)
            values = np.array([max(s, 0.0) / top for _, s in ranked], dtype=np.float64)
            parts.append((name, idx, values))
        # the consensus term exactly as the blend computes it (graph.scoring), per item
        lists = {n: [Scored(i, s) for i, s in ranked] for n, ranked in r.parts.items()}
        votes = consensus(lists)
        consensus_idx = np.array([pos[i] for i in votes], dtype=np.int64)
        consensus_values = np.array(list(votes.values()), dtype=np.float64)
        out.append(
            _Pair(
                r.user_id,
                np.array(items, dtype=object),
                tuple(parts),
                consensus_idx,
                consensus_values,
                consensus_gate(lists),
                r.drop,
                r.targets,
                r.k,
            )
        )
    return out


def ranked(pair: _Pair, weights: Mapping[str, float]) -> list[str]:
    """The blend's top k for one pair under ``weights``, after the evaluation's filter."""
    n = len(pair.items)
    score = np.zeros(n, dtype=np.float64)
    present = np.zeros(n, dtype=bool)
    for name, idx, values in pair.parts:
        w = weights.get(name, 0.0)
        if w == 0.0:
            continue
        score[idx] += w * values
        present[idx] = True
    scale = weights.get("consensus", 0.0) * pair.gate
    if scale > 0.0:
        score[pair.consensus_idx] += scale * pair.consensus_values
        present[pair.consensus_idx] = True
    where = np.flatnonzero(present)
    order = where[np.lexsort((where, -score[where]))][: pair.k]
    return [i for i in pair.items[order] if i not in pair.drop]


def pair_ndcg(pairs: Sequence[_Pair], weights: Mapping[str, float]) -> np.ndarray:
    """Each pair's NDCG at its k under ``weights`` (``score``'s mean, before rounding)."""
    return np.array([pair_metrics(ranked(p, weights), p.targets, p.k).ndcg for p in pairs])


def gain_interval(
    pairs: Sequence[_Pair], before: np.ndarray, after: np.ndarray, resamples: int = 2000
) -> GainInterval:
    """The paired bootstrap over users (the fine-tuning gate's, encoder/gate.py) of the mean
    per-pair NDCG gain from ``before`` to ``after``: whether a weight set's gain is more than which
    customers happened to be in the test days."""
    return paired_bootstrap([p.user_id for p in pairs], before, after, resamples=resamples)


def score(pairs: Sequence[_Pair], weights: Mapping[str, float]) -> dict[str, float]:
    """HR, Recall and NDCG at each pair's k of the blend under ``weights``."""
    if not pairs:
        return {}
    outcomes = [Outcome(0, len(p.targets), hit_ranks(ranked(p, weights), p.targets)) for p in pairs]
    return summarise(outcomes, pairs[0].k).summary()


def grid(
    base: Mapping[str, float], axes: Mapping[str, Sequence[float]]
) -> Iterator[dict[str, float]]:
    """``base`` with every combination of the ``axes`` values (the base itself first)."""
    yield dict(base)
    names = list(axes)
    for combo in itertools.product(*(axes[n] for n in names)):
        w = dict(base)
        w.update(zip(names, combo, strict=True))
        if w != dict(base):
            yield w


def parse_axes(specs: Sequence[str]) -> dict[str, list[float]]:
    """``["content=1,3,9", "popular=0.1"]`` -> ``{"content": [1, 3, 9], "popular": [0.1]}``."""
    axes: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"expected NAME=V1,V2,... but got {spec!r}")
        try:
            axes[name.strip()] = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"weights of {name.strip()!r} must be numbers: {values!r}") from None
    return axes
