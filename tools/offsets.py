"""The worker's consumer group (``TASTEGRAPH_APP_ID``): its committed offsets, and moving them.

`tastegraph offsets` (cli/offsets.py) calls these. Moving a group's offsets is refused while the
group has members: Kafka would overwrite the new offsets with the running workers' next commit.
Offsets are committed the way Kafka's own tools do for a group nobody consumes in: a consumer with
the group's id, partitions assigned by hand (no group membership), one commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from config.settings import Settings
from stream.exceptions import OffsetsError
from stream.kafka_connection import check_connection, client_options

T = TypeVar("T")
EARLIEST = "earliest"
LATEST = "latest"
IDLE_STATES = {"Empty", "Dead"}  # a group with no members


@dataclass(frozen=True)
class PartitionOffsets:
    topic: str
    partition: int
    committed: int | None  # the group's next offset to read; None: nothing committed
    start: int  # the earliest offset Kafka still holds
    end: int  # the offset the next record will get

    @property
    def lag(self) -> int:
        """Records the group has not read yet (from ``start`` when it committed nothing)."""
        return self.end - (self.start if self.committed is None else self.committed)


@dataclass(frozen=True)
class GroupState:
    state: str  # Kafka's: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead
    members: int


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def group_state(settings: Settings) -> GroupState:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError

    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        (response,) = await admin.describe_consumer_groups([settings.app_id])
    except KafkaConnectionError as e:  # aiokafka logs the cause; say it
        await check_connection(settings)
        raise OffsetsError(f"cannot reach Kafka at {settings.kafka_servers}: {e}") from e
    finally:
        await admin.close()
    # DescribeGroupsResponse: (error_code, group_id, state, protocol_type, protocol, members, ...)
    group = response.groups[0]
    return GroupState(state=group[2], members=len(group[5]))


async def describe_offsets(settings: Settings, topics: Sequence[str]) -> list[PartitionOffsets]:
    """The group's committed offset and the start and end of every partition of ``topics``."""
    consumer = await _consumer(settings)
    try:
        partitions = await _partitions(settings, topics)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        out = []
        for tp in partitions:
            committed = await consumer.committed(tp)
            out.append(PartitionOffsets(tp.topic, tp.partition, committed, starts[tp], ends[tp]))
        return out
    finally:
        await consumer.stop()


async def reset_offsets(
    settings: Settings, topics: Sequence[str], to: str | float, apply: bool
) -> list[tuple[PartitionOffsets, int]]:
    """Where the group would resume (``to``: ``EARLIEST``, ``LATEST`` or epoch seconds, the first
    record at or after that time, the end where there is none), per partition; committed when
    ``apply``. Refuses while the group has members."""
    if apply:
        state = await group_state(settings)
        if state.state not in IDLE_STATES or state.members:
            raise OffsetsError(
                f"consumer group {settings.app_id!r} has {state.members} active member(s) "
                f"(state {state.state}): stop every worker of TASTEGRAPH_APP_ID={settings.app_id} "
                "first"
            )
    consumer = await _consumer(settings)
    try:
        partitions = await _partitions(settings, topics)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        if to == EARLIEST:
            targets = dict(starts)
        elif to == LATEST:
            targets = dict(ends)
        else:
            found = await consumer.offsets_for_times(
                {tp: int(float(to) * 1000) for tp in partitions}
            )
            targets = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in partitions}
        plan = []
        for tp in partitions:
            committed = await consumer.committed(tp)
            now = PartitionOffsets(tp.topic, tp.partition, committed, starts[tp], ends[tp])
            plan.append((now, targets[tp]))
        if apply:
            consumer.assign(partitions)
            await consumer.commit({tp: targets[tp] for tp in partitions})
        return plan
    finally:
        await consumer.stop()


async def _consumer(settings: Settings) -> Any:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaConnectionError, KafkaError

    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
    except KafkaError as e:
        await consumer.stop()
        if isinstance(e, KafkaConnectionError):  # aiokafka logs the cause; say it
            await check_connection(settings)
        raise OffsetsError(f"cannot reach Kafka at {settings.kafka_servers}: {e}") from e
    return consumer


async def _partitions(settings: Settings, topics: Sequence[str]) -> list[Any]:
    from aiokafka import TopicPartition

    from stream.topics import topic_partitions

    found = await topic_partitions(settings, topics)
    missing = [t for t in topics if t not in found]
    if missing:
        raise OffsetsError(f"no such topic: {', '.join(missing)}")
    return [TopicPartition(topic, p) for topic in topics for p in found[topic]]
