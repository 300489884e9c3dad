"""Topic creation: create the topics tastegraph needs when they are missing, never touch others.

`ensure_topics` is synchronous (the CLI and the worker call it before their event loop starts; from
inside a running loop it runs in a helper thread); `ensure_topics_async` is the coroutine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from config.exceptions import ServicesError
from config.logs import kv
from config.settings import Settings
from stream.kafka_connection import check_connection, client_options

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


def topic_configs(settings: Settings, name: str, compact: bool) -> dict[str, str]:
    """The configs a new topic gets: the items topic (or ``compact=True``) is compacted."""
    if compact or name == settings.topic_items:
        return {"cleanup.policy": "compact"}
    return {}


async def ensure_topics_async(
    settings: Settings,
    names: Iterable[str],
    *,
    compact: bool = False,
    partitions: int | None = None,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Creates the missing topics among ``names``; returns the names it created.

    New topics get ``partitions`` (default ``settings.topic_partitions``) partitions and a
    replication factor of min(3, brokers). Existing topics are left as they are, whatever their
    partition count. A topic created concurrently by someone else counts as existing.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaConnectionError, KafkaError

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=30000)
    try:
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in wanted if n not in existing]
            if not missing:
                return []
            brokers = (await admin.describe_cluster()).get("brokers") or [None]
            replication = min(3, len(brokers))
            new = [
                NewTopic(
                    name,
                    partitions or settings.topic_partitions,
                    replication,
                    topic_configs={**topic_configs(settings, name, compact), **(configs or {})},
                )
                for name in missing
            ]
            response = await admin.create_topics(new)
            created = []
            for error in response.topic_errors:
                name, code = error[0], error[1]
                if code == 0:
                    created.append(name)
                elif code != _TOPIC_ALREADY_EXISTS:
                    message = error[2] if len(error) > 2 else ""
                    raise ServicesError(
                        f"Kafka refused to create topic {name!r}: error {code} {message}"
                    )
            await _wait_for_leaders(admin, created)
        except KafkaError as e:
            if isinstance(e, KafkaConnectionError):  # aiokafka logs the cause; say it
                await check_connection(settings)
            raise ServicesError(
                f"could not create topics {wanted} on Kafka at {settings.kafka_servers}: {e}"
            ) from e
    finally:
        await admin.close()
    if created:
        log.info(
            "created topics %s",
            kv(
                topics=",".join(created),
                partitions=partitions or settings.topic_partitions,
                replication=replication,
            ),
        )
    return created


async def _wait_for_leaders(admin: Any, names: list[str], deadline_s: float = 15.0) -> None:
    """Waits until every partition of the new topics has a leader, so the first produce does not
    bounce off NotLeaderForPartition (polls metadata, bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while names and loop.time() < deadline:
        topics = await admin.describe_topics(names)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
            for t in topics
        ):
            return
        await asyncio.sleep(0.1)


async def topic_partitions(settings: Settings, names: Iterable[str]) -> dict[str, list[int]]:
    """Partition numbers of the topics among ``names`` that exist (never auto-creates one)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError, KafkaError

    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        present = [n for n in dict.fromkeys(names) if n in existing]
        topics = await admin.describe_topics(present) if present else []
    except KafkaError as e:
        if isinstance(e, KafkaConnectionError):  # aiokafka logs the cause; say it
            await check_connection(settings)
        raise ServicesError(f"cannot reach Kafka at {settings.kafka_servers}: {e}") from e
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in topics}


def ensure_topics(
    settings: Settings,
    names: Iterable[str],
    *,
    compact: bool = False,
    partitions: int | None = None,
    configs: Mapping[str, str] | None = None,
) -> list[str]:
    """Synchronous `ensure_topics_async`; safe to call whether or not an event loop runs."""
    coro_args: dict[str, Any] = {"compact": compact, "partitions": partitions, "configs": configs}
    names = list(names)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(ensure_topics_async(settings, names, **coro_args))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ensure_topics_async(settings, names, **coro_args)).result()
