"""Fold a batch of events into new absolute states: pure, no I/O.

``apply_batch`` reads the current states of the keys a batch touches, calls :func:`fold_events`,
and writes the returned states back as absolute values (so a retried transaction writes the same
values). Every quantity is a commutative sum (``graph/decay.py``): the result depends on the set
of events applied, not on their order or on the batch boundaries.

A user's interest in a category is *defined* as the sum of their item edges over the items of
that category (:func:`category_states`): it is recomputed from the item edges for every
(user, category) whose members changed, so events that arrived before their item's catalogue
record count once the category is known, and an item that changes category moves its users'
interest with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from graph.decay import (
    DAY_S,
    EdgeState,
    add_to_days,
    aggregate,
    apply_event,
    day_of,
    decay_factor,
    update_strength,
)
from graph.model import Event

UserItem = tuple[str, str]
UserCategory = tuple[str, str]

# re-exported: the day buckets are part of the fold's vocabulary
__all__ = ["DAY_S", "add_to_days", "day_of"]

DISCOVERY_TYPE = "purchase"


@dataclass
class TextState:
    """The decayed sum of a user's free-text embeddings (search queries, reviews) as of ``ts``."""

    vector: np.ndarray
    ts: float
    version: str


@dataclass
class StoredState:
    """What the graph holds now for the keys of one batch (read inside the write transaction).

    ``popularity`` and ``discovery`` are ``(raw, ts)``: popularity's ``raw`` is the signed sum
    (the stored ``popularity`` is its floor)."""

    item_edges: dict[UserItem, EdgeState] = field(default_factory=dict)
    popularity: dict[str, tuple[float, float]] = field(default_factory=dict)
    discovery: dict[str, tuple[float, float]] = field(default_factory=dict)
    user_text: dict[str, TextState] = field(default_factory=dict)


@dataclass
class FoldResult:
    """New absolute states for every key the batch touched."""

    item_edges: dict[UserItem, EdgeState] = field(default_factory=dict)
    popularity: dict[str, tuple[float, float]] = field(default_factory=dict)  # (raw, ts)
    discovery: dict[str, tuple[float, float]] = field(default_factory=dict)
    user_text: dict[str, TextState] = field(default_factory=dict)
    user_span: dict[str, tuple[float, float]] = field(default_factory=dict)  # (first_ts, last_ts)


