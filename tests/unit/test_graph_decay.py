"""The decay rule of graph/decay.py: worked examples and properties (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.decay import EdgeState, apply_event, decay_factor, strength_at, update_strength
from graph.exceptions import GraphError

DAY = 86400.0
HL = 14 * DAY
W = {"browse": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 5.0, "return": -5.0}


def fold(events: list[tuple[str, float]], half_life: float = HL) -> EdgeState:
    state: EdgeState | None = None
    for kind, ts in events:
        state = apply_event(state, kind, ts, W, half_life)
    assert state is not None
    return state


def test_one_half_life_halves() -> None:
    assert strength_at(8.0, 0.0, HL, HL) == pytest.approx(4.0)
    assert decay_factor(2 * HL, HL) == pytest.approx(0.25)


def test_worked_example_with_decay_across_days_and_a_late_event() -> None:
    # day 0 click (2), day 14 purchase (5): 2 * 1/2 + 5 = 6 at day 14;
    # a late browse from day 7 adds 1 * 2^(-7/14) to it; last_ts stays day 14.
    s = fold([("click", 0.0), ("purchase", 14 * DAY), ("browse", 7 * DAY)])
    assert s.strength == pytest.approx(6.0 + 2**-0.5)
    assert s.last_ts == 14 * DAY and s.first_ts == 0.0
    assert s.counts == {"click": 1, "purchase": 1, "browse": 1}
    assert s.strength_at(28 * DAY, HL) == pytest.approx((6.0 + 2**-0.5) / 2)


def test_never_below_zero_and_a_return_clears() -> None:
    s = fold([("click", 0.0), ("return", DAY)])
    assert s.strength == 0.0 and s.raw < 0
    s = fold([("return", 0.0)])
    assert s.strength == 0.0 and s.counts == {"return": 1}
    # the signed sum is kept: a return counts against what comes after it as well as before
    s = fold([("return", 0.0), ("click", 0.0)])
    assert s.raw == -3.0 and s.strength == 0.0
    assert fold([("purchase", 0.0), ("return", 0.0)]).strength == 0.0


def test_reading_before_last_ts_does_not_grow() -> None:
    assert strength_at(3.0, 100.0, 50.0, HL) == 3.0


def test_late_event_uses_forward_decay() -> None:
    s, last = update_strength(4.0, 10 * DAY, 3 * DAY, 2.0, HL)
    assert last == 10 * DAY
    assert s == pytest.approx(4.0 + 2.0 * 2 ** (-7 / 14))


events_st = st.lists(
    st.tuples(
        st.sampled_from(sorted(W)), st.floats(min_value=0, max_value=120 * DAY, allow_nan=False)
    ),
    min_size=1,
    max_size=30,
)
positive_events_st = st.lists(
    st.tuples(
        st.sampled_from(["browse", "click", "add_to_cart", "purchase"]),
        st.floats(min_value=0, max_value=120 * DAY, allow_nan=False),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(events_st, st.randoms(use_true_random=False))
def test_the_order_never_matters_returns_included(
    events: list[tuple[str, float]], rnd: object
) -> None:
    """The stored pair is the signed sum of the set: s(T) = max(0, sum w_i 2^(-(T - t_i)/h))."""
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = fold(events), fold(shuffled)
    assert a.last_ts == b.last_ts and a.first_ts == b.first_ts and a.counts == b.counts
    assert a.raw == pytest.approx(b.raw, rel=1e-9, abs=1e-9)
    t_end = 150 * DAY
    expected = max(0.0, sum(W[k] * 2 ** (-(t_end - ts) / HL) for k, ts in events))
    assert b.strength_at(t_end, HL) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(events_st)
def test_strength_is_never_negative_and_bookkeeping_holds(events: list[tuple[str, float]]) -> None:
    s = fold(events)
    assert s.strength >= 0.0
    assert s.last_ts == max(ts for _, ts in events)
    assert s.first_ts == min(ts for _, ts in events)
    assert sum(s.counts.values()) == len(events)


@settings(max_examples=200, deadline=None)
@given(positive_events_st, st.randoms(use_true_random=False))
def test_without_negative_weights_the_order_does_not_matter(
    events: list[tuple[str, float]], rnd: object
) -> None:
    """With no floor hit, s(T) = sum w_i 2^(-(T - t_i)/h) whatever the arrival order."""
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    t_end = 150 * DAY
    expected = sum(W[k] * 2 ** (-(t_end - ts) / HL) for k, ts in events)
    assert fold(shuffled).strength_at(t_end, HL) == pytest.approx(expected, rel=1e-9)
    assert fold(events).strength_at(t_end, HL) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.floats(min_value=0, max_value=1e9, allow_nan=False),
    st.floats(min_value=1, max_value=1e9, allow_nan=False),
)
def test_decay_is_monotone_and_composes(s: float, a: float, b: float, half_life: float) -> None:
    assert strength_at(s, 0.0, a + b, half_life) <= strength_at(s, 0.0, a, half_life) + 1e-9
    two_steps = strength_at(strength_at(s, 0.0, a, half_life), a, a + b, half_life)
    assert two_steps == pytest.approx(strength_at(s, 0.0, a + b, half_life), rel=1e-9, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(events_st)
def test_apply_event_does_not_mutate_its_input(events: list[tuple[str, float]]) -> None:
    s = fold(events)
    snapshot = (s.strength, s.last_ts, s.first_ts, dict(s.counts))
    apply_event(s, "click", 0.0, W, HL)
    assert (s.strength, s.last_ts, s.first_ts, s.counts) == snapshot


def test_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError):
        decay_factor(1.0, 0.0)
    assert math.isfinite(decay_factor(1e12, 1.0))


def test_an_event_type_without_a_weight_is_a_graph_error() -> None:
    with pytest.raises(GraphError, match="'like'"):
        apply_event(None, "like", 0.0, W, HL)
