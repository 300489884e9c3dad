"""Folding a batch into absolute states (graph/fold.py) and the pure parts of apply_batch."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.batch import catalogue_categories, filter_applied, item_rows, new_offsets, offset_rows
from graph.decay import EdgeState
from graph.fold import (
    DAY_S,
    FoldResult,
    StoredState,
    TextState,
    UserCategory,
    add_to_days,
    affected_categories,
    category_states,
    embedding_moved,
    fold_events,
    user_embedding,
)
from graph.model import Event, ItemRecord
from graph.store import GraphBatch

HL = 14 * DAY_S
W = {"browse": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "return": -5.0}


def ev(n: int, user: str, item: str, kind: str, day: float, **kw: object) -> Event:
    return Event(f"e{n}", user, item, kind, day * DAY_S, **kw)  # type: ignore[arg-type]


def test_fold_item_edges_popularity_and_span() -> None:
    events = [
        ev(1, "u1", "i1", "click", 0, category="shoes"),
        ev(2, "u1", "i1", "purchase", 14),
        ev(3, "u2", "i1", "browse", 14),
        ev(4, "u1", "i2", "browse", 7, category="shoes"),
    ]
    out = fold_events(events, StoredState(), weights=W, half_life=HL)
    assert out.item_edges[("u1", "i1")].strength == pytest.approx(6.0)
    assert out.item_edges[("u1", "i1")].counts == {"click": 1, "purchase": 1}
    assert out.item_edges[("u1", "i1")].days == {0: 2.0, 14: 5.0}
    # popularity of i1: 2 -> (d14) 1 + 5 + 1 = 7
    assert out.popularity["i1"] == (pytest.approx(7.0), 14 * DAY_S)
    assert out.user_span == {"u1": (0.0, 14 * DAY_S), "u2": (14 * DAY_S, 14 * DAY_S)}


def test_category_interest_is_the_sum_of_the_users_item_edges_in_it() -> None:
    events = [
        ev(1, "u1", "i1", "click", 0),
        ev(2, "u1", "i1", "purchase", 14),
        ev(3, "u1", "i2", "browse", 7),
    ]
    out = fold_events(events, StoredState(), weights=W, half_life=HL)
    members = {
        ("u1", "shoes"): {"i1": out.item_edges[("u1", "i1")], "i2": out.item_edges[("u1", "i2")]}
    }
    shoes = category_states([("u1", "shoes")], members, half_life=HL, trend_days=56)[
        ("u1", "shoes")
    ]
    assert shoes is not None
    # click d0 (2) -> purchase d14: 1 + 5 = 6; the browse of d7 adds 2^-0.5 at d14
    assert shoes.strength == pytest.approx(6.0 + 2**-0.5)
    assert (shoes.last_ts, shoes.first_ts) == (14 * DAY_S, 0.0)
    assert shoes.days == {0: 2.0, 7: 1.0, 14: 5.0}
    assert shoes.counts == {"click": 1, "purchase": 1, "browse": 1}
    # no item left in it: the edge goes
    assert category_states([("u1", "books")], members, half_life=HL, trend_days=56) == {
        ("u1", "books"): None
    }


def test_affected_categories_include_both_sides_of_a_moved_item() -> None:
    pairs = affected_categories(
        [("u1", "i1"), ("u2", "i3")],
        {"i1": "shoes", "i2": "books", "i3": None},
        {"i2": ("toys", ["u1", "u3"])},
    )
    assert pairs == {
        ("u1", "shoes"),
        ("u1", "books"),
        ("u1", "toys"),
        ("u3", "books"),
        ("u3", "toys"),
    }


def test_a_return_is_kept_in_the_signed_sum_and_floored_when_read() -> None:
    """The floor applies to what readers see, not to the sum: order cannot matter."""
    a = [ev(1, "u1", "i1", "return", 0), ev(2, "u1", "i1", "purchase", 1)]
    one = fold_events(a, StoredState(), weights=W, half_life=HL).item_edges[("u1", "i1")]
    two = fold_events(a[::-1], StoredState(), weights=W, half_life=HL).item_edges[("u1", "i1")]
    assert one.raw == pytest.approx(two.raw)
    assert one.strength == two.strength == pytest.approx(5.0 - 5.0 * 2 ** (-1 / 14))
    assert fold_events(a[:1], StoredState(), weights=W, half_life=HL).popularity["i1"][0] == -5.0


def test_fold_continues_from_stored_state() -> None:
    stored = StoredState(
        item_edges={("u1", "i1"): EdgeState(4.0, 0.0, 0.0, {"click": 2}, {0: 4.0})},
        popularity={"i1": (10.0, 0.0)},
    )
    out = fold_events([ev(1, "u1", "i1", "browse", 14)], stored, weights=W, half_life=HL)
    assert out.item_edges[("u1", "i1")].strength == pytest.approx(3.0)
    assert out.item_edges[("u1", "i1")].counts == {"click": 2, "browse": 1}
    assert out.item_edges[("u1", "i1")].days == {0: 4.0, 14: 1.0}
    assert out.popularity["i1"][0] == pytest.approx(6.0)
    assert stored.item_edges[("u1", "i1")].strength == 4.0  # input untouched


def test_text_embeddings_decay_and_reset_on_a_new_model_version() -> None:
    v1, v2 = [1.0, 0.0], [0.0, 1.0]
    events = [ev(1, "u1", "i1", "click", 0, text="a"), ev(2, "u1", "i1", "click", 14, text="b")]
    out = fold_events(
        events,
        StoredState(),
        weights=W,
        half_life=HL,
        text_embeddings={"e1": v1, "e2": v2},
        model_version="m1",
    )
    text = out.user_text["u1"]
    assert text.version == "m1" and text.ts == 14 * DAY_S
    np.testing.assert_allclose(text.vector, [0.5, 1.0])
    stored = StoredState(user_text={"u1": text})
    out = fold_events(
        [ev(3, "u1", "i1", "click", 15, text="c")],
        stored,
        weights=W,
        half_life=HL,
        text_embeddings={"e3": v1},
        model_version="m2",
    )
    np.testing.assert_allclose(out.user_text["u1"].vector, v1)


def test_day_buckets_keep_a_bounded_horizon() -> None:
    days: dict[int, float] = {}
    add_to_days(days, 0.0, 1.0, 0.0, keep=3)
    add_to_days(days, 2 * DAY_S, 2.0, 2 * DAY_S, keep=3)
    assert days == {0: 1.0, 2: 2.0}
    add_to_days(days, 5 * DAY_S, 1.0, 5 * DAY_S, keep=3)
    assert days == {5: 1.0}
    add_to_days(days, 1 * DAY_S, 1.0, 5 * DAY_S, keep=3)  # too late for the horizon
    assert days == {5: 1.0}


def test_user_embedding_is_a_weighted_normalised_mean() -> None:
    vec = user_embedding([(3.0, 0.0, [1.0, 0.0]), (1.0, 0.0, [0.0, 1.0])], None, HL)
    assert vec is not None
    np.testing.assert_allclose(vec, np.array([3.0, 1.0]) / np.sqrt(10.0))
    # an older edge weighs less: decayed to the newest timestamp
    vec = user_embedding([(2.0, 0.0, [1.0, 0.0]), (1.0, HL, [0.0, 1.0])], None, HL)
    assert vec is not None
    np.testing.assert_allclose(vec, np.array([1.0, 1.0]) / np.sqrt(2.0))
    text = TextState(np.array([0.0, 2.0]), 0.0, "m")
    vec = user_embedding([(2.0, 0.0, [1.0, 0.0])], text, HL)
    assert vec is not None
    np.testing.assert_allclose(vec, np.array([1.0, 1.0]) / np.sqrt(2.0))
    assert user_embedding([], None, HL) is None
    assert user_embedding([(0.0, 0.0, [1.0, 0.0])], None, HL) is None


def kafka(n: int, part: int, off: int, user: str = "u1") -> Event:
    return Event(f"e{n}", user, "i1", "click", 0.0, topic="clicks", partition=part, offset=off)


def test_exactly_once_filter_offsets_and_event_ids() -> None:
    events = [
        kafka(1, 0, 5),  # at the stored offset: applied before
        kafka(2, 0, 6),
        kafka(3, 1, 0),  # event id seen before (a replayed file)
        kafka(2, 1, 1),  # same id twice in one batch
        Event("e9", "u1", "i1", "click", 0.0),  # offline: no offset guard
    ]
    items = [
        ItemRecord("i1", topic="items", partition=0, offset=3),
        ItemRecord("i2", topic="items", partition=0, offset=4),
    ]
    offsets = {"clicks/0": 5, "items/0": 3}
    kept, kept_items, dups = filter_applied(events, items, offsets, {"e3"})
    assert [e.event_id for e in kept] == ["e2", "e9"]
    assert [i.item_id for i in kept_items] == ["i2"]
    assert dups == 3
    assert new_offsets(events, items, offsets) == [
        {"key": "clicks/0", "offset": 6},
        {"key": "clicks/1", "offset": 1},
        {"key": "items/0", "offset": 4},
    ]
    assert new_offsets(kept, kept_items, offsets) == [
        {"key": "clicks/0", "offset": 6},
        {"key": "items/0", "offset": 4},
    ]
    batch = GraphBatch(events=events, items=items)
    assert [r["key"] for r in offset_rows(batch)] == ["clicks/0", "clicks/1", "items/0"]


def test_item_rows_catalogue_wins_events_fill_gaps_and_changed_text_is_flagged() -> None:
    events = [
        Event("e1", "u1", "i1", "click", 0.0, title="Red shoe", category="boots"),
        Event("e2", "u1", "i3", "click", 0.0, title="Mug", description="blue"),
        Event("e3", "u1", "i3", "click", 0.0, title="Cup", category="kitchen"),
    ]
    items = [ItemRecord("i1", title="Red running shoe"), ItemRecord("i2", category="books")]
    known = {
        "i1": {
            "title": "Red shoe",
            "category": "shoes",
            "description": None,
            "embedding_version": "m1",
        },
        "i3": {"title": "Mug", "category": None, "description": None, "embedding_version": "m1"},
    }
    rows = item_rows(events, items, known)
    assert rows == [
        # catalogue title wins; the event's category does not override the stored one
        {
            "item_id": "i1",
            "title": "Red running shoe",
            "category": None,
            "description": None,
            "text_changed": True,
        },
        {
            "item_id": "i2",
            "title": None,
            "category": "books",
            "description": None,
            "text_changed": False,
        },
        # events fill the stored gaps (first event wins): the text grew, so re-embed
        {
            "item_id": "i3",
            "title": None,
            "category": "kitchen",
            "description": "blue",
            "text_changed": True,
        },
    ]


def test_embedding_moved() -> None:
    a = np.array([1.0, 0.0])
    assert embedding_moved(None, a, 1e-4)
    assert embedding_moved([1.0, 0.0, 0.0], a, 1e-4)  # another dimension
    assert not embedding_moved([1.0, 0.0], a, 1e-4)
    b = np.array([np.cos(0.02), np.sin(0.02)])  # 1 - cos = 2e-4
    assert embedding_moved(a, b, 1e-4)
    assert not embedding_moved(a, b, 1e-3)


def _continue(stored: StoredState, out: FoldResult) -> StoredState:
    """The stored state after writing ``out`` on top of ``stored`` (what apply_batch does)."""
    return StoredState(
        item_edges={**stored.item_edges, **out.item_edges},
        popularity={**stored.popularity, **out.popularity},
        discovery={**stored.discovery, **out.discovery},
        user_text={**stored.user_text, **out.user_text},
    )


class GraphModel:
    """apply_batch without Neo4j: the fold, the category moves and the category recompute, on
    plain dicts (the same pure functions, in the same steps)."""

    def __init__(self) -> None:
        self.stored = StoredState()
        self.categories: dict[str, str] = {}
        self.category_edges: dict[UserCategory, EdgeState] = {}

    def apply(self, events: list[Event], items: list[ItemRecord]) -> None:
        out = fold_events(events, self.stored, weights=W, half_life=HL)
        before = dict(self.categories)
        for row in catalogue_categories(events, items):
            if not row["fill"] or row["item_id"] not in self.categories:
                self.categories[row["item_id"]] = row["category"]
        moved = {
            i: (before.get(i), [u for (u, j) in self.stored.item_edges if j == i])
            for i, c in self.categories.items()
            if before.get(i) != c
        }
        self.stored = _continue(self.stored, out)
        pairs = affected_categories(out.item_edges, self.categories, moved)
        states = category_states(pairs, self.members(), half_life=HL, trend_days=56)
        for key, state in states.items():
            if state is None:
                self.category_edges.pop(key, None)
            else:
                self.category_edges[key] = state

    def members(self) -> dict[UserCategory, dict[str, EdgeState]]:
        out: dict[UserCategory, dict[str, EdgeState]] = {}
        for (u, i), edge in self.stored.item_edges.items():
            if (c := self.categories.get(i)) is not None:
                out.setdefault((u, c), {})[i] = edge
        return out


def _same_edges(a: Mapping[Any, EdgeState], b: Mapping[Any, Any]) -> None:
    assert a.keys() == b.keys()
    for key, x in a.items():
        y = b[key]
        assert x.raw == pytest.approx(y.raw, rel=1e-9, abs=1e-9), key
        assert x.strength == pytest.approx(y.strength, rel=1e-9, abs=1e-9), key
        assert (x.last_ts, x.first_ts, x.counts) == (y.last_ts, y.first_ts, y.counts), key
        assert x.days.keys() == y.days.keys(), key
        for d, w in x.days.items():
            assert w == pytest.approx(y.days[d], abs=1e-9), key


EVENT_CATEGORY = {"i0": "a", "i1": "a", "i2": None, "i3": "b"}  # what events carry, per item


def _event(n: int, u: int, i: int, kind: str, day: float, carry: bool) -> Event:
    category = EVENT_CATEGORY[f"i{i}"] if carry else None
    return Event(f"e{n}", f"u{u}", f"i{i}", kind, day * DAY_S, category=category)


event_lists = st.lists(
    st.builds(
        _event,
        st.integers(0, 10**6),
        st.integers(0, 2),
        st.integers(0, 3),
        st.sampled_from(sorted(W)),
        st.floats(0, 60, allow_nan=False),
        st.booleans(),
    ),
    max_size=25,
    unique_by=lambda e: e.event_id,
)
catalogues = st.dictionaries(
    st.sampled_from(sorted(EVENT_CATEGORY)), st.sampled_from(["a", "b", "c"])
)


@settings(max_examples=300, deadline=None)
@given(
    event_lists,
    catalogues,
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 30), max_size=4),
)
def test_any_order_and_any_batch_split_give_the_graph_of_the_set(
    events: list[Event], catalogue: dict[str, str], rnd: Any, cuts: list[int]
) -> None:
    """Permute the events, cut them into batches anywhere, deliver each catalogue record in any
    batch (before or after its item's events): the item edges, popularity, discovery and category
    interest equal the definition over the whole set, up to float rounding."""
    shuffled = list(events)
    rnd.shuffle(shuffled)
    bounds = sorted({0, len(shuffled), *(min(c, len(shuffled)) for c in cuts)})
    batches = [shuffled[a:b] for a, b in pairwise(bounds)] or [[]]
    records: list[list[ItemRecord]] = [[] for _ in batches]
    for item, cat in sorted(catalogue.items()):
        records[rnd.randrange(len(batches))].append(ItemRecord(item, category=cat))
    model = GraphModel()
    for evs, items in zip(batches, records, strict=True):
        model.apply(evs, items)

    whole = fold_events(events, StoredState(), weights=W, half_life=HL)
    _same_edges(model.stored.item_edges, whole.item_edges)
    for name in ("popularity", "discovery"):
        got, want = getattr(model.stored, name), getattr(whole, name)
        assert got.keys() == want.keys()
        for item, (value, ts) in want.items():
            assert got[item][1] == ts
            assert got[item][0] == pytest.approx(value, rel=1e-9, abs=1e-9)
    # category interest by its definition: the final categories, the item edges summed
    carried = {e.item_id for e in events if e.category}
    categories = {
        i: catalogue.get(i) or (c if i in carried else None) for i, c in EVENT_CATEGORY.items()
    }
    assert model.categories == {i: c for i, c in categories.items() if c}
    members: dict[UserCategory, dict[str, EdgeState]] = {}
    for (u, i), edge in whole.item_edges.items():
        if (c := categories[i]) is not None:
            members.setdefault((u, c), {})[i] = edge
    expected = category_states(members, members, half_life=HL, trend_days=56)
    _same_edges(model.category_edges, expected)


def _discovery_at(state: tuple[float, float] | None, now: float) -> float:
    return 0.0 if state is None else state[0] * 2.0 ** (-(now - state[1]) / HL)


@settings(max_examples=150, deadline=None)
@given(event_lists, st.integers(0, 25))
def test_discovery_counts_each_buyer_once_at_their_first_interaction(
    events: list[Event], cut: int
) -> None:
    """Kept incrementally over two batches (late events included), discovery equals its
    definition recomputed from the final edges: sum over buyers of 2^(-(now - first_ts)/HL)."""
    first = fold_events(events[:cut], StoredState(), weights=W, half_life=HL)
    stored = _continue(StoredState(), first)
    final = _continue(stored, fold_events(events[cut:], stored, weights=W, half_life=HL))
    now = 61 * DAY_S
    for item in {e.item_id for e in events}:
        expected = sum(
            2.0 ** (-(now - edge.first_ts) / HL)
            for (_, i), edge in final.item_edges.items()
            if i == item and edge.counts.get("purchase", 0) > 0
        )
        got = _discovery_at(final.discovery.get(item), now)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_discovery_ignores_repeat_purchases_and_browsers() -> None:
    events = [
        ev(1, "u1", "i1", "browse", 0),
        ev(2, "u1", "i1", "purchase", 10),  # u1 took i1 up at day 0 (first interaction)
        ev(3, "u1", "i1", "purchase", 20),  # a repeat purchase: no change
        ev(4, "u2", "i1", "click", 20),  # never bought: no share
    ]
    out = fold_events(events, StoredState(), weights=W, half_life=HL)
    assert _discovery_at(out.discovery["i1"], 14 * DAY_S) == pytest.approx(0.5)