def event_fields(events: Iterable[Event], names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per item, the item fields its events carry: each field from the earliest event
    (``(ts, event_id)``) that has it, so the choice does not depend on arrival order."""
    out: dict[str, dict[str, str]] = {}
    for ev in sorted(events, key=lambda e: (e.ts, e.event_id)):
        row = out.setdefault(ev.item_id, {})
        for n in names:
            value = getattr(ev, n)
            if value:
                row.setdefault(n, value)
    return out


def fold_events(
    events: Sequence[Event],
    stored: StoredState,
    *,
    weights: Mapping[str, float],
    half_life: float,
    text_embeddings: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    model_version: str = "",
    text_weight: float = 1.0,
    trend_days: int = 56,
) -> FoldResult:
    """Apply ``events`` on top of ``stored``; returns the touched keys' new states."""
    out = FoldResult()
    texts = text_embeddings or {}
    for ev in events:
        key = (ev.user_id, ev.item_id)
        prev = out.item_edges.get(key, stored.item_edges.get(key))
        out.item_edges[key] = apply_event(prev, ev.type, ev.ts, weights, half_life, trend_days)

        pop = out.popularity.get(ev.item_id, stored.popularity.get(ev.item_id))
        if pop is None:
            out.popularity[ev.item_id] = (weights[ev.type], ev.ts)
        else:
            out.popularity[ev.item_id] = update_strength(
                pop[0], pop[1], ev.ts, weights[ev.type], half_life
            )

        first, last = out.user_span.get(ev.user_id, (ev.ts, ev.ts))
        out.user_span[ev.user_id] = (min(first, ev.ts), max(last, ev.ts))

        vec = texts.get(ev.event_id)
        if ev.text and vec is not None:
            prev_text = out.user_text.get(ev.user_id, stored.user_text.get(ev.user_id))
            vector = np.asarray(vec, dtype=np.float64)
            out.user_text[ev.user_id] = add_text(
                prev_text, vector, ev.ts, text_weight, half_life, model_version
            )
    fold_discovery(out, stored, half_life)
    return out


def affected_categories(
    touched: Iterable[UserItem],
    category_after: Mapping[str, str | None],
    moved: Mapping[str, tuple[str | None, Iterable[str]]],
) -> set[UserCategory]:
    """The (user, category) pairs whose category interest must be recomputed: the category of
    every touched user-item edge, and for an item that changed category (``moved``: item ->
    (old category, its users)) both the old and the new category of each of its users."""
    out = set()
    for user_id, item_id in touched:
        if (cat := category_after.get(item_id)) is not None:
            out.add((user_id, cat))
    for item_id, (old, users) in moved.items():
        new = category_after.get(item_id)
        for user_id in users:
            for cat in (old, new):
                if cat is not None:
                    out.add((user_id, cat))
    return out


def category_states(
    pairs: Iterable[UserCategory],
    members: Mapping[UserCategory, Mapping[str, EdgeState]],
    *,
    half_life: float,
    trend_days: int,
) -> dict[UserCategory, EdgeState | None]:
    """A user's interest in a category: the sum of their item edges over the category's items
    (``members``: (user, category) -> item_id -> edge). ``None``: no item left, delete the edge."""
    out: dict[UserCategory, EdgeState | None] = {}
    for key in sorted(pairs):
        edges = members.get(key)
        out[key] = aggregate(edges, half_life, trend_days) if edges else None
    return out


def discovery_mark(state: EdgeState | None) -> float | None:
    """When a user-item edge counts in the item's discovery popularity: at the user's first
    interaction with the item, once the user has bought it (``None`` while they have not)."""
    if state is None or state.counts.get(DISCOVERY_TYPE, 0) <= 0:
        return None
    return state.first_ts


def fold_discovery(out: FoldResult, stored: StoredState, half_life: float) -> None:
    """Discovery popularity: per item, the decayed number of its buyers, each counted once at
    their first interaction with it (``sum over buyers of 2^(-(now - first_ts) / half_life)``).
    Staples bought again and again by the same customers count once per customer, when they took
    them up: it ranks what people newly try.

    Kept incrementally as ``(value, ts)``: an edge that gains its first purchase adds 1 at its
    ``first_ts``; a late event that moves ``first_ts`` earlier moves its contribution. ``ts`` is
    always the item's popularity time (its latest event), so the stored pair depends only on the
    events applied, not on how they were cut into batches (crash and replay comparisons)."""
    changes: dict[str, list[tuple[float, float]]] = {}
    for (user_id, item_id), after in out.item_edges.items():
        old = discovery_mark(stored.item_edges.get((user_id, item_id)))
        new = discovery_mark(after)
        if old != new:
            marks = changes.setdefault(item_id, [])
            if old is not None:
                marks.append((old, -1.0))
            if new is not None:
                marks.append((new, 1.0))
    for item_id, (_, ref) in out.popularity.items():
        before = stored.discovery.get(item_id)
        marks = changes.get(item_id, [])
        if before is None and not marks:
            continue
        value = 0.0 if before is None else before[0] * decay_factor(ref - before[1], half_life)
        for ts, weight in marks:
            value += weight * decay_factor(ref - ts, half_life)
        # rounding leaves ~1e-17 where every buyer was removed (a forgotten user): that is 0
        out.discovery[item_id] = (value if value > 1e-12 else 0.0, ref)


def add_text(
    prev: TextState | None,
    vector: np.ndarray,
    ts: float,
    weight: float,
    half_life: float,
    version: str,
) -> TextState:
    """The decayed text sum after one more text embedding (same decay rule, no floor)."""
    if prev is None or prev.version != version:
        return TextState(vector * weight, ts, version)
    if ts >= prev.ts:
        decayed = prev.vector * decay_factor(ts - prev.ts, half_life)
        return TextState(decayed + weight * vector, ts, version)
    late = weight * decay_factor(prev.ts - ts, half_life) * vector
    return TextState(prev.vector + late, prev.ts, version)


def user_embedding(
    edges: Iterable[tuple[float, float, Sequence[float] | np.ndarray]],
    text: TextState | None,
    half_life: float,
) -> np.ndarray | None:
    """Strength-weighted mean of item embeddings plus the decayed text sum, L2-normalised.

    ``edges`` are ``(strength, last_ts, item_embedding)``. All terms are decayed to the latest
    timestamp among them, so the result does not depend on the wall clock. ``None`` when there is
    nothing to average (or everything cancels out).
    """
    rows = [(s, t, np.asarray(v, dtype=np.float64)) for s, t, v in edges if s > 0]
    ref = max([t for _, t, _ in rows] + ([text.ts] if text is not None else []), default=None)
    if ref is None:
        return None
    total: np.ndarray | None = None
    for s, t, v in rows:
        term = s * decay_factor(ref - t, half_life) * v
        total = term if total is None else total + term
    if text is not None:
        term = text.vector * decay_factor(ref - text.ts, half_life)
        total = term if total is None else total + term
    if total is None:
        return None
    norm = float(np.linalg.norm(total))
    if norm == 0.0 or not math.isfinite(norm):
        return None
    return total / norm


def embedding_moved(
    old: Sequence[float] | np.ndarray | None, new: np.ndarray, tolerance: float
) -> bool:
    """Whether ``new`` differs from the stored ``old`` by more than ``tolerance`` (1 - cosine).

    Both are unit vectors. A user whose embedding stays within the tolerance keeps the stored
    one, so the drift between the stored embedding and the truth never exceeds the tolerance.
    """
    if old is None or len(old) != len(new):
        return True
    return 1.0 - float(np.dot(np.asarray(old, dtype=np.float64), new)) > tolerance
