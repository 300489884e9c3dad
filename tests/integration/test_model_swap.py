"""Re-embedding after a model swap on the real Neo4j: stale items get the new version, users of the
old version are recomputed by the refresh, and no similarity edge joins two versions at the end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.example_store import read_examples
from encoder.protocol import HashingEncoder
from finetuning.stores import default_examples_path, registry_for
from graph.model import Event, ItemRecord, item_text
from graph.store import GraphBatch, GraphStore, InterestParams
from stream.derived import DerivedWork
from stream.lifecycle import CurrentEncoder, StopSignal, WorkerPools
from stream.metrics import Metrics
from tools.recording import replay

from .conftest import run_sync
from .harness import RECORDING, Worker, isolated, topic_map, wait_for

pytestmark = pytest.mark.integration

DIM = 384  # the real model's dimension: the vector indexes are shared with the worker's tests
V1, V2 = HashingEncoder(dim=DIM, version="hash-v1"), HashingEncoder(dim=DIM, version="hash-v2")
CATALOGUE = [
    ItemRecord("i1", "red trail running shoe", "shoes", "grippy"),
    ItemRecord("i2", "blue road running shoe", "shoes", "light"),
    ItemRecord("i3", "italian pasta cook book", "books", "recipes"),
    ItemRecord("i4", "green trail running shoe", "shoes", None),
]


@pytest.fixture
def store(clean_graph: Any, settings: Settings) -> GraphStore:
    params = InterestParams(
        half_life_s=14 * 86400.0, weights=DEFAULT_WEIGHTS, similar_k=3, similar_threshold=-1.0
    )
    s = GraphStore(clean_graph, settings.neo4j_database, params)
    s.ensure_schema(DIM)
    return s


def cypher(store: GraphStore, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = store._driver.execute_query(query, params, database_=store._database)
    return [dict(r) for r in records]


def test_reembedding_after_a_swap_moves_every_node_to_the_new_version(
    store: GraphStore, settings: Settings
) -> None:
    texts = {i.item_id: item_text(i.title, i.category, i.description) for i in CATALOGUE}
    vectors = dict(zip(texts, V1.encode(list(texts.values())), strict=True))
    events = [
        Event(f"e{n}", f"u{n % 3}", f"i{1 + n % 4}", "click", 1_700_000_000.0 + n) for n in range(9)
    ]
    store.apply_batch(
        GraphBatch(events=events, items=CATALOGUE, item_embeddings=vectors, model_version="hash-v1")
    )
    while store.refresh_dirty("hash-v1") > 0:
        pass
    assert {r["v"] for r in cypher(store, "MATCH (n:User) RETURN n.embedding_version AS v")} == {
        "hash-v1"
    }

    # the store methods the re-embedding uses: the item text as the batch computed it
    assert sorted(store.stale_items("hash-v2", 10)) == sorted(texts.items())
    assert store.stale_items("hash-v1", 10) == []
    assert store.item_texts(["i1", "i4", "nope"]) == {"i1": texts["i1"], "i4": texts["i4"]}

    # a batch touches u0 during the transition: the refresh (new version) finds none of its items
    # embedded by that version yet and clears its embedding; the re-embedding must still reach it
    cypher(store, "MATCH (u:User {user_id: 'u0'}) SET u.dirty = true")
    while store.refresh_dirty("hash-v2") > 0:
        pass
    cleared = cypher(store, "MATCH (u:User {user_id: 'u0'}) RETURN u.embedding_version AS v")
    assert cleared == [{"v": None}]
    pools = WorkerPools.open()
    derived = DerivedWork(
        settings,
        store,
        CurrentEncoder(V2),
        Metrics.create(CollectorRegistry()),
        StopSignal(),
        executor=pools.refresh,
        encode_executor=pools.encode,
    )

    async def reembed() -> list[int]:
        steps = []
        while (n := await derived.reembed(3)) > 0:
            steps.append(n)
            while await derived.refresh(100) > 0:
                pass
            assert len(steps) < 10
        return steps

    try:
        # 4 items in steps of 3; an item with a new embedding flags its users dirty, so the
        # refresh between the steps moves the users and nothing is left for a user step
        assert asyncio.run(reembed()) == [3, 1]
    finally:
        pools.close()
    versions = cypher(
        store,
        "MATCH (n) WHERE n:User OR n:Item RETURN n.embedding_version AS v, count(*) AS n",
    )
    assert versions == [{"v": "hash-v2", "n": 7}]
    got = cypher(store, "MATCH (i:Item {item_id: 'i3'}) RETURN i.embedding AS e")[0]["e"]
    assert got == pytest.approx(V2.encode([texts["i3"]])[0].tolist(), abs=1e-6)
    mixed = cypher(
        store,
        "MATCH (a)-[:SIMILAR_TO]->(b) WHERE a.embedding_version <> b.embedding_version "
        "RETURN count(*) AS n",
    )
    assert mixed == [{"n": 0}]
    edges = cypher(store, "MATCH (:User)-[s:SIMILAR_TO]->(:User) RETURN count(s) AS n")
    assert edges[0]["n"] > 0  # the users were compared again, in the new version


def test_a_running_worker_swaps_to_a_promoted_version_mid_stream(
    settings: Settings, clean_graph: Any, kafka_admin: Any, tmp_path: Path
) -> None:
    """The recording in small batches; a version promoted while they flow: the worker swaps
    without a restart, loses no event, and ends with every node on the new version."""
    import torch

    from encoder.loading import load_pretrained
    from encoder.trained_model import save_model

    s = isolated(
        settings,
        home=tmp_path / "home",
        model_poll_s=0.5,
        max_batch=4,
        reembed_limit=5,
        finetune_enabled=1,  # examples only: the first fine-tuning tick is an hour away
    )
    registry = registry_for(s)
    info = registry.create_version("base", 0)
    model, tokenizer, location = load_pretrained(s.model)
    with torch.no_grad():  # a "fine-tuned" model: other weights, so another encoder version
        next(model.parameters()).mul_(1.05)
    save_model(model, tokenizer, info.path, location.path)
    registry.update(info.version, status="candidate")
    del model

    driver, db = clean_graph, s.neo4j_database

    def query(q: str) -> list[dict[str, Any]]:
        records, _, _ = driver.execute_query(q, database_=db)
        return [dict(r) for r in records]

    def applied() -> int:
        return int(query("MATCH (e:AppliedEvent) RETURN count(e) AS n")[0]["n"])

    def versions() -> set[str]:
        rows = query(
            "MATCH (n) WHERE (n:User OR n:Item) AND n.embedding IS NOT NULL "
            "RETURN DISTINCT n.embedding_version AS v"
        )
        return {r["v"] for r in rows}

    run_sync(replay(s, [RECORDING], topic_map=topic_map(s), progress=False))
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: applied() > 0, 180, "the first batch")
        (old,) = wait_for(versions, 30, "embedded nodes")
        registry.promote(info.version)
        wait_for(lambda: "model version swapped" in worker.log(50_000), 180, "the swap")
        wait_for(lambda: applied() == 60, 120, "every event")
        # every user with an interest in an embedded item ends up with a new-version embedding
        # (also those a refresh cleared during the transition)
        wait_for(
            lambda: (
                versions() not in ({old}, set())
                and len(versions()) == 1
                and not query(
                    "MATCH (u:User)-[r:INTERESTED_IN]->(i:Item) "
                    "WHERE r.strength > 0 AND i.embedding IS NOT NULL "
                    "AND coalesce(u.embedding_version, '') <> i.embedding_version "
                    "RETURN u.user_id LIMIT 1"
                )
            ),
            120,
            "re-embedding of every item and user",
        )
        assert versions() != {old}
        mixed = query(
            "MATCH (a)-[:SIMILAR_TO]->(b) WHERE a.embedding_version <> b.embedding_version "
            "RETURN count(*) AS n"
        )
        assert mixed == [{"n": 0}]
        assert worker.proc.poll() is None, worker.log()
    finally:
        rc = worker.stop()
    assert rc == 0, worker.log()
    assert query("MATCH (u:User) WHERE u.embedding IS NOT NULL RETURN count(u) AS n")[0]["n"] > 0
    # the worker fed its written clicks and purchases to the example collector, with the item
    # texts of the catalogue (the recording's events carry none)
    examples = list(read_examples(default_examples_path(s)))
    assert examples and all(ex.item_text and ex.context for ex in examples)
    catalogue = {
        i["item_id"]: i["t"]
        for i in query("MATCH (i:Item) RETURN i.item_id AS item_id, i.title AS t")
    }
    assert all(ex.item_text.startswith(catalogue[ex.item_id]) for ex in examples)
