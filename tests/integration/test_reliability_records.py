"""Reliability of single records through Kafka to the real worker (issue 14): a record of the
largest size the topic accepts (5 MB), an item tombstone on the compacted items topic, and the
dead letters of a partition read twice.

Each test runs `tastegraph worker` (a subprocess with the real encoder) on topics and a consumer
group of its own (`harness.isolated`), reads its /metrics while it runs, and stops it with
SIGTERM. The figures of docs/reliability.md come from
`pytest tests/integration/test_reliability_records.py -s` (each test prints a FIGURES line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.settings import Settings
from graph.reads import GraphReads
from stream.runtime import interest_params
from stream.topics import ensure_topics
from stream.validation import MAX_DEAD_LETTER_BYTES, read_dead_letter
from tools.pipeline_bench import free_port

from .faults import (
    applied,
    assert_all_acknowledged,
    committed,
    metric_samples,
    metric_sum,
    produce,
    read_topic,
    scalar,
    wipe,
)
from .harness import Worker, isolated, wait_for

pytestmark = pytest.mark.integration

BIG = 5_000_000  # bytes: the record; the topic accepts up to MAX_MESSAGE
MAX_MESSAGE = 6 * 1024 * 1024
WORKER_START_S = 300.0  # the model loads first, on a shared machine
NO_WRITE_FAILURES = "tastegraph_neo4j_write_failures_total"


def figures(**values: Any) -> None:
    print("\nFIGURES " + " ".join(f"{k}={v}" for k, v in values.items()), file=sys.stderr)


def click(n: int, user: str, item: str, **extra: Any) -> dict[str, Any]:
    ts = time.time() - 600 + n
    return {
        "event_id": f"e{n}",
        "user_id": user,
        "item_id": item,
        "type": "click",
        "ts": ts,
        **extra,
    }


def stop(worker: Worker) -> str:
    rc = worker.stop(60)
    log = worker.log(10**7)
    assert rc == 0, log[-4000:]
    return log


def test_a_5_mb_record_is_dead_lettered_bounded_and_its_partition_moves_on(
    settings: Settings, neo4j_driver: Any, kafka_admin: Any, tmp_path: Path
) -> None:
    s = isolated(settings)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    # the source topic takes records up to 6 MiB (the broker's default is 1 MiB)
    kafka_admin.create_topics(
        s.topic_clicks,
        partitions=s.topic_partitions,
        configs={"max.message.bytes": str(MAX_MESSAGE)},
    )
    shell = {**click(10, "u1", "i1"), "event_id": "big", "description": ""}
    big = orjson.dumps({**shell, "description": "x" * (BIG - len(orjson.dumps(shell)))})
    assert len(big) == BIG
    before = [click(n, "u1", f"i{n % 3}") for n in range(10)]
    after = [click(n, "u1", f"i{n % 3}") for n in range(11, 21)]
    others = [click(n, f"u{n % 4 + 2}", f"i{n % 3}") for n in range(21, 41)]
    records = [(s.topic_clicks, b"u1", orjson.dumps(e), "valid") for e in before]
    records.append((s.topic_clicks, b"u1", big, "big"))  # the same key: the same partition
    records += [(s.topic_clicks, b"u1", orjson.dumps(e), "valid") for e in after]
    records += [(s.topic_clicks, e["user_id"].encode(), orjson.dumps(e), "valid") for e in others]
    sent = produce(s, records, max_request_size=MAX_MESSAGE)
    (oversize,) = [m for m in sent if m.label == "big"]
    assert [m.partition for m in sent[:21]] == [oversize.partition] * 21
    valid = len(records) - 1
    worker = Worker(s, tmp_path / "worker.log")
    try:
        t0 = time.monotonic()
        wait_for(lambda: applied(neo4j_driver, db) >= valid, WORKER_START_S, f"{valid} applied")
        applied_s = time.monotonic() - t0
        # the partition moved on: everything acknowledged, the lag drained
        wait_for(lambda: _acknowledged(s), 60, "every offset committed")
        samples = wait_for(
            lambda: (
                (m := metric_samples(s.metrics_port))
                and metric_sum(m, "tastegraph_consumer_lag") == 0
                and m
            ),
            60,
            "no consumer lag",
            ignore=(OSError,),
        )
        log = stop(worker)
    finally:
        worker.kill()
    assert applied(neo4j_driver, db) == valid
    assert scalar(neo4j_driver, db, "MATCH (e:AppliedEvent {event_id: 'big'}) RETURN count(e)") == 0
    # exactly one dead letter, its value cut to the bound, with the whole value's size and hash
    (dead,) = read_topic(s, s.topic_dead_letter)
    raw, record = read_dead_letter(dead.value)
    assert (record["topic"], record["partition"], record["offset"]) == (
        oversize.topic,
        oversize.partition,
        oversize.offset,
    )
    assert record["reason"] == "too_large"
    assert raw == big[:MAX_DEAD_LETTER_BYTES]
    assert record["value_truncated"] is True and record["value_size"] == BIG
    assert record["value_sha256"] == hashlib.sha256(big).hexdigest()
    assert record["key"] == "u1" and record["source_timestamp"] == oversize.timestamp_ms
    # counted once, as invalid (too large); no Neo4j write failed
    assert metric_sum(samples, "tastegraph_invalid_events_total") == 1
    assert samples[("tastegraph_invalid_events_total", (("reason", "too_large"),))] == 1
    assert metric_sum(samples, NO_WRITE_FAILURES) == 0
    assert "batch failed" not in log
    figures(
        oversize_bytes=BIG,
        dead_letter_bytes=len(dead.value),
        valid_events=valid,
        worker_applied_all_s=round(applied_s, 1),
    )


def _acknowledged(s: Settings) -> bool:
    try:
        assert_all_acknowledged(s)
    except AssertionError:
        return False
    return True


def _item_exists(driver: Any, db: str, item_id: str) -> bool:
    return bool(scalar(driver, db, "MATCH (i:Item {item_id: $i}) RETURN count(i)", i=item_id))


def _similar(driver: Any, db: str, item_id: str) -> set[str]:
    rows, _, _ = driver.execute_query(
        "MATCH (:Item {item_id: $i})-[:SIMILAR_TO]-(j:Item) RETURN j.item_id AS j",
        i=item_id,
        database_=db,
    )
    return {r["j"] for r in rows}


def _recommended(reads: GraphReads, users: list[str]) -> set[str]:
    out: set[str] = set()
    for user in users:
        for ranked in reads.recommend_many(user, k=20, exclude_purchased=False).values():
            out |= {r.item_id for r in ranked}
    return out


CATALOGUE = {
    "mug-blue": "Blue ceramic coffee mug",
    "mug-red": "Red ceramic coffee mug",
    "mug-green": "Green ceramic coffee mug",
    "kettle": "Stainless steel electric kettle",
}


def test_an_item_tombstone_through_kafka_deletes_the_item_counted_and_logged_once(
    settings: Settings, neo4j_driver: Any, tmp_path: Path
) -> None:
    s = isolated(settings)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    ensure_topics(s, [*s.event_topics, s.topic_items])  # the items topic compacted
    items = [
        (s.topic_items, k.encode(), orjson.dumps({"item_id": k, "title": t, "category": "kitchen"}))
        for k, t in CATALOGUE.items()
    ]
    events = [
        click(0, "ann", "mug-blue"),
        click(1, "ann", "kettle"),
        click(2, "bob", "mug-red"),
        click(3, "bob", "mug-blue"),
        click(4, "cat", "mug-green"),
        click(5, "cat", "mug-red"),
    ]
    produce(s, [(t, k, v, "item") for t, k, v in items])
    produce(s, [(s.topic_clicks, e["user_id"].encode(), orjson.dumps(e), "event") for e in events])
    reads = GraphReads(neo4j_driver, db, interest_params(s))
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: applied(neo4j_driver, db) >= len(events), WORKER_START_S, "events")
        # the refresh has placed the red mug among its neighbours' similar items
        wait_for(lambda: "mug-red" in _similar(neo4j_driver, db, "mug-blue"), 120, "similarity")
        vector = scalar(neo4j_driver, db, "MATCH (i:Item {item_id: 'mug-red'}) RETURN i.embedding")
        assert vector and "mug-red" in _nearest(neo4j_driver, db, vector)
        assert "mug-red" in _recommended(reads, ["ann", "bob", "cat"])
        # the tombstone: the key, no value
        (tomb,) = produce(s, [(s.topic_items, b"mug-red", None, "tombstone")])
        t0 = time.monotonic()
        wait_for(lambda: not _item_exists(neo4j_driver, db, "mug-red"), 120, "the item deleted")
        deleted_s = time.monotonic() - t0
        wait_for(lambda: _acknowledged_items(s, tomb.partition, tomb.offset), 60, "tombstone acked")
        samples = metric_samples(s.metrics_port)
        log = stop(worker)
    finally:
        worker.kill()
    # node, edges (interest, similarity) and vector index entry gone; the others stay
    assert (
        scalar(neo4j_driver, db, "MATCH ()-[r]-(:Item {item_id: 'mug-red'}) RETURN count(r)") == 0
    )
    assert "mug-red" not in _nearest(neo4j_driver, db, vector)
    assert all(_item_exists(neo4j_driver, db, i) for i in CATALOGUE if i != "mug-red")
    assert "mug-red" not in _similar(neo4j_driver, db, "mug-blue")
    assert "mug-red" not in _recommended(reads, ["ann", "bob", "cat"])
    assert applied(neo4j_driver, db) == len(events)  # the ledger keeps the events' ids
    # counted once, logged once at INFO, not dead-lettered
    assert samples[("tastegraph_neo4j_rows_written_total", (("kind", "items_deleted"),))] == 1
    lines = [line for line in log.splitlines() if "item tombstone" in line]
    assert len(lines) == 1 and "INFO" in lines[0] and "item_id=mug-red" in lines[0], lines
    assert read_topic(s, s.topic_dead_letter) == []
    figures(tombstone_to_deleted_s=round(deleted_s, 1))


def _nearest(driver: Any, db: str, vector: list[float]) -> set[str]:
    rows, _, _ = driver.execute_query(
        "CALL db.index.vector.queryNodes('item_embedding', 10, $v) YIELD node "
        "RETURN node.item_id AS id",
        v=vector,
        database_=db,
    )
    return {r["id"] for r in rows}


def _acknowledged_items(s: Settings, partition: int, offset: int) -> bool:
    return committed(s).get((s.topic_items, partition), -1) > offset


def test_dead_letters_once_per_consumer_group_and_again_when_a_partition_is_read_again(
    settings: Settings, neo4j_driver: Any, kafka_admin: Any, tmp_path: Path
) -> None:
    """Across a crash the dead letters are at least once: a partition read again (a worker killed
    before it committed, here a new consumer group) sends them again, with the same source
    topic, partition and offset, by which a reader recognises them; a worker that resumes from
    committed offsets sends none again."""
    s = isolated(settings)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    kafka_admin.create_topics(*s.event_topics, partitions=s.topic_partitions)
    bad = [b"{not json", b"[1, 2]", orjson.dumps({**click(99, "u1", "i1"), "type": "teleport"})]
    records = [
        (s.topic_clicks, b"u1", orjson.dumps(click(n, "u1", f"i{n}")), "ok") for n in range(5)
    ]
    records += [(s.topic_clicks, b"u1", v, "bad") for v in bad]
    produce(s, records)
    runs = []
    for run, group in enumerate((s.app_id, s.app_id, f"{s.app_id}-again")):
        r = dataclasses.replace(s, app_id=group, metrics_port=free_port())
        worker = Worker(r, tmp_path / f"worker-{run}.log", "--until-idle", "3")
        assert worker.wait(WORKER_START_S) == 0, worker.log()
        dead = [read_dead_letter(d.value)[1] for d in read_topic(s, s.topic_dead_letter)]
        runs.append(len(dead))
    keys = [(d["topic"], d["partition"], d["offset"]) for d in dead]
    # first run: once each; the same group resumes after its commits: none again; a new group
    # (a partition read again) sends each again, with the same source coordinates
    assert runs == [3, 3, 6]
    assert sorted(Counter(keys).values()) == [2, 2, 2]
    assert applied(neo4j_driver, db) == 5
    figures(dead_letters_after_runs=runs)


def test_a_dead_letter_kafka_refuses_for_good_is_bounded_and_the_partition_moves_on(
    settings: Settings, neo4j_driver: Any, kafka_admin: Any, tmp_path: Path
) -> None:
    """A failure outside the graph write that is not an outage: the dead-letter topic refuses the
    dead letter (its max.message.bytes is smaller). The batch is retried a bounded number of
    times, the failing record isolated and skipped with an error line; the rest is applied."""
    s = isolated(settings, write_retry_max_s=2.0)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    kafka_admin.create_topics(*s.event_topics, partitions=s.topic_partitions)
    kafka_admin.create_topics(
        s.topic_dead_letter, partitions=1, configs={"max.message.bytes": "1024"}
    )
    bad = b"{not json " + b"x" * 2000  # its dead letter is over 1 KiB
    records = [
        (s.topic_clicks, b"u1", orjson.dumps(click(n, "u1", f"i{n % 3}")), "ok") for n in range(5)
    ]
    records.append((s.topic_clicks, b"u1", bad, "bad"))
    records += [
        (s.topic_clicks, b"u1", orjson.dumps(click(n, "u1", f"i{n % 3}")), "ok")
        for n in range(6, 11)
    ]
    sent = produce(s, records)
    (refused,) = [m for m in sent if m.label == "bad"]
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: applied(neo4j_driver, db) >= 10, WORKER_START_S, "10 applied")
        t0 = time.monotonic()
        wait_for(lambda: _acknowledged(s), 180, "every offset committed")
        acked_s = time.monotonic() - t0
        samples = metric_samples(s.metrics_port)
        log = stop(worker)
    finally:
        worker.kill()
    skipped = [line for line in log.splitlines() if "dead letter refused, record skipped" in line]
    assert len(skipped) == 1 and f"offset={refused.offset}" in skipped[0], skipped
    assert "MessageSizeTooLarge" in skipped[0]
    assert "Traceback" not in log and "rashed" not in log, log[-4000:]
    # counted once, under its own reason; no Neo4j write failed
    assert metric_sum(samples, "tastegraph_invalid_events_total") == 1
    assert samples[("tastegraph_invalid_events_total", (("reason", "not_json"),))] == 1
    assert metric_sum(samples, NO_WRITE_FAILURES) == 0
    assert applied(neo4j_driver, db) == 10
    figures(refused_dead_letter_acked_after_s=round(acked_s, 1))
