"""The real services: `up` is idempotent, Kafka round-trips a message, Neo4j has vector indexes,
and a private instance on its own ports comes up and goes down cleanly."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import services
from config.settings import Settings
from services.processes import port_open

from .harness import free_ports

pytestmark = pytest.mark.integration


def test_up_twice_is_harmless_and_status_reports_running(settings: Settings) -> None:
    if not settings.use_local_services:
        states = services.up(settings, say=lambda _: None)
        assert {s.state for s in states} == {"external"}
        return
    before = {s.name: s for s in services.status(settings)}
    assert all(s.state == "running" for s in before.values()), (
        f"run `tastegraph services up`: {before}"
    )

    for _ in range(2):
        t0 = time.monotonic()
        states = services.up(settings, say=lambda _: None)
        assert time.monotonic() - t0 < 30, "an `up` with everything running must be quick"
        assert [(s.name, s.state, s.detail) for s in states] == [
            ("kafka", "running", "already running"),
            ("neo4j", "running", "already running"),
        ]
        assert {s.name: s.pid for s in states} == {n: s.pid for n, s in before.items()}

    after = services.status(settings)
    assert [(s.name, s.state, s.pid) for s in after] == [
        (n, "running", s.pid) for n, s in before.items()
    ]
    quiet = subprocess.run(
        [sys.executable, "-m", "services", "status", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (quiet.returncode, quiet.stdout) == (0, "")


def test_kafka_round_trips_one_message(kafka_admin: Any, unique_topics: Any) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topic = unique_topics("services-roundtrip")
    kafka_admin.create_topics(topic, partitions=2)
    assert kafka_admin.partition_count(topic) == 2
    payload = uuid.uuid4().bytes

    async def round_trip() -> tuple[bytes | None, bytes | None]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_admin.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, payload, key=b"user-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_admin.bootstrap,
            group_id=unique_topics("services-group"),
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), 60)
        finally:
            await consumer.stop()
        return message.key, message.value

    assert asyncio.run(round_trip()) == (b"user-1", payload)


def test_neo4j_creates_and_queries_a_vector_index(clean_graph: Any, settings: Settings) -> None:
    index = f"services_vec_{uuid.uuid4().hex[:8]}"
    db = settings.neo4j_database
    clean_graph.execute_query(
        f"CREATE VECTOR INDEX {index} FOR (n:ServicesProbe) ON n.embedding "
        "OPTIONS {indexConfig: {`vector.dimensions`: 3, `vector.similarity_function`: 'cosine'}}",
        database_=db,
    )
    try:
        clean_graph.execute_query(
            "UNWIND $rows AS row CREATE (:ServicesProbe {id: row.id, embedding: row.v})",
            rows=[{"id": "x", "v": [1.0, 0.0, 0.0]}, {"id": "y", "v": [0.0, 1.0, 0.0]}],
            database_=db,
        )
        clean_graph.execute_query("CALL db.awaitIndexes(120)", database_=db)
        records, _, _ = clean_graph.execute_query(
            "CALL db.index.vector.queryNodes($index, 2, $q) YIELD node, score "
            "RETURN node.id AS id, score ORDER BY score DESC",
            index=index,
            q=[0.9, 0.1, 0.0],
            database_=db,
        )
        assert [r["id"] for r in records] == ["x", "y"]
        assert records[0]["score"] > records[1]["score"]
    finally:
        clean_graph.execute_query(f"DROP INDEX {index} IF EXISTS", database_=db)


@pytest.mark.slow
def test_private_instance_comes_up_on_its_own_ports_and_goes_down(
    settings: Settings, tmp_path: Path
) -> None:
    if not settings.use_local_services:
        pytest.skip("external services configured")
    kafka_port = free_ports(0, 1, 5)  # Kafka, its controller, Neo4j
    neo4j_port = kafka_port + 5
    private = dataclasses.replace(
        settings, home=tmp_path / "home", local_kafka_port=kafka_port, local_neo4j_port=neo4j_port
    )
    shared_artifacts = settings.home / "services" / "artifacts"
    if shared_artifacts.is_dir():  # resolved already: spare the test a copy out of ~/.m2
        (private.home / "services").mkdir(parents=True)
        (private.home / "services" / "artifacts").symlink_to(shared_artifacts)
    try:
        states = services.up(private, say=lambda _: None)
        assert [(s.name, s.state, s.detail) for s in states] == [
            ("kafka", "running", "started"),
            ("neo4j", "running", "started"),
        ]
        assert all(port_open(p) for p in (kafka_port, kafka_port + 1, neo4j_port))
        assert (private.home / "neo4j-password").stat().st_mode & 0o777 == 0o600
        reread = Settings.from_env(
            {"TASTEGRAPH_HOME": str(private.home)}, local_neo4j_port=neo4j_port
        )
        assert reread.neo4j_password.get_secret_value()
    finally:
        stopped = services.down(private, say=lambda _: None)
    assert [(s.name, s.state) for s in stopped] == [("kafka", "stopped"), ("neo4j", "stopped")]
    assert [s.state for s in services.status(private)] == ["stopped", "stopped"]
    assert not any(port_open(p) for p in (kafka_port, kafka_port + 1, neo4j_port))
    assert not list((private.home / "services").glob("*/*.pid"))
    # the shared instance was not touched
    assert [s.state for s in services.status(settings)] == ["running", "running"]
