"""The query catalogue on a small planted graph in the real Neo4j: each query's expected answer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.protocol import HashingEncoder
from graph.model import Event, ItemRecord, item_text
from graph.reads import CONTENT_EVIDENCE
from graph.scoring import EVIDENCE_PRIORS
from graph.store import GraphBatch, GraphStore, InterestParams

pytestmark = pytest.mark.integration

DAY = 86400.0
HL = 14 * DAY
NOW = 15 * DAY
ENC = HashingEncoder(dim=384)

CATALOGUE = [
    ItemRecord("s1", "trail running shoe", "shoes"),
    ItemRecord("s2", "road running shoe", "shoes"),
    ItemRecord("s3", "racing running shoe", "shoes"),
    ItemRecord("s4", "kids running shoe", "shoes"),
    ItemRecord("b1", "italian cook book", "books"),
    ItemRecord("b2", "french cook book", "books"),
    ItemRecord("t1", "two person tent", "camping"),
]

# (user, item, type, day)
PLANTED = [
    ("alice", "b1", "click", 2),
    ("alice", "b2", "browse", 3),  # books, the previous week
    ("alice", "s1", "purchase", 10),
    ("alice", "s2", "click", 12),  # shoes, this week
    ("bob", "s1", "purchase", 9),
    ("bob", "s3", "click", 11),
    ("bob", "s3", "click", 12),
    ("bob", "s3", "add_to_cart", 13),
    ("bob", "s4", "browse", 13),
    ("carol", "b1", "click", 5),
    ("carol", "b2", "click", 5),
    ("carol", "b2", "purchase", 6),
    ("dave", "t1", "browse", 0),
]


@pytest.fixture(scope="module")
def store(neo4j_driver: Any, settings: Settings) -> GraphStore:
    neo4j_driver.execute_query("MATCH (n) DETACH DELETE n", database_=settings.neo4j_database)
    params = InterestParams(
        half_life_s=HL, weights=DEFAULT_WEIGHTS, similar_k=5, similar_threshold=0.6
    )
    s = GraphStore(neo4j_driver, settings.neo4j_database, params)
    s.ensure_schema(ENC.dim)
    texts = [item_text(i.title, i.category, i.description) for i in CATALOGUE]
    vecs = dict(zip([i.item_id for i in CATALOGUE], ENC.encode(texts), strict=True))
    events = [Event(f"p{n}", u, i, t, d * DAY) for n, (u, i, t, d) in enumerate(PLANTED)]
    s.apply_batch(GraphBatch(events, CATALOGUE, vecs, {}, ENC.version))
    while s.refresh_dirty(ENC.version):
        pass
    return s


def strength(events: list[tuple[str, float]], now: float = NOW) -> float:
    """Closed form for positive weights: sum of w * 2^(-(now - t) / h)."""
    return sum(DEFAULT_WEIGHTS[k] * 2 ** (-(now - d * DAY) / HL) for k, d in events)


def test_similar_users(store: GraphStore) -> None:
    top = store.similar_users("alice", k=3)
    assert top[0]["user_id"] == "bob"
    assert all(r["score"] >= 0.6 for r in top)
    assert "dave" not in {r["user_id"] for r in top}
    assert store.similar_users("nobody") == []


def test_collaborative_recommends_what_similar_users_like_minus_purchases(
    store: GraphStore,
) -> None:
    recs = store.recommend("alice", k=5, strategy="collaborative", now=NOW)
    ids = [r.item_id for r in recs]
    assert ids[:2] == ["s3", "s4"]
    assert "s1" not in ids  # alice purchased it
    (bob,) = [r for r in store.similar_users("alice") if r["user_id"] == "bob"]
    s3 = strength([("click", 11), ("click", 12), ("add_to_cart", 13)])
    assert recs[0].score == pytest.approx(bob["score"] * s3)


def test_content_is_the_votes_of_the_users_items_scaled_by_their_evidence(
    store: GraphStore,
) -> None:
    recs = store.recommend("alice", k=10, strategy="content", now=NOW)
    ids = [r.item_id for r in recs]
    assert "s1" not in ids  # purchased
    assert set(ids) == {"s2", "s3", "s4", "b1", "b2"}  # t1 is no one's text neighbour
    assert ids[:2] == ["s3", "s4"]  # shoes: alice's strongest, freshest taste
    # the best item gets the evidence: 2 of alice's 4 items (b2 after b1, s2 after s1) have a text
    # neighbour she had touched before
    assert recs[0].score == pytest.approx(2 / (4 + CONTENT_EVIDENCE))
    # the others in proportion to their votes, which explain lists
    votes = {i: store.explain("alice", i, now=NOW)["content_score"] for i in ("s3", "b2")}
    assert recs[ids.index("b2")].score / recs[0].score == pytest.approx(votes["b2"] / votes["s3"])
    profile = store.recommend("alice", k=10, strategy="profile", now=NOW)
    assert {r.item_id for r in profile} == {"s2", "s3", "s4", "b1", "b2", "t1"}
    assert [r.item_id for r in profile][-1] == "t1"  # nothing in common with alice's tastes
    scores = [r.score for r in profile]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def co_engaged_by_definition(user: str) -> dict[str, float]:
    """graph/queries/refresh.py CO_ENGAGED_ROWS and recommend.py RECOMMEND_CO_ENGAGED by hand:
    sim(j -> i) = co / (n_j^0.35 n_i^0.65) * co / (co + 10), each item's top 10 (all here), the
    user's items voting with weight 1, averaged; the user's purchases left out."""
    engaged: dict[str, set[str]] = {}
    for u, i, _, _ in PLANTED:
        engaged.setdefault(i, set()).add(u)
    mine = sorted({i for u, i, _, _ in PLANTED if u == user})
    bought = {i for u, i, t, _ in PLANTED if u == user and t == "purchase"}
    scores: dict[str, float] = {}
    for j in mine:
        for i in engaged:
            co = len(engaged[j] & engaged[i])
            if i == j or co == 0 or i in bought:
                continue
            sim = co / (len(engaged[j]) ** 0.35 * len(engaged[i]) ** 0.65) * co / (co + 10)
            scores[i] = scores.get(i, 0.0) + sim / len(mine)
    return scores


def test_co_engaged_is_the_mean_shrunk_item_similarity(store: GraphStore) -> None:
    recs = store.recommend("alice", k=10, strategy="co_engaged", now=NOW)
    expected = co_engaged_by_definition("alice")
    assert {r.item_id: r.score for r in recs} == pytest.approx(expected)
    # b1 and b2: engaged together by alice and carol, the strongest pair of the graph
    assert [r.item_id for r in recs[:2]] == ["b1", "b2"]
    assert store.recommend("dave", k=5, strategy="co_engaged", now=NOW) == []  # t1: no co-users


def co_sim_by_definition(j: str, i: str) -> float:
    engaged: dict[str, set[str]] = {}
    for u, item, _, _ in PLANTED:
        engaged.setdefault(item, set()).add(u)
    co = len(engaged[j] & engaged[i])
    return co / (len(engaged[j]) ** 0.35 * len(engaged[i]) ** 0.65) * co / (co + 10)


def test_co_similar_carries_co_engagement_to_text_neighbours(
    store: GraphStore, neo4j_driver: Any, settings: Settings
) -> None:
    """RECOMMEND_CO_SIMILAR by hand: for each of alice's items j, each item m engaged together
    with it passes sim(j -> m) x cos(m, i)^3 to m's text neighbours i (not j); averaged over her
    items, her purchases left out. A blend component (calibrated), not a strategy of its own."""
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (m:Item)-[s:SIMILAR_TO]->(i:Item) RETURN m.item_id AS m, i.item_id AS i, "
        "s.score AS s",
        database_=settings.neo4j_database,
    )
    text = [(r["m"], r["i"], r["s"]) for r in records]
    assert text  # the shoes read alike
    mine = sorted({i for u, i, _, _ in PLANTED if u == "alice"})
    items = {i for _, i, _, _ in PLANTED}
    expected: dict[str, float] = {}
    for j in mine:
        for m, i, cos in text:
            if m == j or i == j or i == "s1" or cos <= 0:
                continue
            sim = co_sim_by_definition(j, m)
            if sim > 0 and m in items:
                expected[i] = expected.get(i, 0.0) + sim * cos**3 / len(mine)
    expected = {i: v for i, v in expected.items() if v > 0}
    recs = store.recommend("alice", k=10, weights={"co_similar": 1.0}, now=NOW)
    assert {r.item_id: r.parts["co_similar"] for r in recs} == pytest.approx(expected)
    assert expected and "s1" not in expected
    # dave's tent is engaged with nothing: no co-engagement to carry
    assert store.recommend("dave", k=5, weights={"co_similar": 1.0}, now=NOW) == []


def test_co_engaged_in_reads_the_lists_from_the_other_end(
    store: GraphStore, neo4j_driver: Any, settings: Settings
) -> None:
    """RECOMMEND_CO_ENGAGED_IN: an item whose own list holds one of the user's items, where that
    item's list does not hold it, gets co_engaged's score sim(j -> i) from the edge i -> j."""
    only = {"co_engaged_in": 1.0}
    # every list here holds all of an item's co-engaged items: nothing is missed, nothing to add
    assert store.recommend("alice", k=10, weights=only, now=NOW) == []
    db = settings.neo4j_database
    dropped, _, _ = neo4j_driver.execute_query(
        "MATCH (:Item {item_id: 's1'})-[c:CO_ENGAGED]->(:Item {item_id: 's3'}) "
        "WITH c, c.score AS score DELETE c RETURN score",
        database_=db,
    )
    try:  # as if s3 had not made the list of alice's s1
        recs = store.recommend("alice", k=10, weights=only, now=NOW)
        assert [r.item_id for r in recs] == ["s3"]
        # alice's four items vote; s1's vote for s3 comes back through s3's list
        assert recs[0].parts["co_engaged_in"] == pytest.approx(co_sim_by_definition("s1", "s3") / 4)
        # explain shows that vote and where it came from
        e = store.explain("alice", "s3", now=NOW)
        (vote,) = e["co_engaged_votes"]
        assert (vote["item_id"], vote["via"]) == ("s1", "co_engaged_in")
        assert e["co_engaged_score"] == pytest.approx(recs[0].parts["co_engaged_in"])
    finally:
        neo4j_driver.execute_query(
            "MATCH (j:Item {item_id: 's1'}), (i:Item {item_id: 's3'}) "
            "CREATE (j)-[:CO_ENGAGED {score: $score}]->(i)",
            score=dropped[0]["score"],
            database_=db,
        )


def test_blend_and_the_category_cap(store: GraphStore) -> None:
    # the component arithmetic, with the weights before co-engagement (issue 15's first step)
    before = {"content": 3, "collaborative": 0.3, "co_interest": 4, "popular": 0.5, "discovery": 1}
    recs = store.recommend("alice", k=3, strategy="blend", weights=before, now=NOW)
    # s3: top of collaborative (bob) and of content; b2: the only item someone newly bought that
    # alice has not (carol, who shares her books), but one purchase is little evidence
    assert [r.item_id for r in recs[:2]] == ["s3", "b2"]
    assert recs[0].parts["collaborative"] == 1.0
    b2 = 2 ** (-10 / 14)  # carol first touched it on day 5
    assert recs[1].parts["discovery"] == pytest.approx(b2 / (b2 + EVIDENCE_PRIORS["discovery"]))
    assert "collaborative" not in recs[1].parts
    assert "s1" not in [r.item_id for r in recs]
    # the defaults add co-engagement: b2, engaged together with b1 by alice and carol (and newly
    # bought by carol), goes first; its part is the co_engaged score as it is (calibrated)
    default = store.recommend("alice", k=3, now=NOW)
    assert default[0].item_id == "b2"
    assert default[0].parts["co_engaged"] == pytest.approx(co_engaged_by_definition("alice")["b2"])
    capped = store.recommend("alice", k=3, strategy="blend", category_cap=1, now=NOW)
    assert len({r.category for r in capped}) == 3
    only_pop = store.recommend("alice", k=2, weights={"popular": 1.0}, now=NOW)
    # popularity: s3 = bob's three events; s1 is purchased by alice so it never shows
    s3 = strength([("click", 11), ("click", 12), ("add_to_cart", 13)])
    assert only_pop[0].item_id == "s3"
    assert only_pop[0].parts["popular"] == pytest.approx(s3 / (s3 + EVIDENCE_PRIORS["popular"]))
    # an unknown user: no embedding, no neighbours, only popularity and discovery: s1 (two new
    # buyers), then b2 (carol's purchase) ahead of s3 (bob's events, more popular but not bought)
    cold = store.recommend("nobody", k=3, now=NOW)
    assert [r.item_id for r in cold] == ["s1", "b2", "s3"]
    s1 = 2 ** (-5 / 14) + 2 ** (-6 / 14)  # alice and bob, first on days 10 and 9
    assert set(cold[0].parts) == {"popular", "discovery"}
    assert cold[0].parts["discovery"] == pytest.approx(s1 / (s1 + EVIDENCE_PRIORS["discovery"]))
    assert cold[1].parts["discovery"] == pytest.approx(
        2 ** (-10 / 14) / (s1 + EVIDENCE_PRIORS["discovery"])
    )
    assert set(cold[2].parts) == {"popular"}
    with pytest.raises(ValueError):
        store.recommend("alice", strategy="magic")


def test_explain_shows_the_paths(store: GraphStore) -> None:
    e = store.explain("alice", "s3", now=NOW)
    assert e["interest"] is None and e["purchased"] is False
    (via,) = [u for u in e["similar_users"] if u["user_id"] == "bob"]
    assert via["strength"] == pytest.approx(
        strength([("click", 11), ("click", 12), ("add_to_cart", 13)])
    )
    assert via["contribution"] == pytest.approx(via["similarity"] * via["strength"])
    collaborative = store.recommend("alice", k=1, strategy="collaborative", now=NOW)[0]
    assert collaborative.item_id == "s3"
    assert e["collaborative_score"] == pytest.approx(collaborative.score)
    assert e["popularity"] == pytest.approx(via["strength"])  # bob is s3's only fan
    assert e["discovery"] == 0.0  # nobody bought s3
    (cat,) = e["categories"]
    assert cat["category"] == "shoes"
    assert cat["strength"] == pytest.approx(strength([("purchase", 10), ("click", 12)]))
    assert e["content_similarity"] is not None and -1 <= e["content_similarity"] <= 1
    # content: alice's shoes vote for s3 (its text neighbours s1 and s2), interest x cos^3
    assert {v["item_id"] for v in e["content_votes"]} == {"s1", "s2"}
    for v in e["content_votes"]:
        assert v["contribution"] == pytest.approx(v["strength"] * v["similarity"] ** 3)
    assert e["content_score"] == pytest.approx(sum(v["contribution"] for v in e["content_votes"]))
    # co-engaged: s3 is engaged together with alice's s1 (by bob); its share is the co_engaged score
    assert [v["item_id"] for v in e["co_engaged_votes"]] == ["s1"]
    assert e["co_engaged_score"] == pytest.approx(co_engaged_by_definition("alice")["s3"])
    bought = store.explain("alice", "s1", now=NOW)
    assert bought["purchased"] is True
    assert bought["interest"]["counts"] == {"purchase": 1}
    # two buyers, each counted at their first interaction: alice on day 10, bob on day 9
    assert bought["discovery"] == pytest.approx(
        2 ** (-(NOW - 10 * DAY) / HL) + 2 ** (-(NOW - 9 * DAY) / HL)
    )


def test_audience_of_a_category_and_of_an_item(store: GraphStore) -> None:
    books = store.audience(category="books", k=10, now=NOW)
    assert [r["user_id"] for r in books] == ["carol", "alice"]
    assert books[0]["score"] == pytest.approx(
        strength([("click", 5), ("click", 5), ("purchase", 6)])
    )
    assert [r["user_id"] for r in store.audience(item_id="s1", k=10, now=NOW)] == ["alice", "bob"]
    assert store.audience(category="books", k=1, now=NOW)[0]["user_id"] == "carol"
    with pytest.raises(ValueError):
        store.audience()


def test_cart_complements(store: GraphStore) -> None:
    recs = store.cart_complements(["s1"], k=5, now=NOW)
    ids = [r.item_id for r in recs]
    assert ids[0] == "s3"  # bob (who bought s1) likes s3 most
    assert "s1" not in ids
    assert {"s2", "s3", "s4"} <= set(ids)


def test_interest_trends_compare_two_windows(store: GraphStore) -> None:
    trends = {r["category"]: r for r in store.interest_trends("alice", now=14 * DAY)}
    assert trends["shoes"]["recent"] == 7.0 and trends["shoes"]["previous"] == 0.0
    assert trends["books"]["recent"] == 0.0 and trends["books"]["previous"] == 3.0
    ordered = [r["category"] for r in store.interest_trends("alice", now=14 * DAY)]
    assert ordered == ["shoes", "books"]  # rising first, falling last


def test_churn_risk(store: GraphStore) -> None:
    later = 60 * DAY
    rows = store.churn_risk(threshold=0.1, inactive_days=30, now=later)
    assert [r["user_id"] for r in rows] == ["dave"]
    assert rows[0]["interest"] == pytest.approx(strength([("browse", 0)], now=later))
    assert store.churn_risk(threshold=0.1, inactive_days=90, now=later) == []
    everyone = store.churn_risk(threshold=1e9, inactive_days=0, now=later)
    assert {r["user_id"] for r in everyone} == {"alice", "bob", "carol", "dave"}


def test_user_embeddings_are_unit_vectors(store: GraphStore) -> None:
    records, _, _ = store._driver.execute_query(
        "MATCH (u:User) RETURN u.user_id AS u, u.embedding AS e", database_=store._database
    )
    for r in records:
        assert np.linalg.norm(r["e"]) == pytest.approx(1.0, abs=1e-6)
