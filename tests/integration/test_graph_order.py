"""The graph is a function of the set of events and catalogue records: the same records applied
through ``GraphStore.apply_batch`` in several orders and batch sizes give the same whole graph
(``graph.dump.canonical_dump``), categories included, on the real Neo4j.

Catalogue records of one item keep their relative order (they share a key, so Kafka delivers them
in order); everything else is shuffled, catalogue records before, between and after their items'
events. Floats compare to a relative 1e-9 (sums in another order round differently).
"""

from __future__ import annotations

import calendar
import json
import math
import random
import time
from typing import Any

import pytest

from config.settings import DEFAULT_WEIGHTS, Settings
from graph.dump import canonical_dump, node_ref
from graph.model import Event, ItemRecord
from graph.store import GraphBatch, GraphStore, InterestParams
from tools.datagen import generate_dataset

pytestmark = pytest.mark.integration

DIM = 384  # the vector indexes are shared with the worker's tests
HL = 14 * 86400.0
Record = Event | ItemRecord


def _epoch(iso: str) -> float:
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


def records() -> list[Record]:
    """~600 events of 25 users (returns included), some carrying item fields; catalogue records
    for two thirds of the items, one of which changes category later."""
    items, raw = generate_dataset(600, seed=5, users=25, items=60, embedded_share=0.8)
    rng = random.Random(5)
    events: list[Record] = []
    for e in raw:
        fields = rng.random() < 0.5  # half the events carry the item's fields, if they have them
        events.append(
            Event(
                e["event_id"],
                e["user_id"],
                e["item_id"],
                e["type"],
                _epoch(e["ts"]),
                title=e.get("title") if fields else None,
                category=e.get("category") if fields else None,
                description=e.get("description") if fields else None,
            )
        )
    used = sorted({e["item_id"] for e in raw if not e["item_id"].startswith("new-")})
    catalogue: list[Record] = [
        ItemRecord(it["item_id"], it["title"], it["category"], it["description"])
        for it in items
        if it["item_id"] in used and rng.random() < 0.67
    ]
    # one item changes category (a second record for the same key: delivered after the first)
    moved = next(r for r in catalogue if isinstance(r, ItemRecord))
    assert isinstance(moved, ItemRecord)
    catalogue.append(ItemRecord(moved.item_id, moved.title, "clearance", moved.description))
    return events + catalogue


def ordered(recs: list[Record], rng: random.Random) -> list[Record]:
    """A random order that keeps each item's catalogue records in their relative order."""
    out = list(recs)
    rng.shuffle(out)
    by_item: dict[str, list[ItemRecord]] = {}
    for r in recs:
        if isinstance(r, ItemRecord):
            by_item.setdefault(r.item_id, []).append(r)
    slots = {k: iter(v) for k, v in by_item.items()}
    return [next(slots[r.item_id]) if isinstance(r, ItemRecord) else r for r in out]


def apply_all(store: GraphStore, recs: list[Record], sizes: list[int]) -> None:
    at, k = 0, 0
    while at < len(recs):
        chunk = recs[at : at + sizes[k % len(sizes)]]
        at += len(chunk)
        k += 1
        store.apply_batch(
            GraphBatch(
                events=[r for r in chunk if isinstance(r, Event)],
                items=[r for r in chunk if isinstance(r, ItemRecord)],
            )
        )


def graph(store: GraphStore, settings: Settings) -> dict[str, Any]:
    dump = canonical_dump(store._driver, settings.neo4j_database, derived=False)
    out: dict[str, Any] = {}
    for line in dump["nodes"]:
        node = json.loads(line)
        out[node_ref(node["labels"], node["props"])] = node["props"]
    for line in dump["relationships"]:
        rel = json.loads(line)
        out[json.dumps([rel["type"], rel["from"], rel["to"]])] = rel["props"]
    return out


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, int | float) and isinstance(b, int | float)
        return (
            []
            if ok and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            else [f"{path}: {a!r} != {b!r}"]
        )
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@pytest.fixture
def store(clean_graph: Any, settings: Settings) -> GraphStore:
    s = GraphStore(clean_graph, settings.neo4j_database, InterestParams(HL, DEFAULT_WEIGHTS))
    s.ensure_schema(DIM)
    return s


def wipe(store: GraphStore) -> None:
    with store._driver.session(database=store._database) as session:
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()


