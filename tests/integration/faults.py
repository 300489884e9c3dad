"""Helpers of the reliability tests (`test_reliability`): the graph compared by identity, the
derived data after convergence, Kafka topics and offsets read back, the local services stopped
and started."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from graph.store import GraphStore
from stream.runtime import interest_params

from .conftest import run_sync

# item embeddings: the encoder batches (and pads) texts differently in each run, and on CPUs with
# native bfloat16 it computes in bfloat16, so one text's vector varies in the third digit
MIN_COSINE = 0.995
# derived data (similarity edges, user embeddings) after the refresh has converged: scores to
# SCORE_TOL (cosine units; they are computed from those item embeddings), and an edge present in
# one run only if its score is within SCORE_TOL of a cut-off (the threshold, or the last score of a
# full top-k list), where the item embeddings' rounding may decide either way
SCORE_TOL = 0.01


# --- helpers: the graph ---------------------------------------------------------------------------


def wipe(driver: Any, database: str) -> None:
    with driver.session(database=database) as session:
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()


def scalar(driver: Any, database: str, query: str, **params: Any) -> Any:
    records, _, _ = driver.execute_query(query, params, database_=database)
    return records[0][0]


def applied(driver: Any, database: str) -> int:
    return int(scalar(driver, database, "MATCH (e:AppliedEvent) RETURN count(e)"))


def graph_offsets(driver: Any, database: str) -> dict[tuple[str, int], int]:
    records, _, _ = driver.execute_query(
        "MATCH (p:PartitionOffset) RETURN p.topic AS t, p.partition AS p, p.offset AS o",
        database_=database,
    )
    return {(r["t"], r["p"]): r["o"] for r in records}


def _differences(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, int | float) and isinstance(b, int | float)
        if not (ok and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)):
            out.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(f"{path}: keys {sorted(set(a) ^ set(b))} differ")
        for k in set(a) & set(b):
            _differences(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        vector = len(a) >= 16 and all(isinstance(x, int | float) for x in [*a, *b])
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} != {len(b)} elements")
        elif vector:
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            cos = dot / (math.sqrt(sum(x * x for x in a) * sum(y * y for y in b)) or 1.0)
            if cos < MIN_COSINE:
                out.append(f"{path}: vectors differ (cosine {cos:.5f})")
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _differences(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def graph_differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out = [f"missing {k}" for k in sorted(set(want) - set(got))]
    out += [f"extra {k}" for k in sorted(set(got) - set(want))]
    for key in sorted(set(want) & set(got)):
        _differences(got[key], want[key], key, out)
    return out


def converge_derived(settings: Settings, driver: Any) -> None:
    """Runs the refresh until nothing is left to refresh (what a worker does when idle)."""
    store = GraphStore(driver, settings.neo4j_database, interest_params(settings))
    versions = {
        r["v"]
        for r in driver.execute_query(
            "MATCH (i:Item) WHERE i.embedding_version IS NOT NULL "
            "RETURN DISTINCT i.embedding_version AS v",
            database_=settings.neo4j_database,
        )[0]
    }
    assert len(versions) == 1, versions
    deadline = time.monotonic() + 300
    version = versions.pop()
    while store.refresh_dirty(version, 500) > 0:
        assert time.monotonic() < deadline, "the refresh does not converge"


def derived_state(settings: Settings, driver: Any) -> dict[str, Any]:
    """User embeddings and the SIMILAR_TO lists of users and items, once the refresh converged."""
    converge_derived(settings, driver)
    db = settings.neo4j_database
    users, _, _ = driver.execute_query(
        "MATCH (u:User) WHERE u.embedding IS NOT NULL RETURN u.user_id AS id, u.embedding AS e",
        database_=db,
    )
    out: dict[str, Any] = {"embeddings": {r["id"]: r["e"] for r in users}}
    similar = {
        "User": "MATCH (a:User)-[s:SIMILAR_TO]->(b:User) "
        "RETURN a.user_id AS a, b.user_id AS b, s.score AS score",
        "Item": "MATCH (a:Item)-[s:SIMILAR_TO]->(b:Item) "
        "RETURN a.item_id AS a, b.item_id AS b, s.score AS score",
    }
    for label, query in similar.items():
        rows, _, _ = driver.execute_query(query, database_=db)
        lists: dict[str, dict[str, float]] = {}
        for r in rows:
            lists.setdefault(r["a"], {})[r["b"]] = r["score"]
        out[label] = lists
    return out


def derived_differences(
    got: dict[str, Any], want: dict[str, Any], k: int, threshold: float
) -> tuple[list[str], int]:
    """Differences beyond the tolerances (SCORE_TOL), and how many edges differed within them."""
    out: list[str] = []
    borderline = 0
    a, b = got["embeddings"], want["embeddings"]
    out += [f"user embedding of {u}: only in one run" for u in sorted(set(a) ^ set(b))]
    for u in sorted(set(a) & set(b)):
        dot = sum(x * y for x, y in zip(a[u], b[u], strict=True))
        norm = math.sqrt(sum(x * x for x in a[u]) * sum(y * y for y in b[u])) or 1.0
        if dot / norm < MIN_COSINE:
            out.append(f"user embedding of {u}: cosine {dot / norm:.5f}")
    for label in ("User", "Item"):
        for node in sorted(set(got[label]) | set(want[label])):
            x, y = got[label].get(node, {}), want[label].get(node, {})
            for other in sorted(set(x) | set(y)):
                edge = f"{label} {node} -> {other}"
                if other in x and other in y:
                    if abs(x[other] - y[other]) > SCORE_TOL:
                        out.append(f"{edge}: score {x[other]:.4f} != {y[other]:.4f}")
                    continue
                mine, theirs = (x, y) if other in x else (y, x)
                cutoffs = [threshold] + ([min(theirs.values())] if len(theirs) >= k else [])
                if any(abs(mine[other] - c) <= SCORE_TOL for c in cutoffs):
                    borderline += 1
                else:
                    where = "got" if other in x else "reference"
                    out.append(f"{edge}: only in {where} (score {mine[other]:.4f})")
    return out, borderline


# --- helpers: Kafka -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    label: str = ""
    timestamp_ms: int | None = None  # the record's timestamp, as the broker stored it


async def _produce(
    servers: str,
    records: Sequence[tuple[str, bytes | None, bytes | None, str]],
    max_request_size: int,
):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_request_size=max_request_size,
    )
    await producer.start()
    try:
        futures = [await producer.send(t, value=v, key=k) for t, k, v, _ in records]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [
        Sent(m.topic, m.partition, m.offset, v, label, m.timestamp)
        for m, (_, _, v, label) in zip(metas, records, strict=True)
    ]


def produce(
    settings: Settings,
    records: Sequence[tuple[str, bytes | None, bytes | None, str]],
    max_request_size: int = 1024 * 1024,
) -> list[Sent]:
    """Produces ``(topic, key, value, label)`` records; returns where each one landed."""
    return run_sync(_produce(settings.kafka_servers, records, max_request_size))


def metric_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A running worker's /metrics: (sample name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


async def _partitions(servers: str, topics: Sequence[str]) -> list[tuple[str, int]]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted((t["topic"], p["partition"]) for t in described for p in t["partitions"])


async def _read_topic(servers: str, topic: str) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await _partitions(servers, [topic])
        tps = [TopicPartition(t, p) for t, p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record of ``topic`` from the beginning to the end offsets of now."""
    return run_sync(_read_topic(settings.kafka_servers, topic))


