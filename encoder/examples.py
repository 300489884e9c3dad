"""Labelled examples for fine-tuning: (a user's recent context, the item they then chose).

Pure code: no Kafka, no Neo4j, no torch. The stream feeds `ExampleBuilder.observe` with every event
it accepts; each purchase or click (configurable) of a user who already has a history yields an
`Example` whose ``context`` is the texts of the user's last N distinct interacted items, most recent
first, joined with `CONTEXT_SEP`, and whose ``item_text`` is the chosen item's text.
`ExampleCollector` feeds a builder's examples to an `encoder.example_store.ExampleStore` (the newest
examples, persisted as a JSON-lines file); `split_examples` splits off the newest slice for
evaluation.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from encoder.example_store import ExampleStore

CONTEXT_SEP = " ; "
"""Joins the context items' texts, most recent first."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled pair: the user's context before ``ts`` and the item chosen at ``ts``."""

    user_id: str
    context: str
    item_id: str
    item_text: str
    ts: float
    context_ids: tuple[str, ...] = ()
    context_weights: tuple[float, ...] = ()
    """The user's decayed interest in each context item at ``ts`` (event-type weight x time decay,
    as the graph's INTERESTED_IN strength); empty in files written before it existed."""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["context_ids"] = list(self.context_ids)
        d["context_weights"] = [round(w, 6) for w in self.context_weights]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Example:
        return cls(
            user_id=str(d["user_id"]),
            context=str(d["context"]),
            item_id=str(d["item_id"]),
            item_text=str(d["item_text"]),
            ts=float(d["ts"]),
            context_ids=tuple(str(x) for x in d.get("context_ids", ())),
            context_weights=tuple(float(x) for x in d.get("context_weights", ())),
        )


@dataclass
class _History:
    items: deque[tuple[str, str]]  # (item_id, text), most recent first, distinct ids
    # same-ts events not yet applied: (item_id, text, weight)
    pending: list[tuple[str, str, float]] = field(default_factory=list)
    pending_ts: float = float("-inf")
    strength: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (s, last_ts)


class ExampleBuilder:
    """Turns a user's event sequence into examples; bounded memory (at most ``max_users`` users).

    ``context_n``: how many distinct recent items make the context. ``label_types``: the event
    types that yield an example. ``history_types``: the event types that enter the history
    (``None``: every type except ``"return"``). With ``strict_time`` (default) items interacted
    with at the same timestamp as the chosen one (a basket) are not in its context: only strictly
    earlier ones are.
    With ``skip_repeats`` (default) a choice of an item already in the context yields no example
    (re-buying is not what the encoder should learn).

    ``type_weights`` and ``half_life_s`` give each context item its weight in the example
    (`Example.context_weights`): the sum of its events' type weights, each halved every
    ``half_life_s`` seconds up to the example's time, the strength the graph keeps on a user's
    INTERESTED_IN edge. Types missing from ``type_weights`` weigh 1; without a half-life nothing
    decays.
    """

    def __init__(
        self,
        context_n: int = 5,
        *,
        label_types: Iterable[str] = ("purchase", "click"),
        history_types: Iterable[str] | None = None,
        strict_time: bool = True,
        skip_repeats: bool = True,
        max_users: int = 200_000,
        type_weights: Mapping[str, float] | None = None,
        half_life_s: float | None = None,
    ) -> None:
        if context_n < 1:
            raise ValueError("context_n must be at least 1")
        if half_life_s is not None and half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        self.type_weights = dict(type_weights or {})
        self.half_life_s = half_life_s
        self.context_n = context_n
        self.label_types = frozenset(label_types)
        self.history_types = None if history_types is None else frozenset(history_types)
        self.strict_time = strict_time
        self.skip_repeats = skip_repeats
        self.max_users = max_users
        self._users: OrderedDict[str, _History] = OrderedDict()

    def _enters_history(self, event_type: str) -> bool:
        if self.history_types is None:
            return event_type != "return"
        return event_type in self.history_types

    def observe(
        self, user_id: str, item_id: str, text: str, event_type: str, ts: float
    ) -> Example | None:
        """Feeds one event (in event-time order per user); returns the example it yields, if any."""
        text = " ".join(text.split())
        h = self._users.get(user_id)
        if h is None:
            h = _History(items=deque())
            self._users[user_id] = h
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user_id)
        if ts > h.pending_ts:
            self._flush_pending(h)
            h.pending_ts = ts
        example = None
        if event_type in self.label_types and text:
            ctx = list(h.items) if self.strict_time else self._merged(h)
            ctx = ctx[: self.context_n]
            ids = tuple(i for i, _ in ctx)
            if ctx and not (self.skip_repeats and item_id in ids):
                example = Example(
                    user_id=user_id,
                    context=CONTEXT_SEP.join(t for _, t in ctx),
                    item_id=item_id,
                    item_text=text,
                    ts=ts,
                    context_ids=ids,
                    context_weights=tuple(self._weight_at(h, i, ts) for i in ids),
                )
        if self._enters_history(event_type) and text:
            h.pending.append((item_id, text, max(0.0, self.type_weights.get(event_type, 1.0))))
            if not self.strict_time:
                self._flush_pending(h)
        return example

    def _decayed(self, s: float, dt: float) -> float:
        if self.half_life_s is None:
            return s
        return s * math.exp2(-max(0.0, dt) / self.half_life_s)

    def _weight_at(self, h: _History, item_id: str, ts: float) -> float:
        s, last = h.strength.get(item_id, (0.0, ts))
        return self._decayed(s, ts - last)

    def _merged(self, h: _History) -> list[tuple[str, str]]:
        self._flush_pending(h)
        return list(h.items)

    def _flush_pending(self, h: _History) -> None:
        for item_id, text, weight in h.pending:
            for i, (other, _) in enumerate(h.items):
                if other == item_id:
                    del h.items[i]
                    break
            h.items.appendleft((item_id, text))
            s, last = h.strength.get(item_id, (0.0, h.pending_ts))
            h.strength[item_id] = (self._decayed(s, h.pending_ts - last) + weight, h.pending_ts)
            while len(h.items) > self.context_n:
                dropped, _ = h.items.pop()
                h.strength.pop(dropped, None)
        h.pending.clear()

    def forget(self, user_id: str) -> bool:
        """Drops the user's history; True when there was one."""
        return self._users.pop(user_id, None) is not None

    def __len__(self) -> int:
        return len(self._users)