def test_any_order_and_batch_size_give_the_same_graph(
    store: GraphStore, settings: Settings
) -> None:
    recs = records()
    rng = random.Random(1)
    events = [r for r in recs if isinstance(r, Event)]
    items = [r for r in recs if isinstance(r, ItemRecord)]
    runs = {
        "catalogue first, by time, batches of 100": (
            items + sorted(events, key=lambda e: e.ts),
            [100],
        ),
        "catalogue last, newest first, batches of 37": (
            sorted(events, key=lambda e: -e.ts) + items,
            [37],
        ),
        "shuffled, batches of 1 to 60": (
            ordered(recs, rng),
            [rng.randint(1, 60) for _ in range(50)],
        ),
        "shuffled again, one batch": (ordered(recs, rng), [len(recs)]),
    }
    reference: dict[str, Any] | None = None
    for name, (order, sizes) in runs.items():
        wipe(store)
        apply_all(store, order, sizes)
        got = graph(store, settings)
        categories = [k for k in got if k.startswith('["INTERESTED_IN"') and "Category:" in k]
        assert categories, name
        if reference is None:
            reference = got
            continue
        diff = differences(reference, got)
        assert not diff, f"{name}: {len(diff)} differences, e.g. {diff[:5]}"


def test_an_item_tombstone_takes_the_item_out_of_the_graph(
    store: GraphStore, settings: Settings
) -> None:
    """The item goes with its edges and embedding; its users' category interest no longer counts
    it, their embeddings are refreshed, similar items drop it from their lists."""
    from encoder.protocol import HashingEncoder

    enc = HashingEncoder(dim=DIM)
    texts = {"s1": "red trail shoe", "s2": "red road shoe", "b1": "pasta book"}
    vectors = dict(zip(texts, enc.encode(list(texts.values())), strict=True))
    catalogue = [
        ItemRecord("s1", "red trail shoe", "shoes"),
        ItemRecord("s2", "red road shoe", "shoes"),
    ]
    catalogue.append(ItemRecord("b1", "pasta book", "books"))
    events = [
        Event("e1", "u1", "s1", "purchase", 0.0),
        Event("e2", "u1", "s2", "click", 0.0),
        Event("e3", "u1", "b1", "click", 0.0),
    ]
    store.apply_batch(
        GraphBatch(
            events=events, items=catalogue, item_embeddings=vectors, model_version=enc.version
        )
    )
    while store.refresh_dirty(enc.version) > 0:
        pass
    result = store.apply_batch(GraphBatch(events=[], items=[ItemRecord("s1", deleted=True)]))
    assert result.rows["items_deleted"] == 1

    def one(query: str) -> Any:
        records, _, _ = store._driver.execute_query(query, database_=settings.neo4j_database)
        return records[0][0] if records else None

    assert one("MATCH (i:Item {item_id: 's1'}) RETURN count(i)") == 0
    assert one("MATCH ()-[s:SIMILAR_TO]->(:Item {item_id: 's1'}) RETURN count(s)") == 0
    # shoes interest is now the click on s2 alone; the user is to be refreshed
    shoes = one(
        "MATCH (:User {user_id: 'u1'})-[r:INTERESTED_IN]->(:Category {name: 'shoes'}) RETURN r"
    )
    assert shoes["strength"] == 2.0 and shoes["n_click"] == 1 and "n_purchase" not in shoes
    assert one("MATCH (u:User {user_id: 'u1'}) RETURN u.dirty") is True
    assert one("MATCH (i:Item {item_id: 's2'}) RETURN i.popularity") == 2.0
    # the vector index no longer returns it
    assert "s1" not in {
        r["id"]
        for r in store._driver.execute_query(
            "CALL db.index.vector.queryNodes('item_embedding', 10, $v) YIELD node "
            "RETURN node.item_id AS id",
            {"v": [float(x) for x in vectors["s1"]]},
            database_=settings.neo4j_database,
        )[0]
    }
    # a later event on it creates it anew (a new item, without the old history)
    store.apply_batch(GraphBatch(events=[Event("e4", "u2", "s1", "browse", 10.0)]))
    assert one("MATCH (:User)-[r:INTERESTED_IN]->(:Item {item_id: 's1'}) RETURN count(r)") == 1


def test_an_item_embedded_later_reaches_its_users_embeddings(
    store: GraphStore, settings: Settings
) -> None:
    """A user refreshed before their item had an embedding gets it once the item has one: the
    refresh flags an item's users when the item gets a new embedding."""
    from encoder.protocol import HashingEncoder

    enc = HashingEncoder(dim=DIM)
    store.apply_batch(GraphBatch(events=[Event("e1", "u1", "s9", "click", 0.0)]))
    while store.refresh_dirty(enc.version) > 0:
        pass
    vec = enc.encode(["blue kettle"])[0]
    store.apply_batch(
        GraphBatch(
            events=[],
            items=[ItemRecord("s9", "blue kettle")],
            item_embeddings={"s9": vec},
            model_version=enc.version,
        )
    )
    while store.refresh_dirty(enc.version) > 0:
        pass
    records, _, _ = store._driver.execute_query(
        "MATCH (u:User {user_id: 'u1'}) RETURN u.embedding AS e, u.dirty AS d",
        database_=settings.neo4j_database,
    )
    got = records[0]["e"]
    assert got is not None and records[0]["d"] is False
    norm = math.sqrt(sum(x * x for x in vec))
    assert sum(a * b / norm for a, b in zip(got, vec, strict=True)) > 0.999
