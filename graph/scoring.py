"""The blend's arithmetic: pure, no I/O (graph/reads.py asks the component queries).

Every component of ``blend`` is divided by its best score for the user, plus the component's
evidence prior (``EVIDENCE_PRIORS``), so that on a big graph each spans about [0, 1] whatever its
units, while on a small or young graph a popularity made of one or two purchases stays small
instead of being scaled up to 1 (one purchase must not make an item "most popular" and outrank
what a user's own fresh interest points to). Co-interest and content are already on a [0, 1]
confidence scale (each shrunk by its own evidence in the query) and are taken as they are.

On top of that weighted sum, the ``consensus`` term rewards items that several components rank
high (reciprocal-rank fusion, Cormack et al. 2009): sum over components c of
v_c / (CONSENSUS_K0 + rank_c(i)), 0-based ranks in each component's own list. Ranks do not care how
a component's scores are spread, so an item that three lists put in their top five beats one
that a single list scores highly; that is what finds new arrivals, which no component knows well
yet. It is weighted by the user's co-interest confidence (the share of evidence behind their
neighbourhood, the top of the co-interest list): regular customers of a shop with dense baskets
get it in full, while a household that shares one or two staples with others keeps the scored
blend, which leans on popularity for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The blend's components; weights come from Settings.blend_weights (same defaults).
DEFAULT_BLEND: dict[str, float] = {
    "content": 3.0,
    "collaborative": 0.3,
    "co_interest": 4.0,
    "co_engaged": 32.0,
    "co_engaged_in": 32.0,
    "co_similar": 0.0,
    "popular": 0.1,
    "discovery": 2.0,
    "consensus": 30.0,
}
# The consensus term's own weights per component (graph/scoring.py's docstring; the blend weight
# "consensus" scales the whole term) and the rank offset of its reciprocal ranks.
CONSENSUS_WEIGHTS: dict[str, float] = {
    "content": 1.0,
    "collaborative": 0.5,
    "co_interest": 1.0,
    "co_engaged": 2.0,
    "co_engaged_in": 2.0,
    "discovery": 1.0,
}
CONSENSUS_K0 = 20.0
# the component whose confidence (the top of its list, in [0, 1]) weights the consensus term
CONSENSUS_GATE = "co_interest"
# already on a confidence scale of their own: co-interest and content in [0, 1], co-engaged the
# mean of shrunk item similarities (small, hence its weight)
CALIBRATED = frozenset({"co_interest", "content", "co_engaged", "co_engaged_in", "co_similar"})
# Evidence priors, in each component's own units: popularity is decayed event weight (a purchase
# weighs 5), discovery is decayed new buyers. A component whose best is b contributes at most
# b / (b + prior): about 1 on a real shop (best popularity in the hundreds), 0.17 for a single
# purchase.
EVIDENCE_PRIORS: dict[str, float] = {"popular": 25.0, "discovery": 3.0}


@dataclass
class Scored:
    """One ranked item; ``parts`` holds the normalised components of a blended score."""

    item_id: str
    score: float
    category: str | None = None
    parts: dict[str, float] = field(default_factory=dict)


def normalise(scores: Mapping[str, float]) -> dict[str, float]:
    """Min-max to [0, 1]; a lone candidate (or all equal) gets 1."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi == lo:
        return dict.fromkeys(scores, 1.0)
    return {k: (v - lo) / (hi - lo) for k, v in scores.items()}


def blend(components: Mapping[str, list[Scored]], weights: Mapping[str, float]) -> list[Scored]:
    """Weighted sum of the min-max-normalised components; sorted by score, then item id."""
    out: dict[str, Scored] = {}
    for name, ranked in components.items():
        w = weights.get(name, 0.0)
        if w == 0.0:
            continue
        for item_id, value in normalise({s.item_id: s.score for s in ranked}).items():
            category = next(s.category for s in ranked if s.item_id == item_id)
            entry = out.setdefault(item_id, Scored(item_id, 0.0, category))
            entry.parts[name] = value
            entry.score += w * value
    return sorted(out.values(), key=lambda s: (-s.score, s.item_id))