async def _group_offsets(servers: str, group: str) -> dict[tuple[str, int], int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in got.items() if meta.offset >= 0}


def committed(settings: Settings) -> dict[tuple[str, int], int]:
    """The consumer group's committed offsets (the next record to read) per partition."""
    return run_sync(_group_offsets(settings.kafka_servers, settings.app_id))


async def _end_offsets(servers: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, p in await _partitions(servers, topics)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): o for tp, o in ends.items() if o > 0}


def end_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    return run_sync(_end_offsets(settings.kafka_servers, list(settings.event_topics)))


def assert_all_acknowledged(settings: Settings) -> None:
    """The group committed exactly the end offset of every non-empty event partition."""
    ends = end_offsets(settings)
    got = committed(settings)
    assert {k: got.get(k) for k in ends} == ends, f"committed {got}, end offsets {ends}"


# --- helpers: the services ------------------------------------------------------------------------


def local_service(settings: Settings, name: str) -> Any:
    from services.control import services

    return next(s for s in services(settings) if s.name == name)


def stop_service(settings: Settings, name: str) -> float:
    """Stops one local server (SIGTERM, SIGKILL after its deadline); returns the seconds it took."""
    from services import processes
    from services.layout import Layout

    service = local_service(settings, name)
    t0 = time.monotonic()
    with processes.locked(Layout.of(settings).lock_file):
        pid = processes.running_pid(service.pid_file, service.mark)
        assert pid is not None, f"{name} of {settings.home} is not running"
        processes.stop(pid, service.stop_timeout_s)
        service.pid_file.unlink(missing_ok=True)
    return time.monotonic() - t0


def start_services(settings: Settings) -> float:
    """`tastegraph services up` for the instance of ``settings``; returns the seconds it took."""
    from services.control import up

    t0 = time.monotonic()
    up(settings, say=lambda message: None)
    return time.monotonic() - t0
