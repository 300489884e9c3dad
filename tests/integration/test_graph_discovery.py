"""The blend's discovery component on the real Neo4j: items ranked by their new buyers (each
buyer once, at their first interaction with the item, decayed), not by how often they sell."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.protocol import HashingEncoder
from graph.model import Event, ItemRecord
from graph.scoring import EVIDENCE_PRIORS
from graph.store import GraphBatch, GraphStore, InterestParams

pytestmark = pytest.mark.integration

DAY = 86400.0
HL = 14 * DAY
NOW = 20 * DAY
ENC = HashingEncoder(dim=384)
CATALOGUE = [ItemRecord(i, f"{i} item", "food") for i in ("milk", "tea", "jam", "oat")]
# (user, item, type, day): rex buys milk again and again; ann and ben each try tea once; cat only
# browses tea; ann browses oat and buys it later (one new buyer, counted from the browse).
PLANTED = [
    *[("rex", "milk", "purchase", d) for d in (2, 6, 10, 14, 18)],
    ("ann", "tea", "purchase", 15),
    ("ben", "tea", "purchase", 17),
    ("cat", "tea", "browse", 19),
    ("ann", "oat", "browse", 4),
    ("ann", "oat", "purchase", 16),
]
ONLY = {"discovery": 1.0}


def decay(day: float) -> float:
    return float(2.0 ** (-(NOW - day * DAY) / HL))


@pytest.fixture
def store(clean_graph: Any, settings: Settings) -> GraphStore:
    params = InterestParams(half_life_s=HL, weights=DEFAULT_WEIGHTS, similar_k=5)
    s = GraphStore(clean_graph, settings.neo4j_database, params)
    s.ensure_schema(ENC.dim)
    events = [Event(f"d{n}", u, i, t, d * DAY) for n, (u, i, t, d) in enumerate(PLANTED)]
    s.apply_batch(GraphBatch(events, CATALOGUE, {}, {}, ENC.version))
    return s


def test_new_buyers_outrank_repeat_sales(store: GraphStore) -> None:
    recs = store.recommend("zed", k=5, weights=ONLY, now=NOW)  # an unknown user
    assert [r.item_id for r in recs] == ["tea", "oat", "milk"]  # no one bought jam
    # each score is divided by the best plus the evidence prior (few buyers stay small)
    top = decay(15) + decay(17) + EVIDENCE_PRIORS["discovery"]
    assert recs[0].score == pytest.approx((top - EVIDENCE_PRIORS["discovery"]) / top)
    assert recs[0].parts == {"discovery": pytest.approx(recs[0].score)}
    assert recs[1].score == pytest.approx(decay(4) / top)  # ann's first touch of oat
    assert recs[2].score == pytest.approx(decay(2) / top)  # rex counts once, from day 2
    # plain popularity sums every sale: rex's five purchases put milk first
    popular = store.recommend("zed", k=1, weights={"popular": 1.0}, now=NOW)
    assert popular[0].item_id == "milk"


def test_a_user_never_gets_what_they_bought_or_with_exclude_seen_touched(
    store: GraphStore,
) -> None:
    assert [r.item_id for r in store.recommend("ann", k=5, weights=ONLY, now=NOW)] == ["milk"]
    cat = store.recommend("cat", k=5, weights=ONLY, now=NOW)
    assert [r.item_id for r in cat] == ["tea", "oat", "milk"]  # browsed, not bought: tea stays
    cat = store.recommend("cat", k=5, weights=ONLY, now=NOW, exclude_seen=True)
    assert [r.item_id for r in cat] == ["oat", "milk"]


def test_the_ranking_follows_new_events_and_erasure(store: GraphStore) -> None:
    assert store.recommend("zed", k=1, weights=ONLY, now=NOW)[0].item_id == "tea"
    buyers = [Event(f"j{n}", u, "jam", "purchase", 19.5 * DAY) for n, u in enumerate("xyz")]
    store.apply_batch(GraphBatch(buyers, [], {}, {}, ENC.version))
    top = store.recommend("zed", k=2, weights=ONLY, now=NOW)  # same now, changed graph
    assert [r.item_id for r in top] == ["jam", "tea"]
    for user in ("x", "y", "z"):
        assert store.forget(user)
    assert store.recommend("zed", k=1, weights=ONLY, now=NOW)[0].item_id == "tea"
    later = store.recommend("zed", k=1, weights=ONLY, now=NOW + HL)
    # a half-life later every count has halved: against the same evidence prior, tea weighs less
    tea = decay(15) + decay(17)
    prior = EVIDENCE_PRIORS["discovery"]
    assert later[0].item_id == "tea"
    assert later[0].score == pytest.approx((tea / 2) / (tea / 2 + prior))