def build_examples(
    events: Iterable[tuple[str, str, str, float]],
    item_texts: dict[str, str] | Callable[[str], str | None],
    builder: ExampleBuilder | None = None,
) -> Iterator[Example]:
    """Examples from ``(user_id, item_id, event_type, ts)`` tuples sorted by ``ts``.

    ``item_texts`` maps an item id to its text; events of items without text are skipped.
    """
    builder = builder if builder is not None else ExampleBuilder()
    lookup = item_texts.get if isinstance(item_texts, dict) else item_texts
    for user_id, item_id, event_type, ts in events:
        text = lookup(item_id)
        if not text:
            continue
        ex = builder.observe(user_id, item_id, text, event_type, ts)
        if ex is not None:
            yield ex


class ExampleCollector:
    """What the stream holds: a builder feeding a store, and `forget` reaching both.

    ``observe`` takes one accepted event (in event-time order per user) and stores the example it
    yields; ``new_since(mark)`` says how many examples arrived since ``store.added_total`` was
    ``mark``. Call ``store.flush()`` when the batch's offsets are committed.
    """

    def __init__(self, store: ExampleStore, builder: ExampleBuilder | None = None) -> None:
        self.store = store
        self.builder = builder if builder is not None else ExampleBuilder()

    def observe(
        self, user_id: str, item_id: str, text: str, event_type: str, ts: float
    ) -> Example | None:
        example = self.builder.observe(user_id, item_id, text, event_type, ts)
        if example is not None:
            self.store.add(example)
        return example

    def forget(self, user_id: str) -> int:
        """Drops the user's history and every stored example of theirs; returns how many."""
        self.builder.forget(user_id)
        return self.store.forget(user_id)

    def new_since(self, mark: int) -> int:
        return self.store.added_total - mark


def split_examples(
    examples: list[Example],
    holdout_fraction: float = 0.1,
    holdout_max: int | None = None,
    per_user_max: int | None = None,
) -> tuple[list[Example], list[Example]]:
    """Splits examples (in arrival order) into (train, newest slice held out for evaluation).

    ``n = round(len * holdout_fraction)``, at most ``holdout_max``, examples are held out. Without
    ``per_user_max`` (``None`` or 0) they are simply the newest ``n``. With it, examples are taken
    newest first, skipping those of a user who already has ``per_user_max`` held out, until ``n``
    are taken: the slice is still the newest data but spreads over more users (on basket data
    the newest examples otherwise come from a handful of customers' last baskets). The examples
    skipped on the way are neither held out nor trained on, and training keeps only examples
    strictly older than the oldest held-out one (no basket is split between the two sides).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError("holdout_fraction must be in [0, 1)")
    n_hold = round(len(examples) * holdout_fraction)
    if holdout_max is not None:
        n_hold = min(n_hold, holdout_max)
    if n_hold == 0:
        return list(examples), []
    if not per_user_max:
        return list(examples[:-n_hold]), list(examples[-n_hold:])
    if per_user_max < 0:
        raise ValueError("per_user_max must be positive (or 0: no cap)")
    taken: dict[str, int] = {}
    held: list[Example] = []
    oldest = len(examples)
    for index in range(len(examples) - 1, -1, -1):
        ex = examples[index]
        if taken.get(ex.user_id, 0) >= per_user_max:
            continue
        taken[ex.user_id] = taken.get(ex.user_id, 0) + 1
        held.append(ex)
        oldest = index
        if len(held) == n_hold:
            break
    held.reverse()
    boundary = examples[oldest].ts
    train = [ex for ex in examples[:oldest] if ex.ts < boundary]
    return train, held


def catalog_of(examples: Iterable[Example]) -> dict[str, str]:
    """Item id -> text of every chosen item in ``examples`` (the last text seen wins)."""
    out: dict[str, str] = {}
    for ex in examples:
        out[ex.item_id] = ex.item_text
    return out