def blend_scaled(
    components: Mapping[str, list[Scored]],
    weights: Mapping[str, float],
    calibrated: Iterable[str] = CALIBRATED,
    priors: Mapping[str, float] = EVIDENCE_PRIORS,
) -> list[Scored]:
    """Weighted sum of the components, each divided by its best score for this user plus its
    evidence prior (negative scores count as 0), so every component spans [0, 1] whatever its
    units and a component with little evidence behind it stays small; a ``calibrated`` component
    (already on a [0, 1] scale that carries its own confidence) is taken as it is. An item a
    component did not return gets 0 from it. Then the ``consensus`` term (module docstring), from
    the components' ranks; ``parts["consensus"]`` holds its unweighted value. Sorted by score, then
    item id."""
    as_is = set(calibrated)
    out: dict[str, Scored] = {}
    for name, ranked in components.items():
        w = weights.get(name, 0.0)
        best = max((s.score for s in ranked), default=0.0)
        top = 1.0 if name in as_is else best + priors.get(name, 0.0)
        if w == 0.0 or top <= 0.0 or best <= 0.0:
            continue
        for s in ranked:
            value = max(s.score, 0.0) / top
            entry = out.setdefault(s.item_id, Scored(s.item_id, 0.0, s.category))
            entry.parts[name] = value
            entry.score += w * value
    scale = weights.get("consensus", 0.0) * consensus_gate(components)
    if scale > 0.0:
        for item_id, value in consensus(components).items():
            if item_id not in out:  # listed only by components the weighted sum leaves out
                category = next(
                    s.category for r in components.values() for s in r if s.item_id == item_id
                )
                out[item_id] = Scored(item_id, 0.0, category)
            entry = out[item_id]
            entry.parts["consensus"] = value
            entry.score += scale * value
    return sorted(out.values(), key=lambda s: (-s.score, s.item_id))


def blend_needs(weights: Mapping[str, float]) -> set[str]:
    """The components ``blend_scaled`` reads under ``weights``: those weighted, and with a
    consensus weight also the consensus term's components and its gate."""
    wanted = {n for n, w in weights.items() if w != 0.0}
    if weights.get("consensus", 0.0) != 0.0:
        wanted |= {*CONSENSUS_WEIGHTS, CONSENSUS_GATE}
    return wanted


def blend_inputs(
    parts: Mapping[str, list[Scored]], weights: Mapping[str, float]
) -> dict[str, list[Scored]]:
    """The component lists of ``blend_needs``, in ``parts``' order."""
    wanted = blend_needs(weights)
    return {n: ranked for n, ranked in parts.items() if n in wanted}


def consensus_gate(components: Mapping[str, list[Scored]]) -> float:
    """The user's co-interest confidence: the top of the co-interest list, clipped to [0, 1]."""
    top = max((s.score for s in components.get(CONSENSUS_GATE) or []), default=0.0)
    return min(max(top, 0.0), 1.0)


def consensus(
    components: Mapping[str, list[Scored]],
    weights: Mapping[str, float] = CONSENSUS_WEIGHTS,
    k0: float = CONSENSUS_K0,
) -> dict[str, float]:
    """Reciprocal-rank fusion: per item, sum over components of weight / (k0 + its 0-based rank
    in the component's list); only entries with a positive score count (a list's zero-score tail
    is a cold-start top-up, not a judgement)."""
    out: dict[str, float] = {}
    for name, w in weights.items():
        for rank, s in enumerate(components.get(name) or []):
            if s.score > 0.0:
                out[s.item_id] = out.get(s.item_id, 0.0) + w / (k0 + rank)
    return out


def topped_up(ranked: list[Scored], fallback: Iterable[Scored], n: int) -> list[Scored]:
    """``ranked``, then items of ``fallback`` not in it, at score 0, until there are ``n``.

    Content's cold start: a user whose items have no text neighbour above the similarity
    threshold yet (one odd item, say) gets the nearest items to their profile instead of nothing;
    at score 0, so a blend gives them no weight."""
    out = list(ranked)
    seen = {s.item_id for s in out}
    for s in fallback:
        if len(out) >= n:
            break
        if s.item_id not in seen:
            seen.add(s.item_id)
            out.append(Scored(s.item_id, 0.0, s.category))
    return out


def cap_categories(ranked: Iterable[Scored], k: int, cap: int) -> list[Scored]:
    """The first ``k`` items, at most ``cap`` per category (``cap <= 0``: no cap)."""
    out: list[Scored] = []
    per: dict[str | None, int] = {}
    for s in ranked:
        if cap > 0 and s.category is not None and per.get(s.category, 0) >= cap:
            continue
        per[s.category] = per.get(s.category, 0) + 1
        out.append(s)
        if len(out) == k:
            break
    return out
