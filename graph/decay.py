"""Time-decayed interest strength: pure functions, no I/O.

An edge (user->item, user->category) and an item's popularity keep the *signed* decayed sum of
their events' weights as of their latest event, ``raw(T) = sum w_i * 2^(-(T - t_i) / half_life)``
with ``T = max t_i``, and the strength a reader sees is that sum floored at zero:
``strength = max(0, raw)``. Every event adds its weight decayed to ``T`` (a late event is decayed
forward to ``last_ts``; an event after ``last_ts`` decays the sum to its own time first), so the
stored pair is a function of the *set* of events, not of their arrival order or of how they were
cut into batches (up to float rounding). Because decay is a positive factor,
``max(0, raw) * decay == max(0, raw * decay)``: storing the floored strength as of ``last_ts`` and
decaying it when read (:func:`strength_at`, and the same expression in the Cypher of
``graph/queries/``) gives the same as flooring the decayed sum when read.

A sum within :data:`ZERO_EPS` of zero (a purchase and its return: 5 - 5 in another rounding)
counts as zero, so float noise never turns into a tiny positive strength.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from graph.exceptions import GraphError

ZERO_EPS = 1e-9


def decay_factor(dt: float, half_life: float) -> float:
    """``2^(-dt / half_life)``; ``dt`` is clamped at 0 (nothing grows by decaying backwards)."""
    if half_life <= 0:
        raise ValueError("half_life must be positive")
    return math.exp2(-max(0.0, dt) / half_life)


def decay(strength: float, dt: float, half_life: float) -> float:
    """``strength`` after ``dt`` seconds with no event."""
    return strength * decay_factor(dt, half_life)


def floored(raw: float) -> float:
    """The strength of a signed decayed sum: ``max(0, raw)``, float noise around 0 counted as 0."""
    return raw if raw > ZERO_EPS else 0.0


def update_strength(
    raw: float, last_ts: float, ts: float, weight: float, half_life: float
) -> tuple[float, float]:
    """Add one event of ``weight`` at ``ts`` to the signed sum ``(raw, last_ts)``; returns the new
    pair (not floored: see :func:`floored`)."""
    if ts >= last_ts:
        return decay(raw, ts - last_ts, half_life) + weight, ts
    return raw + weight * decay_factor(last_ts - ts, half_life), last_ts


def add_to_days(
    days: dict[int, float], ts: float, weight: float, last_ts: float, keep: int
) -> None:
    """Add ``weight`` to the day bucket of ``ts``; keep only the ``keep`` days up to ``last_ts``.

    The horizon only moves forward, so the buckets end up holding the days after
    ``day_of(max ts) - keep`` whatever the order the events came in."""
    horizon = day_of(last_ts) - keep
    day = day_of(ts)
    if day > horizon:
        days[day] = days.get(day, 0.0) + weight
    for old in [d for d in days if d <= horizon]:
        del days[old]


DAY_S = 86400.0


def day_of(ts: float) -> int:
    """The UTC day number of an epoch timestamp (the unit of the trend buckets)."""
    return math.floor(ts / DAY_S)


@dataclass
class EdgeState:
    """The stored state of an INTERESTED_IN edge: the signed decayed sum ``raw`` as of
    ``last_ts``, counts per type, and the event weight per UTC day (the last ``trend_days``)."""

    raw: float
    last_ts: float
    first_ts: float
    counts: dict[str, int] = field(default_factory=dict)
    days: dict[int, float] = field(default_factory=dict)

    @property
    def strength(self) -> float:
        """What readers see (as of ``last_ts``): the sum floored at zero."""
        return floored(self.raw)

    @classmethod
    def first(cls, event_type: str, ts: float, weight: float, trend_days: int = 56) -> EdgeState:
        state = cls(raw=0.0, last_ts=ts, first_ts=ts)
        state.apply(event_type, ts, weight, 1.0, trend_days)
        return state

    def apply(
        self, event_type: str, ts: float, weight: float, half_life: float, trend_days: int = 56
    ) -> None:
        """Fold one event into this state (in place)."""
        self.raw, self.last_ts = update_strength(self.raw, self.last_ts, ts, weight, half_life)
        self.first_ts = min(self.first_ts, ts)
        self.counts[event_type] = self.counts.get(event_type, 0) + 1
        add_to_days(self.days, ts, weight, self.last_ts, trend_days)

    def copy(self) -> EdgeState:
        return EdgeState(self.raw, self.last_ts, self.first_ts, dict(self.counts), dict(self.days))

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
    trend_days: int = 56,
) -> EdgeState:
    """A new state after one event (``state`` is ``None`` for a new edge; it is not changed)."""
    weight = weights.get(event_type)
    if weight is None:
        raise GraphError(f"event type {event_type!r} has no weight (TASTEGRAPH_WEIGHTS)")
    if state is None:
        return EdgeState.first(event_type, ts, weight, trend_days)
    new = state.copy()
    new.apply(event_type, ts, weight, half_life, trend_days)
    return new


def aggregate(states: Mapping[str, EdgeState], half_life: float, trend_days: int) -> EdgeState:
    """The sum of several edges (a user's item edges of one category): raw sums decayed to the
    latest ``last_ts``, counts and day buckets added, the span's extremes. Summed in key order,
    so the result does not depend on the order the edges were read in."""
    if not states:
        raise ValueError("nothing to aggregate")
    last = max(s.last_ts for s in states.values())
    out = EdgeState(0.0, last, min(s.first_ts for s in states.values()))
    horizon = day_of(last) - trend_days
    for key in sorted(states):
        s = states[key]
        out.raw += s.raw * decay_factor(last - s.last_ts, half_life)
        for t, n in s.counts.items():
            out.counts[t] = out.counts.get(t, 0) + n
        for d, w in s.days.items():
            if d > horizon:
                out.days[d] = out.days.get(d, 0.0) + w
    return out
