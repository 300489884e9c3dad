"""Fold a batch of events into new absolute edge states: pure, no I/O.

``apply_batch`` reads the current states of the keys a batch touches, calls :func:`fold_events`,
and writes the returned states back as absolute values (so a retried transaction writes the same
values). Events are folded in list order (arrival order); late events follow the rule in
``graph/decay.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from graph.decay import EdgeState, apply_event, decay_factor, update_strength
from graph.model import Event

DAY_S = 86400.0

UserItem = tuple[str, str]
UserCategory = tuple[str, str]


DISCOVERY_TYPE = "purchase"


def day_of(ts: float) -> int:
    """The UTC day number of an epoch timestamp (the unit of the trend buckets)."""
    return math.floor(ts / DAY_S)


@dataclass
class TextState:
    """The decayed sum of a user's free-text embeddings (search queries, reviews) as of ``ts``."""

    vector: np.ndarray
    ts: float
    version: str


@dataclass
class StoredState:
    """What the graph holds now for the keys of one batch (read inside the write transaction)."""

    item_edges: dict[UserItem, EdgeState] = field(default_factory=dict)
    category_edges: dict[UserCategory, EdgeState] = field(default_factory=dict)
    category_days: dict[UserCategory, dict[int, float]] = field(default_factory=dict)
    item_categories: dict[str, str] = field(default_factory=dict)
    popularity: dict[str, tuple[float, float]] = field(default_factory=dict)
    discovery: dict[str, tuple[float, float]] = field(default_factory=dict)
    user_text: dict[str, TextState] = field(default_factory=dict)


@dataclass
class FoldResult:
    """New absolute states for every key the batch touched."""

    item_edges: dict[UserItem, EdgeState] = field(default_factory=dict)
    category_edges: dict[UserCategory, EdgeState] = field(default_factory=dict)
    category_days: dict[UserCategory, dict[int, float]] = field(default_factory=dict)
    popularity: dict[str, tuple[float, float]] = field(default_factory=dict)
    discovery: dict[str, tuple[float, float]] = field(default_factory=dict)
    user_text: dict[str, TextState] = field(default_factory=dict)
    user_span: dict[str, tuple[float, float]] = field(default_factory=dict)  # (first_ts, last_ts)


def item_categories(events: Iterable[Event], known: Mapping[str, str]) -> dict[str, str]:
    """Item categories for a batch: ``known`` (stored and catalogue records) wins; an item with
    none takes the first category its events carry."""
    out = dict(known)
    for ev in events:
        if ev.category:
            out.setdefault(ev.item_id, ev.category)
    return out


def event_category(event: Event, categories: Mapping[str, str]) -> str | None:
    """The event's own category, else the item's known category."""
    return event.category or categories.get(event.item_id)


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
    """Apply ``events`` in order on top of ``stored``; returns the touched keys' new states."""
    out = FoldResult()
    texts = text_embeddings or {}
    categories = item_categories(events, stored.item_categories)
    for ev in events:
        key = (ev.user_id, ev.item_id)
        prev = out.item_edges.get(key, stored.item_edges.get(key))
        out.item_edges[key] = apply_event(prev, ev.type, ev.ts, weights, half_life)

        category = event_category(ev, categories)
        if category:
            ckey = (ev.user_id, category)
            cprev = out.category_edges.get(ckey, stored.category_edges.get(ckey))
            out.category_edges[ckey] = apply_event(cprev, ev.type, ev.ts, weights, half_life)
            days = out.category_days.get(ckey)
            if days is None:
                days = dict(stored.category_days.get(ckey, {}))
            add_to_days(days, ev.ts, weights[ev.type], out.category_edges[ckey].last_ts, trend_days)
            out.category_days[ckey] = days

        pop = out.popularity.get(ev.item_id, stored.popularity.get(ev.item_id))
        if pop is None:
            out.popularity[ev.item_id] = (max(0.0, weights[ev.type]), ev.ts)
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


def add_to_days(
    days: dict[int, float], ts: float, weight: float, last_ts: float, keep: int
) -> None:
    """Add ``weight`` to the day bucket of ``ts``; keep only the ``keep`` days up to ``last_ts``."""
    horizon = day_of(last_ts) - keep
    day = day_of(ts)
    if day > horizon:
        days[day] = days.get(day, 0.0) + weight
    for old in [d for d in days if d <= horizon]:
        del days[old]


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
