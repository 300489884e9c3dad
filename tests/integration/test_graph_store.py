"""GraphStore's write path on the real Neo4j: hand-worked strengths, exactly-once effect,
embeddings, similarity edges, schema and erasure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.protocol import HashingEncoder
from graph.dump import canonical_dump
from graph.exceptions import GraphError
from graph.model import Event, ItemRecord, item_text
from graph.store import ApplyResult, GraphBatch, GraphStore, InterestParams

pytestmark = pytest.mark.integration

DAY = 86400.0
HL = 14 * DAY
DIM = 384  # the real model's dimension: the vector indexes are shared with the worker's tests
ENC = HashingEncoder(dim=DIM)


@pytest.fixture
def store(clean_graph: Any, settings: Settings) -> GraphStore:
    params = InterestParams(
        half_life_s=HL, weights=DEFAULT_WEIGHTS, similar_k=2, similar_threshold=0.3
    )
    s = GraphStore(clean_graph, settings.neo4j_database, params)
    s.ensure_schema(DIM)
    return s


def cypher(store: GraphStore, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = store._driver.execute_query(query, params, database_=store._database)
    return [dict(r) for r in records]


def embed(items: list[ItemRecord]) -> dict[str, Any]:
    texts = [item_text(i.title, i.category, i.description) for i in items]
    return {i.item_id: v for i, v in zip(items, ENC.encode(texts), strict=True)}


def ev(n: int, user: str, item: str, kind: str, day: float, offset: int = -1, **kw: Any) -> Event:
    part = 0 if offset >= 0 else -1
    return Event(
        f"e{n}", user, item, kind, day * DAY, topic="clicks", partition=part, offset=offset, **kw
    )


def edge(store: GraphStore, user: str, target: str) -> dict[str, Any]:
    rows = cypher(
        store,
        "MATCH (:User {user_id: $u})-[r:INTERESTED_IN]->(t) "
        "WHERE t.item_id = $t OR t.name = $t RETURN properties(r) AS p",
        u=user,
        t=target,
    )
    assert len(rows) == 1
    return rows[0]["p"]  # type: ignore[no-any-return]


CATALOGUE = [
    ItemRecord("i1", "red trail running shoe", "shoes", "grippy"),
    ItemRecord("i2", "blue road running shoe", "shoes", "light"),
    ItemRecord("i3", "italian pasta cook book", "books", "recipes"),
]


def test_strengths_worked_out_by_hand(store: GraphStore) -> None:
    first = [
        ev(1, "u1", "i1", "click", 0, offset=0),  # 2
        ev(2, "u1", "i1", "add_to_cart", 14, offset=1),  # 2/2 + 3 = 4
        ev(3, "u1", "i3", "browse", 3, offset=2),
    ]
    second = [
        ev(4, "u1", "i1", "browse", 7, offset=3),  # late: + 1 * 2^(-7/14), last_ts stays day 14
        ev(5, "u1", "i1", "purchase", 28, offset=4),  # (4 + 2^-0.5) / 2 + 5
        ev(6, "u1", "i1", "return", 29, offset=5),  # ((4 + 2^-0.5)/2 + 5) * 2^(-1/14) - 5
    ]
    store.apply_batch(GraphBatch(first, CATALOGUE))
    r = edge(store, "u1", "i1")
    assert r["strength"] == pytest.approx(4.0)
    store.apply_batch(GraphBatch(second))
    r = edge(store, "u1", "i1")
    expected = ((4 + 2**-0.5) / 2 + 5) * 2 ** (-1 / 14) - 5
    assert r["strength"] == pytest.approx(expected)
    assert (r["first_ts"], r["last_ts"]) == (0.0, 29 * DAY)
    counts = {k: v for k, v in r.items() if k.startswith("n_")}
    assert counts == {
        "n_click": 1,
        "n_add_to_cart": 1,
        "n_browse": 1,
        "n_purchase": 1,
        "n_return": 1,
    }
    # the category edge folds i1's and i3's events in arrival order: shoes only from i1
    shoes = edge(store, "u1", "shoes")
    assert shoes["strength"] == pytest.approx(expected)
    assert edge(store, "u1", "books")["strength"] == 1.0
    # popularity of i1 is the same fold across all users (one user here)
    (pop,) = cypher(
        store, "MATCH (i:Item {item_id: 'i1'}) RETURN i.popularity AS p, i.popularity_ts AS t"
    )
    assert pop == {"p": pytest.approx(expected), "t": 29 * DAY}
    # readers decay to now: 14 days after the last event, half of it
    (aud,) = store.audience(item_id="i1", now=43 * DAY)
    assert aud["score"] == pytest.approx(expected / 2)
    (row,) = cypher(store, "MATCH (u:User {user_id: 'u1'}) RETURN u.first_ts AS f, u.last_ts AS l")
    assert row == {"f": 0.0, "l": 29 * DAY}


def test_a_strength_never_goes_below_zero(store: GraphStore) -> None:
    store.apply_batch(GraphBatch([ev(1, "u1", "i1", "click", 0), ev(2, "u1", "i1", "return", 1)]))
    assert edge(store, "u1", "i1")["strength"] == 0.0


def recording() -> GraphBatch:
    events = [
        ev(1, "u1", "i1", "click", 0, offset=10, text="trail shoes"),
        ev(2, "u2", "i2", "purchase", 1, offset=11),
        ev(3, "u1", "i2", "browse", 2, offset=12),
        ev(4, "u2", "i3", "click", 0.5, offset=13),
    ]
    return GraphBatch(
        events, CATALOGUE, embed(CATALOGUE), {"e1": ENC.encode(["trail shoes"])[0]}, ENC.version
    )


def test_applying_the_same_batch_twice_gives_an_identical_graph(store: GraphStore) -> None:
    driver, db = store._driver, store._database
    first = store.apply_batch(recording())
    assert (first.applied, first.duplicates) == (4, 0)
    assert store.refresh_dirty(ENC.version) > 0
    before = canonical_dump(driver, db)
    again = store.apply_batch(recording())
    assert (again.applied, again.duplicates) == (0, 4)
    store.refresh_dirty(ENC.version)
    assert canonical_dump(driver, db) == before


def test_a_replayed_file_with_new_offsets_is_deduplicated_by_event_id(store: GraphStore) -> None:
    store.apply_batch(recording())
    before = canonical_dump(store._driver, store._database, exclude_labels=["PartitionOffset"])
    replay = [
        Event(
            e.event_id,
            e.user_id,
            e.item_id,
            e.type,
            e.ts,
            topic="clicks",
            partition=1,
            offset=100 + i,
        )
        for i, e in enumerate(recording().events)
    ]
    result = store.apply_batch(GraphBatch(replay))
    assert (result.applied, result.duplicates) == (0, 4)
    after = canonical_dump(store._driver, store._database, exclude_labels=["PartitionOffset"])
    assert after == before
    (off,) = cypher(store, "MATCH (p:PartitionOffset {key: 'clicks/1'}) RETURN p.offset AS o")
    assert off["o"] == 103  # processed, so the partition's offset still advances


def test_offsets_at_or_below_the_stored_one_are_dropped(store: GraphStore) -> None:
    store.apply_batch(GraphBatch([ev(1, "u1", "i1", "click", 0, offset=5)]))
    redelivered = [ev(2, "u1", "i1", "click", 1, offset=5), ev(3, "u1", "i1", "click", 1, offset=4)]
    result = store.apply_batch(GraphBatch(redelivered))
    assert (result.applied, result.duplicates) == (0, 2)
    assert edge(store, "u1", "i1")["n_click"] == 1
    result = store.apply_batch(GraphBatch([ev(4, "u1", "i1", "click", 1, offset=6)]))
    assert result.applied == 1
    assert edge(store, "u1", "i1")["n_click"] == 2


def test_embeddings_user_vectors_and_similarity_edges(store: GraphStore) -> None:
    store.apply_batch(recording())
    assert store.embedded_items(["i1", "i2", "i3", "nope"], ENC.version) == {"i1", "i2", "i3"}
    assert store.embedded_items(["i1"], "other-model") == set()
    assert store.refresh_dirty(ENC.version) == 2 + 3  # two users, three items
    assert store.refresh_dirty(ENC.version) == 0

    # u1: click i1 at day 0 (2), browse i2 at day 2 (1), text "trail shoes" at day 0 (weight 1);
    # every term decayed to u1's latest timestamp (day 2), then L2-normalised
    vecs = embed(CATALOGUE)
    text = ENC.encode(["trail shoes"])[0]
    decay = 2 ** (-2 / 14)
    expected = 2 * decay * vecs["i1"] + 1 * vecs["i2"] + decay * text
    expected = expected / np.linalg.norm(expected)
    (u1,) = cypher(
        store,
        "MATCH (u:User {user_id: 'u1'}) RETURN u.embedding AS e, "
        "u.embedding_version AS v, u.dirty AS d",
    )
    np.testing.assert_allclose(u1["e"], expected, rtol=1e-5, atol=1e-6)
    assert (u1["v"], u1["d"]) == (ENC.version, False)

    sims = cypher(
        store,
        "MATCH (a:User)-[s:SIMILAR_TO]->(b:User) "
        "RETURN a.user_id AS a, b.user_id AS b, s.score AS s ORDER BY a",
    )
    (u2,) = cypher(store, "MATCH (u:User {user_id: 'u2'}) RETURN u.embedding AS e")
    cos = float(np.dot(u1["e"], u2["e"]))
    assert cos >= 0.3  # both like running shoes: above the threshold, so linked both ways
    assert [(r["a"], r["b"]) for r in sims] == [("u1", "u2"), ("u2", "u1")]
    assert sims[0]["s"] == pytest.approx(cos, abs=1e-5)
    # items: the two shoes are the nearest content neighbours; degree bounded by k = 2
    items = cypher(
        store,
        "MATCH (a:Item)-[s:SIMILAR_TO]->(b:Item) "
        "RETURN a.item_id AS a, collect(b.item_id) AS bs ORDER BY a",
    )
    assert all(len(r["bs"]) <= 2 for r in items)
    shoe_cos = float(np.dot(vecs["i1"], vecs["i2"]))
    assert shoe_cos >= 0.3
    assert "i2" in next(r["bs"] for r in items if r["a"] == "i1")


def test_similarity_degree_stays_bounded_and_versions_do_not_mix(store: GraphStore) -> None:
    catalogue = [ItemRecord(f"s{n}", f"running shoe model {n}", "shoes") for n in range(6)]
    events = [ev(n, f"u{n}", f"s{n}", "click", 0) for n in range(6)]
    events += [ev(10 + n, f"u{n}", "s0", "click", 0) for n in range(6)]
    store.apply_batch(GraphBatch(events, catalogue, embed(catalogue), {}, ENC.version))
    store.refresh_dirty(ENC.version)
    degrees = cypher(
        store,
        "MATCH (u:User) OPTIONAL MATCH (u)-[s:SIMILAR_TO]->(:User) "
        "RETURN u.user_id AS u, count(s) AS n",
    )
    assert {r["u"] for r in degrees} == {f"u{n}" for n in range(6)}
    assert all(1 <= r["n"] <= 2 for r in degrees)
    # a user embedded by another model version gets no similarity edges to these users
    other = HashingEncoder(dim=DIM, version="hashing-v2")
    item = ItemRecord("x1", "running shoe model 0", "shoes")
    vec = other.encode([item_text(item.title, item.category, item.description)])[0]
    store.apply_batch(
        GraphBatch([ev(99, "v1", "x1", "click", 0)], [item], {"x1": vec}, {}, other.version)
    )
    store.refresh_dirty(other.version)
    rows = cypher(store, "MATCH (:User {user_id: 'v1'})-[s:SIMILAR_TO]-() RETURN count(s) AS n")
    assert rows == [{"n": 0}]


def _lists_by_definition(rows: list[dict[str, Any]], k: int, threshold: float) -> dict:
    ids = [r["id"] for r in rows]
    m = np.array([r["e"] for r in rows], dtype=float)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    sims = m @ m.T
    out = {}
    for a, x in enumerate(ids):
        scored = [(-round(float(sims[a, b]), 9), y) for b, y in enumerate(ids) if y != x]
        out[x] = [y for s, y in sorted(scored) if -s >= threshold][:k]
    return out


def test_exact_search_keeps_the_lists_equal_to_their_definition(
    clean_graph: Any, settings: Settings
) -> None:
    """TASTEGRAPH_SIMILAR_SEARCH=exact (what `evaluate` uses): after batches that move users
    between tastes, every user's and item's SIMILAR_TO list is exactly its top k by cosine over
    the stored embeddings, at least the threshold, ties by id (no approximation of the index)."""
    params = InterestParams(
        half_life_s=HL,
        weights=DEFAULT_WEIGHTS,
        similar_k=3,
        similar_threshold=0.1,
        similar_search="exact",
    )
    store = GraphStore(clean_graph, settings.neo4j_database, params)
    store.ensure_schema(DIM)
    words = ["shoe", "pasta", "garden", "lamp", "kettle", "sock"]
    catalogue = [
        ItemRecord(f"x{n}", f"{words[n % 6]} {words[(n * 5) % 6]} {n % 4}", words[n % 3])
        for n in range(18)
    ]
    rng = np.random.default_rng(7)
    n = 0
    for day in range(4):
        events = []
        for u in range(24):
            for item in rng.choice(18, size=2, replace=False):
                events.append(ev(n, f"u{u:02d}", f"x{item}", "click", day))
                n += 1
        store.apply_batch(
            GraphBatch(events, catalogue if day == 0 else [], embed(catalogue), {}, ENC.version)
        )
        while store.refresh_dirty(ENC.version, limit=7) > 0:  # several rounds per day
            pass
    for label, key in (("User", "user_id"), ("Item", "item_id")):
        rows = cypher(
            store,
            f"MATCH (n:{label}) WHERE n.embedding IS NOT NULL "
            f"RETURN n.{key} AS id, n.embedding AS e ORDER BY id",
        )
        stored = cypher(
            store,
            f"MATCH (a:{label}) OPTIONAL MATCH (a)-[s:SIMILAR_TO]->(b:{label}) "
            f"WITH a, b, s ORDER BY s.score DESC, b.{key} "
            f"RETURN a.{key} AS id, [x IN collect(b) | x.{key}] AS out",
        )
        assert len(rows) >= 18
        assert {r["id"]: r["out"] for r in stored} == _lists_by_definition(rows, 3, 0.1)


def a_engages_i1_and_i2(store: GraphStore) -> None:
    """The catalogue, and user a engaging i1 and i2 (the co-engagement tests' starting graph)."""
    store.apply_batch(
        GraphBatch(
            [ev(1, "a", "i1", "click", 0), ev(2, "a", "i2", "click", 0)],
            CATALOGUE,
            embed(CATALOGUE),
            {},
            ENC.version,
        )
    )


def b_engages_i1_and_i3() -> GraphBatch:
    return GraphBatch([ev(3, "b", "i1", "click", 1), ev(4, "b", "i3", "click", 1)])


def test_co_engaged_lists_follow_new_engagers_and_erasure(store: GraphStore) -> None:
    """An item's CO_ENGAGED list (top 10 by co / (n_j^0.35 n_i^0.65) * co / (co + 10)) is
    recomputed when it gains an engager or loses one to an erasure."""

    def stored() -> dict[str, dict[str, float]]:
        rows = cypher(
            store,
            "MATCH (j:Item)-[c:CO_ENGAGED]->(i:Item) "
            "RETURN j.item_id AS j, collect([i.item_id, c.score]) AS out",
        )
        return {r["j"]: dict(r["out"]) for r in rows}

    def sim(co: int, nj: int, ni: int) -> float:
        return co / (nj**0.35 * ni**0.65) * co / (co + 10)

    a_engages_i1_and_i2(store)
    store.refresh_dirty(ENC.version)
    assert stored() == {
        "i1": pytest.approx({"i2": sim(1, 1, 1)}),
        "i2": pytest.approx({"i1": sim(1, 1, 1)}),
    }
    # b engages i1 and i3: i1 and i3 gain an engager and are recomputed; i2's list keeps its
    # entry (its own engagers did not change; it catches up when they do)
    store.apply_batch(b_engages_i1_and_i3())
    while store.refresh_dirty(ENC.version):
        pass
    assert stored() == {
        "i1": pytest.approx({"i2": sim(1, 2, 1), "i3": sim(1, 2, 1)}),
        "i2": pytest.approx({"i1": sim(1, 1, 1)}),
        "i3": pytest.approx({"i1": sim(1, 1, 2)}),
    }
    assert store.forget("b")
    while store.refresh_dirty(ENC.version):
        pass
    assert stored() == {
        "i1": pytest.approx({"i2": sim(1, 1, 1)}),
        "i2": pytest.approx({"i1": sim(1, 1, 1)}),
    }


def test_a_batch_between_the_read_and_the_lock_keeps_the_co_engaged_flag(
    store: GraphStore,
) -> None:
    """The refresh reads an item's list without locks; a batch that gives the item a new user
    before the refresh locks it leaves the item flagged, so the next round counts that user."""
    from graph import queries as q

    a_engages_i1_and_i2(store)

    class Interleaved:  # a transaction whose lock step lets a batch commit first
        def __init__(self, tx: Any) -> None:
            self.tx = tx

        def run(self, query: str, **params: Any) -> Any:
            if query is q.LOCK_ITEMS:
                store.apply_batch(b_engages_i1_and_i3())
            return self.tx.run(query, **params)

    with store._driver.session(database=store._database) as session:
        done = session.execute_write(lambda tx: store._refresh._co_engaged_tx(Interleaved(tx), 10))
    assert "i1" in done
    flagged = cypher(store, "MATCH (i:Item) WHERE i.co_dirty RETURN i.item_id AS i ORDER BY i")
    assert [r["i"] for r in flagged] == ["i1", "i3"]  # i2's users did not change: cleared
    while store.refresh_dirty(ENC.version):
        pass
    rows = cypher(
        store,
        "MATCH (:Item {item_id: 'i1'})-[:CO_ENGAGED]->(i:Item) RETURN i.item_id AS i ORDER BY i",
    )
    assert [r["i"] for r in rows] == ["i2", "i3"]  # b's i3 counted


def test_co_engaged_walks_only_the_most_recent_engagers(
    store: GraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A best-seller's recompute is bounded: it walks its CO_ENGAGED_ENGAGERS most recent users
    (here 1: b, day 2), while n_j stays its full count of users (2)."""
    monkeypatch.setattr("graph.refresh.CO_ENGAGED_ENGAGERS", 1)
    events = [
        ev(1, "a", "i1", "click", 0),
        ev(2, "a", "i2", "click", 0),
        ev(3, "b", "i1", "click", 2),
        ev(4, "b", "i3", "click", 2),
    ]
    store.apply_batch(GraphBatch(events, CATALOGUE, embed(CATALOGUE), {}, ENC.version))
    while store.refresh_dirty(ENC.version):
        pass
    rows = cypher(
        store,
        "MATCH (:Item {item_id: 'i1'})-[c:CO_ENGAGED]->(i:Item) "
        "RETURN i.item_id AS i, c.score AS s",
    )
    assert [r["i"] for r in rows] == ["i3"]  # a's i2 is not walked
    assert rows[0]["s"] == pytest.approx(1 / (2**0.35 * 1**0.65) * 1 / 11)


def test_a_changed_catalogue_text_marks_the_embedding_stale(store: GraphStore) -> None:
    store.apply_batch(recording())
    changed = ItemRecord("i1", "red trail running shoe v2", "shoes", "grippy")
    store.apply_batch(GraphBatch([], [changed]))
    assert store.embedded_items(["i1", "i2"], ENC.version) == {"i2"}
    store.apply_batch(GraphBatch([], [], embed([changed]), {}, ENC.version))
    assert store.embedded_items(["i1", "i2"], ENC.version) == {"i1", "i2"}


def test_ensure_schema_is_idempotent_and_refuses_another_dimension(store: GraphStore) -> None:
    store.ensure_schema(DIM)
    names = {r["name"] for r in cypher(store, "SHOW INDEXES YIELD name RETURN name")}
    assert {
        "user_embedding",
        "item_embedding",
        "user_id",
        "item_id",
        "category_name",
        "partition_offset_key",
        "applied_event_id",
    } <= names
    with pytest.raises(GraphError, match="dimension"):
        store.ensure_schema(DIM + 1)


def test_forget_erases_the_user_and_what_derives_from_them(store: GraphStore) -> None:
    store.apply_batch(recording())
    store.refresh_dirty(ENC.version)
    (pop_before,) = cypher(store, "MATCH (i:Item {item_id: 'i2'}) RETURN i.popularity AS p")
    assert store.forget("u1") is True
    assert cypher(store, "MATCH (u:User {user_id: 'u1'}) RETURN u") == []
    assert cypher(store, "MATCH ()-[s:SIMILAR_TO]->(:User {user_id: 'u1'}) RETURN s") == []
    # u1 browsed i2 at day 2 (weight 1); u2 purchased it at day 1: popularity loses u1's share
    (pop,) = cypher(store, "MATCH (i:Item {item_id: 'i2'}) RETURN i.popularity AS p")
    assert pop["p"] == pytest.approx(pop_before["p"] - 1.0)
    (rank,) = cypher(
        store, "MATCH (i:Item {item_id: 'i2'}) RETURN i.popularity_rank AS r, i.popularity_ts AS t"
    )
    assert rank["r"] == pytest.approx(np.log2(pop["p"]) + rank["t"] / HL)
    assert all(r["user_id"] != "u1" for r in store.audience(category="shoes", now=3 * DAY))
    assert store.similar_users("u2") == []
    assert store.forget("u1") is False
    # a replay of u1's events does not bring them back (the event-id ledger remembers)
    assert store.apply_batch(recording()).applied == 0


def test_concurrent_batches_on_shared_keys_lose_no_update(store: GraphStore) -> None:
    """Workers on different partitions share users and items: locks serialise the folds, and
    the same event id arriving on two partitions at once is applied once."""
    from concurrent.futures import ThreadPoolExecutor

    def consume(part: int) -> list[ApplyResult]:  # one partition, in order, like a consumer
        out = []
        for n in range(10):
            own = Event(
                f"c{part}-{n}",
                "u1",
                "i1",
                "click",
                float(n),
                topic="t",
                partition=part,
                offset=2 * n,
            )
            shared = Event(
                f"shared-{n}",
                "u1",
                "i1",
                "click",
                float(n),
                topic="t",
                partition=part,
                offset=2 * n + 1,
            )
            out.append(store.apply_batch(GraphBatch([own, shared])))
        return out

    with ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(consume, range(4)) for r in rs]
    assert sum(r.applied for r in results) == 4 * 10 + 10
    assert sum(r.duplicates for r in results) == 3 * 10
    assert edge(store, "u1", "i1")["n_click"] == 50
    (pop,) = cypher(store, "MATCH (i:Item {item_id: 'i1'}) RETURN i.popularity AS p")
    # 50 clicks within 10 seconds of a 14-day half-life: almost no decay
    assert pop["p"] == pytest.approx(100.0, rel=1e-4)
    assert edge(store, "u1", "i1")["strength"] == pytest.approx(100.0, rel=1e-4)


def test_pruning_the_event_ledger(store: GraphStore) -> None:
    store.apply_batch(recording())
    assert store.prune_applied_events(before_ts=1 * DAY) == 2  # e1 (day 0) and e4 (day 0.5)
    assert store.prune_applied_events(before_ts=1 * DAY) == 0
    ids = cypher(store, "MATCH (e:AppliedEvent) RETURN e.event_id AS id ORDER BY id")
    assert [r["id"] for r in ids] == ["e2", "e3"]


def test_a_tiny_change_keeps_the_user_embedding(store: GraphStore) -> None:
    store.apply_batch(
        GraphBatch(
            [ev(n, "u1", "i1", "click", 0) for n in range(100)],
            CATALOGUE,
            embed(CATALOGUE),
            {},
            ENC.version,
        )
    )
    store.refresh_dirty(ENC.version)
    (before,) = cypher(store, "MATCH (u:User {user_id: 'u1'}) RETURN u.embedding AS e")
    np.testing.assert_allclose(before["e"], embed(CATALOGUE)["i1"], rtol=1e-6)
    # one browse against 100 clicks moves the mean by 1 - cos ~ 1e-5: under the tolerance
    store.apply_batch(GraphBatch([ev(200, "u1", "i2", "browse", 0)]))
    assert store.refresh_dirty(ENC.version) == 2  # u1, and i2's co-engagement list (new engager)
    (after,) = cypher(store, "MATCH (u:User {user_id: 'u1'}) RETURN u.embedding AS e, u.dirty AS d")
    assert after == {"e": before["e"], "d": False}


def test_forget_refills_the_similarity_lists_that_pointed_at_the_user(
    clean_graph: Any, settings: Settings
) -> None:
    params = InterestParams(
        half_life_s=HL, weights=DEFAULT_WEIGHTS, similar_k=1, similar_threshold=0.0
    )
    store = GraphStore(clean_graph, settings.neo4j_database, params)
    store.ensure_schema(DIM)
    events = [
        ev(1, "a", "i1", "click", 0),
        ev(2, "b", "i1", "click", 0),
        ev(3, "b", "i2", "click", 0),
        ev(4, "c", "i2", "click", 0),
    ]
    store.apply_batch(GraphBatch(events, CATALOGUE, embed(CATALOGUE), {}, ENC.version))
    store.refresh_dirty(ENC.version)
    (top,) = store.similar_users("a", k=5)
    assert top["user_id"] == "b"  # a and b share i1
    pointing = [u for u in ("b", "c") if any(r["user_id"] == "a" for r in store.similar_users(u))]
    assert store.forget("a")
    # the users that pointed at a, and i1, whose engagers changed (its co-engagement list)
    assert store.refresh_dirty(ENC.version) == len(pointing) + 1
    for user in ("b", "c"):
        assert [r["user_id"] for r in store.similar_users(user, k=5)] == [
            "c" if user == "b" else "b"
        ]


class FailingOnce(GraphStore):
    """Fails the first transaction attempt after it wrote everything (a lost connection)."""

    failures = 0

    def _apply_tx(self, tx: Any, batch: GraphBatch) -> ApplyResult:
        result = super()._apply_tx(tx, batch)
        if self.failures == 0:
            from neo4j.exceptions import SessionExpired

            self.failures += 1
            raise SessionExpired("connection lost before commit (test)")
        return result


def test_a_retried_transaction_has_the_effect_of_one(store: GraphStore) -> None:
    flaky = FailingOnce(store._driver, store._database, store._params)
    result = flaky.apply_batch(recording())
    assert flaky.failures == 1
    assert (result.applied, result.duplicates) == (4, 0)  # the retry saw none of the first try
    once = canonical_dump(store._driver, store._database)
    cypher(store, "MATCH (n) DETACH DELETE n")
    store.apply_batch(recording())
    assert canonical_dump(store._driver, store._database) == once


def test_canonical_dump_without_derived_data(store: GraphStore) -> None:
    store.apply_batch(recording())
    store.refresh_dirty(ENC.version)
    full = canonical_dump(store._driver, store._database)
    assert any('"SIMILAR_TO"' in line for line in full["relationships"])
    bare = canonical_dump(
        store._driver, store._database, derived=False, exclude_labels=["AppliedEvent"]
    )
    assert not any('"SIMILAR_TO"' in line for line in bare["relationships"])
    users = [line for line in bare["nodes"] if '"User"' in line]
    assert len(users) == 2
    assert not any('"embedding"' in u or '"dirty"' in u for u in users)
    assert not any("AppliedEvent" in line for line in bare["nodes"])
    assert len(bare["nodes"]) == len(full["nodes"]) - 4  # the four applied event ids


def test_an_empty_batch_writes_nothing(store: GraphStore) -> None:
    result = store.apply_batch(GraphBatch([]))
    assert (result.applied, result.duplicates) == (0, 0)
    assert set(result.rows.values()) == {0}
    assert canonical_dump(store._driver, store._database) == {"nodes": [], "relationships": []}
    assert store.refresh_dirty(ENC.version) == 0


def test_discovery_is_kept_incrementally_as_its_definition(store: GraphStore) -> None:
    """Batches with late events and a forgotten user: the stored (discovery, discovery_ts) of
    every item, decayed to now, equals the definition recomputed from the edges."""
    events = [
        ev(1, "u1", "i1", "browse", 3),
        ev(2, "u1", "i1", "purchase", 5),
        ev(3, "u2", "i1", "purchase", 6),
        ev(4, "u2", "i1", "purchase", 9),  # repeat: no change
        ev(5, "u3", "i2", "purchase", 8),
    ]
    late = [
        ev(6, "u2", "i1", "click", 1),  # u2 met i1 earlier than we knew: its share moves
        ev(7, "u4", "i2", "browse", 2),  # never buys
        ev(8, "u3", "i1", "purchase", 10),
    ]
    store.apply_batch(GraphBatch(events))
    store.apply_batch(GraphBatch(late))
    store.forget("u3")
    now = 12 * DAY
    expected = cypher(
        store,
        "MATCH (:User)-[r:INTERESTED_IN]->(i:Item) WHERE r.n_purchase > 0"
        " RETURN i.item_id AS item, sum(2.0 ^ (-($now - r.first_ts) / $hl)) AS score",
        now=now,
        hl=HL,
    )
    stored = cypher(
        store,
        "MATCH (i:Item) RETURN i.item_id AS item,"
        " i.discovery * 2.0 ^ (-($now - i.discovery_ts) / $hl) AS score",
        now=now,
        hl=HL,
    )
    want = {r["item"]: r["score"] for r in expected}
    got = {r["item"]: r["score"] or 0.0 for r in stored}
    assert set(want) == {"i1"}  # u3 forgotten: i2 has no buyer left
    assert got["i1"] == pytest.approx(want["i1"], rel=1e-9)
    assert got["i2"] == pytest.approx(0.0, abs=1e-9)
    # u1 from day 3, u2 from day 1 (the late click)
    assert want["i1"] == pytest.approx(2 ** (-9 / 14) + 2 ** (-11 / 14), rel=1e-9)
