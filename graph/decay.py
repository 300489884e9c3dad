"""Time-decayed interest strength: pure functions, no I/O.

The rule (same for user->item and user->category edges, and for item popularity):

* an in-order event (``ts >= last_ts``): ``s <- max(0, s * 2^(-(ts - last_ts) / half_life) + w)``,
  then ``last_ts = ts``;
* a late event (``ts < last_ts``): its weight is decayed forward to ``last_ts``:
  ``s <- max(0, s + w * 2^(-(last_ts - ts) / half_life))``; ``last_ts`` stays.

Readers decay the stored ``s`` from ``last_ts`` to "now" (see :func:`strength_at`, and the same
expression in the Cypher of ``graph/queries.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from graph.exceptions import GraphError


def decay_factor(dt: float, half_life: float) -> float:
    """``2^(-dt / half_life)``; ``dt`` is clamped at 0 (nothing grows by decaying backwards)."""
    if half_life <= 0:
        raise ValueError("half_life must be positive")
    return math.exp2(-max(0.0, dt) / half_life)


def decay(strength: float, dt: float, half_life: float) -> float:
    """``strength`` after ``dt`` seconds with no event."""
    return strength * decay_factor(dt, half_life)


def update_strength(
    strength: float, last_ts: float, ts: float, weight: float, half_life: float
) -> tuple[float, float]:
    """Apply one event of ``weight`` at ``ts`` to ``(strength, last_ts)``; returns the new pair."""
    if ts >= last_ts:
        return max(0.0, decay(strength, ts - last_ts, half_life) + weight), ts
    return max(0.0, strength + weight * decay_factor(last_ts - ts, half_life)), last_ts


@dataclass
class EdgeState:
    """The stored state of an INTERESTED_IN edge: strength as of ``last_ts``, counts per type."""

    strength: float
    last_ts: float
    first_ts: float
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def first(cls, event_type: str, ts: float, weight: float) -> EdgeState:
        return cls(strength=max(0.0, weight), last_ts=ts, first_ts=ts, counts={event_type: 1})

    def apply(self, event_type: str, ts: float, weight: float, half_life: float) -> None:
        """Fold one event into this state (in place)."""
        self.strength, self.last_ts = update_strength(
            self.strength, self.last_ts, ts, weight, half_life
        )
        self.first_ts = min(self.first_ts, ts)
        self.counts[event_type] = self.counts.get(event_type, 0) + 1

    def strength_at(self, now: float, half_life: float) -> float:
        return strength_at(self.strength, self.last_ts, now, half_life)


def strength_at(strength: float, last_ts: float, now: float, half_life: float) -> float:
    """The value a reader sees at ``now`` (never decayed backwards when ``now < last_ts``)."""
    return decay(strength, now - last_ts, half_life)


def apply_event(
    state: EdgeState | None,
    event_type: str,
    ts: float,
    weights: Mapping[str, float],
    half_life: float,
) -> EdgeState:
    """A new state after one event (``state`` is ``None`` for a new edge; it is not changed)."""
    weight = weights.get(event_type)
    if weight is None:
        raise GraphError(f"event type {event_type!r} has no weight (TASTEGRAPH_WEIGHTS)")
    if state is None:
        return EdgeState.first(event_type, ts, weight)
    new = EdgeState(state.strength, state.last_ts, state.first_ts, dict(state.counts))
    new.apply(event_type, ts, weight, half_life)
    return new
