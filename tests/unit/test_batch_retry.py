"""The agent's retry of a whole batch (`stream.batch_retry`): outages waited for, other failures
bounded, then the failing records isolated and dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka.errors import KafkaConnectionError
from neo4j.exceptions import ClientError, ServiceUnavailable
from test_pipeline import MemoryStore, OneBadTextEncoder, _sample, event, make, record

from stream.batch_retry import PROCESS_FAILED, BatchRetry
from stream.lifecycle import CurrentEncoder
from stream.retry import MAX_OTHER_ATTEMPTS, is_outage
from stream.validation import read_dead_letter

DEADLINE_S = 20.0  # the old agent loop retried these batches without end


class RefusedLookup(MemoryStore):
    """Neo4j refuses, for good, the read of which items need an embedding when it names ``bad``
    (a non-transient database error outside the graph write)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def embedded_items(self, item_ids: Sequence[str], version: str) -> set[str]:
        self.lookups += 1
        if "bad" in item_ids:
            raise ClientError("the lookup is refused")
        return super().embedded_items(item_ids, version)


def _run(retry: BatchRetry, records: Sequence[object]) -> None:
    asyncio.run(asyncio.wait_for(retry.settle(records), DEADLINE_S))  # type: ignore[arg-type]


def test_a_batch_failing_outside_the_write_for_good_is_bounded_and_isolated() -> None:
    store = RefusedLookup()
    proc, dead = make(store)
    retry = BatchRetry(proc, proc.metrics, max_delay=0.001, first_delay=0.001)
    records = [record(event(n, title=f"mug {n}"), n) for n in range(6)]
    records[3] = record(dict(event(3), item_id="bad", title="bad mug"), 3)
    _run(retry, records)
    # every other record applied, in offset order; the failing one dead-lettered once
    assert store.applied_ids == ["e0", "e1", "e2", "e4", "e5"]
    offsets = [e.offset for b in store.batches for e in b.events]
    assert offsets == sorted(offsets)
    ((original, meta),) = [read_dead_letter(v) for v in dead]
    assert meta["reason"] == PROCESS_FAILED and meta["offset"] == 3
    assert original == records[3].value
    assert "the lookup is refused" in meta["detail"]
    assert _sample(proc.metrics, "tastegraph_invalid_events_total", reason=PROCESS_FAILED) == 1
    # bounded: the whole batch MAX_OTHER_ATTEMPTS times, then each part, the lone record again
    assert store.lookups < 4 * MAX_OTHER_ATTEMPTS


def test_a_batchs_only_text_that_the_encoder_refuses_is_isolated() -> None:
    """The encoder's isolation leaves out a refused text unless it is the batch's only one."""
    store = MemoryStore()
    proc, dead = make(store, CurrentEncoder(OneBadTextEncoder()))
    retry = BatchRetry(proc, proc.metrics, max_delay=0.001, first_delay=0.001)
    records = [record(event(1), 0), record(event(2, title="boom box"), 1), record(event(3), 2)]
    _run(retry, records)
    assert store.applied_ids == ["e1", "e3"]
    assert [read_dead_letter(v)[1]["reason"] for v in dead] == [PROCESS_FAILED]


def test_an_unreachable_kafka_or_neo4j_is_waited_for_and_nothing_is_dead_lettered() -> None:
    store = MemoryStore()
    sent: list[bytes] = []
    failures = 3 * MAX_OTHER_ATTEMPTS

    async def kafka_away_then_back(values: Sequence[bytes]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise KafkaConnectionError("no broker")
        sent.extend(values)

    proc, dead = make(store, sink=kafka_away_then_back)
    retry = BatchRetry(proc, proc.metrics, max_delay=0.001, first_delay=0.001)
    _run(retry, [record(event(1), 0), record(b"{oops", 1)])
    assert set(store.applied_ids) == {"e1"}  # written again by each retry (the graph dedupes)
    assert [read_dead_letter(v)[1]["reason"] for v in sent] == ["not_json"]
    assert dead == []
    # counted once, though its batch was decoded once per retry
    assert _sample(proc.metrics, "tastegraph_invalid_events_total", reason="not_json") == 1
    assert is_outage(ServiceUnavailable("down")) and not is_outage(ClientError("refused"))
    assert not is_outage(ValueError("a bug")) and not is_outage(OSError(28, "disk full"))
