"""Fixtures for the integration tests: the real Kafka and Neo4j (`tastegraph services up`).

Every integration module sets ``pytestmark = pytest.mark.integration``. When a service does not
answer, the fixtures fail the test with what to run, instead of hanging or skipping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import pytest

from config.settings import Settings

T = TypeVar("T")
HINT = "run `tastegraph services up` (or set KAFKA_BOOTSTRAP_SERVERS and NEO4J_URI)"


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` to completion, also from inside a running event loop (in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def neo4j_driver(settings: Settings) -> Iterator[Any]:
    """One synchronous driver for the whole session, checked with `RETURN 1`."""
    from neo4j import GraphDatabase

    auth = (settings.neo4j_user, settings.neo4j_password.get_secret_value())
    driver = GraphDatabase.driver(settings.neo4j_url, auth=auth, connection_timeout=10)
    error: Exception | None = None
    try:
        driver.verify_connectivity()  # fails at once, where a query would retry for 30 s
        driver.execute_query("RETURN 1", database_=settings.neo4j_database)
    except Exception as e:
        error = e
    if error is not None:
        driver.close()
        message = f"Neo4j at {settings.neo4j_url} does not answer ({error}): {HINT}"
        pytest.fail(message, pytrace=False)
    yield driver
    driver.close()


@pytest.fixture
def clean_graph(neo4j_driver: Any, settings: Settings) -> Any:
    """Deletes every node and relationship (indexes and constraints stay); returns the driver."""
    with neo4j_driver.session(database=settings.neo4j_database) as session:
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()
    return neo4j_driver


@pytest.fixture
def unique_topics() -> Callable[[str], str]:
    """A function that makes a topic name no other test (or run) uses: ``f"{prefix}-{uuid}"``."""

    def make(prefix: str = "test") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


class KafkaAdmin:
    """Creates topics with a given partition count and waits until every partition has a leader."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def create_topics(
        self,
        *names: str,
        partitions: int = 4,
        configs: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> list[str]:
        return run_sync(
            self.acreate_topics(*names, partitions=partitions, configs=configs, timeout_s=timeout_s)
        )

    async def acreate_topics(
        self,
        *names: str,
        partitions: int = 4,
        configs: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30000)
        await admin.start()
        try:
            topics = [NewTopic(n, partitions, 1, topic_configs=dict(configs or {})) for n in names]
            await admin.create_topics(topics)
            deadline = time.monotonic() + timeout_s
            while not await self._ready(admin, names, partitions):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics {names} have no leaders after {timeout_s} s")
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        return list(names)

    @staticmethod
    async def _ready(admin: Any, names: tuple[str, ...], partitions: int) -> bool:
        described = await admin.describe_topics(list(names))
        for topic in described:
            parts = topic.get("partitions") or []
            if topic.get("error_code") or len(parts) != partitions:
                return False
            if any(p.get("leader", -1) < 0 for p in parts):
                return False
        return len(described) == len(names)

    def partition_count(self, topic: str) -> int:
        async def count() -> int:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                (described,) = await admin.describe_topics([topic])
            finally:
                await admin.close()
            return len(described.get("partitions") or [])

        return run_sync(count())


@pytest.fixture(scope="session")
def kafka_admin(settings: Settings) -> KafkaAdmin:
    from services.kafka import describe_cluster

    error: Exception | None = None
    brokers: list[object] = []
    try:
        brokers = run_sync(describe_cluster(settings.kafka_servers, 10.0))
    except Exception as e:
        error = e
    if not brokers:
        message = f"Kafka at {settings.kafka_servers} does not answer ({error}): {HINT}"
        pytest.fail(message, pytrace=False)
    return KafkaAdmin(settings.kafka_servers)
