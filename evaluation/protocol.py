"""Protocol v1's data split: calendar days, test days and the (user, day) pairs. Pure, no I/O.

- the test period is the last ``test_days`` calendar days of the events (days without events are
  skipped);
- for each test day d and each user u who purchases on d and has at least one event before d, the
  targets are the items u purchases on d that u never interacted with before d; (u, d) is skipped
  if there are none;
- new arrivals (``launch_items``, ``restrict_pairs``): a seeded share of the items is launched at
  the start of the test period (their earlier events dropped); pairs are scored on their launched
  targets only, and the lists rank only launched items.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

TARGET_TYPE = "purchase"


@dataclass(frozen=True, slots=True)
class Interaction:
    """One event of the input file, as the protocol sees it. ``ts`` is epoch seconds (UTC)."""

    user_id: str
    item_id: str
    ts: float
    type: str

    @property
    def day(self) -> date:
        return day_of(self.ts)


def parse_ts(value: object) -> float:
    """Epoch seconds from a number (epoch seconds) or an ISO-8601 string (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise ValueError(f"not a timestamp: {value!r}")


def day_of(ts: float) -> date:
    """The UTC calendar day of an epoch timestamp."""
    return datetime.fromtimestamp(ts, tz=UTC).date()


def day_start(d: date) -> float:
    """Epoch seconds of 00:00 UTC on ``d``: the "now" of every query asked for day d."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class DaySplit:
    days: tuple[date, ...]  # every day with at least one event, ascending
    test_days: tuple[date, ...]  # the days with events among the last ``test_days`` calendar days
    by_day: Mapping[date, tuple[Interaction, ...]]  # each day's events in input (time) order

    def history_days(self, before: date) -> list[date]:
        return [d for d in self.days if d < before]


def split_days(events: Iterable[Interaction], test_days: int = 30) -> DaySplit:
    if test_days < 1:
        raise ValueError("test_days must be at least 1")
    grouped: dict[date, list[Interaction]] = defaultdict(list)
    for e in events:
        grouped[e.day].append(e)
    if not grouped:
        raise ValueError("no events")
    days = tuple(sorted(grouped))
    first_test = days[-1] - timedelta(days=test_days - 1)
    tests = tuple(d for d in days if d >= first_test)
    by_day = {d: tuple(sorted(grouped[d], key=lambda e: e.ts)) for d in days}
    return DaySplit(days=days, test_days=tests, by_day=by_day)


@dataclass(frozen=True, slots=True)
class Pair:
    """One (user, day) of the protocol: what the user buys new that day, what they had touched."""

    user_id: str
    day: date
    targets: frozenset[str]
    seen: frozenset[str]


def day_pairs(
    d: date, day_events: Iterable[Interaction], seen: Mapping[str, Set[str]]
) -> list[Pair]:
    """The pairs of test day ``d``; ``seen`` maps each user to the items they interacted with before
    d."""
    bought: dict[str, set[str]] = defaultdict(set)
    for e in day_events:
        if e.type == TARGET_TYPE:
            bought[e.user_id].add(e.item_id)
    out = []
    for user in sorted(bought):
        history = seen.get(user)
        if not history:
            continue
        targets = frozenset(bought[user] - history)
        if targets:
            out.append(Pair(user, d, targets, frozenset(history)))
    return out


class SeenIndex:
    """Items each user interacted with (any type), fed one day at a time."""

    def __init__(self) -> None:
        self.items: dict[str, set[str]] = defaultdict(set)

    def add(self, events: Iterable[Interaction]) -> None:
        for e in events:
            self.items[e.user_id].add(e.item_id)


@dataclass(frozen=True)
class Launch:
    """New arrivals (``evaluate --new-items SHARE``): ``items`` are launched at the start of the
    test period; ``events`` is the input without their earlier events."""

    items: frozenset[str]
    events: tuple[Interaction, ...]


def launch_items(
    events: Sequence[Interaction], share: float, seed: int, test_days: int = 30
) -> Launch:
    """A seeded ``share`` of the items (of the events, in sorted id order) launched at 00:00 UTC of
    the first test day: every event of theirs before it is dropped. Deterministic."""
    if not 0.0 < share <= 1.0:
        raise ValueError("the new-items share must be in (0, 1]")
    items = sorted({e.item_id for e in events})
    rng = np.random.default_rng(seed)
    n = round(share * len(items))
    chosen = rng.choice(len(items), size=n, replace=False) if n else np.zeros(0, dtype=np.int64)
    launched = frozenset(items[int(i)] for i in chosen)
    start = day_start(split_days(events, test_days).test_days[0])
    kept = tuple(e for e in events if e.ts >= start or e.item_id not in launched)
    return Launch(launched, kept)


def restrict_pairs(pairs: Iterable[Pair], launched: Set[str]) -> list[Pair]:
    """New arrivals: each pair scored on its launched targets only; pairs without one dropped."""
    out = []
    for p in pairs:
        targets = p.targets & launched
        if targets:
            out.append(Pair(p.user_id, p.day, frozenset(targets), p.seen))
    return out
