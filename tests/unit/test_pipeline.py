"""The batch processor's orchestration, with a deterministic encoder and an in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from neo4j.exceptions import ClientError, ServiceUnavailable
from prometheus_client import CollectorRegistry

from config.settings import Settings
from encoder.protocol import HashingEncoder
from graph.store import ApplyResult, GraphBatch
from stream.dead_letters import DeadLetterSink
from stream.derived import DerivedWork
from stream.lifecycle import CurrentEncoder, StopSignal, WorkerPools
from stream.metrics import Metrics
from stream.pipeline import BatchProcessor, RawRecord
from stream.retry import is_transient
from stream.validation import read_dead_letter

TS = 1_700_000_000.0


class MemoryStore:
    """Records what the processor asks of a store; fails on demand."""

    def __init__(self, embedded: set[str] | None = None) -> None:
        self.embedded = embedded or set()
        self.batches: list[GraphBatch] = []
        self.fail_transient = 0
        self.poison_event_ids: set[str] = set()
        self.refreshes = 0

    def embedded_items(self, item_ids: Sequence[str], version: str) -> set[str]:
        return {i for i in item_ids if i in self.embedded}

    def apply_batch(self, batch: GraphBatch) -> ApplyResult:
        batch = batch.resolved()  # as GraphStore does once it holds its locks
        if self.fail_transient:
            self.fail_transient -= 1
            raise ServiceUnavailable("neo4j is down")
        if any(e.event_id in self.poison_event_ids for e in batch.events):
            raise ClientError("property value too large")
        self.batches.append(batch)
        return ApplyResult(applied=len(batch.events), duplicates=0, rows={"events": 0})

    def refresh_dirty(self, version: str, limit: int = 1000) -> int:
        self.refreshes += 1
        return 0

    @property
    def applied_ids(self) -> list[str]:
        return [e.event_id for b in self.batches for e in b.events]


def event(n: int, etype: str = "click", **extra: object) -> dict:
    return {
        "event_id": f"e{n}",
        "user_id": f"u{n % 3}",
        "item_id": f"i{n % 5}",
        "type": etype,
        "ts": TS + n,
        **extra,
    }


def record(value: object, offset: int, topic: str = "clicks") -> RawRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return RawRecord(topic=topic, partition=0, offset=offset, key=b"k", value=raw)


def make(
    store: MemoryStore,
    encoder: CurrentEncoder | None = None,
    sink: DeadLetterSink | None = None,
) -> tuple[BatchProcessor, list[bytes]]:
    """A processor and the dead letters it sent (to ``sink`` instead, when given)."""
    dead: list[bytes] = []

    async def collect(values: Sequence[bytes]) -> None:
        dead.extend(values)

    settings = Settings(write_retry_max_s=0.01)
    pools = WorkerPools.open()
    proc = BatchProcessor(
        settings,
        store,  # type: ignore[arg-type]
        encoder or CurrentEncoder(HashingEncoder()),
        sink or collect,
        Metrics.create(CollectorRegistry()),
        executor=pools.graph,
        encode_executor=pools.encode,
        clock=lambda: TS + 100,
    )
    return proc, dead


def derived(store: MemoryStore) -> DerivedWork:
    pools = WorkerPools.open()
    return DerivedWork(
        Settings(write_retry_max_s=0.01),
        store,  # type: ignore[arg-type]
        CurrentEncoder(HashingEncoder()),
        Metrics.create(CollectorRegistry()),
        StopSignal(),
        executor=pools.refresh,
        encode_executor=pools.encode,
    )


def test_invalid_records_are_dead_lettered_and_the_rest_applied() -> None:
    store = MemoryStore()
    proc, dead = make(store)
    records = [
        record(event(1), 0),
        record(b"{not json", 1),
        record(event(2, etype="purchase"), 2),  # a purchase on the clicks topic
        record(event(3), 3),
    ]
    out = asyncio.run(proc.process(records))
    assert store.applied_ids == ["e1", "e3"]
    assert (out.applied, out.invalid, out.dead_lettered) == (2, 2, 2)
    reasons = [read_dead_letter(v)[1]["reason"] for v in dead]
    assert reasons == ["not_json", "wrong_topic"]
    original, meta = read_dead_letter(dead[0])
    assert original == b"{not json"
    assert (meta["topic"], meta["partition"], meta["offset"]) == ("clicks", 0, 1)
    assert store.refreshes == 0  # derived data is refreshed beside the batches
    assert asyncio.run(derived(store).refresh()) == 0 and store.refreshes == 1


def test_transient_write_errors_are_retried_until_written() -> None:
    store = MemoryStore()
    store.fail_transient = 3
    proc, dead = make(store)
    out = asyncio.run(proc.process([record(event(1), 0), record(event(2), 1)]))
    assert store.applied_ids == ["e1", "e2"]
    assert out.applied == 2 and not dead


def test_a_poison_event_is_isolated_and_dead_lettered_alone() -> None:
    store = MemoryStore()
    store.poison_event_ids = {"e5"}
    proc, dead = make(store)
    records = [record(event(n), n) for n in range(8)]
    out = asyncio.run(proc.process(records))
    assert sorted(store.applied_ids) == [f"e{n}" for n in range(8) if n != 5]
    assert out.dead_lettered == 1
    original, meta = read_dead_letter(dead[0])
    assert meta["reason"] == "write_failed" and meta["offset"] == 5
    assert orjson.loads(original or b"")["event_id"] == "e5"


def test_only_items_without_a_current_embedding_are_encoded() -> None:
    store = MemoryStore(embedded={"i1"})
    proc, _ = make(store)
    records = [
        record(event(1, title="red kettle"), 0),  # i1: already embedded
        record(event(2, title="blue mug", text="cheap mug"), 1),  # i2: new, plus a query text
        record({"item_id": "i9", "title": "green lamp"}, 2, topic="items"),
    ]
    asyncio.run(proc.process(records))
    (batch,) = store.batches
    assert set(batch.item_embeddings) == {"i2", "i9"}
    assert set(batch.text_embeddings) == {"e2"}
    assert batch.model_version == "hashing-v1"
    assert [i.item_id for i in batch.items] == ["i9"]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ServiceUnavailable("down"), True),
        (ClientError("bad"), False),
        (ConnectionResetError(), True),
        (ValueError("x"), False),
    ],
)
def test_transient_classification(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


class BrokenEncoder(HashingEncoder):
    def encode(self, texts: Sequence[str]):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory")


def test_an_encoder_failure_fails_the_batch_whole_and_dead_letters_nothing() -> None:
    """The encoder runs beside the write transaction; its failure is not the records' fault."""
    from stream.pipeline import EncodingFailed

    store = MemoryStore()
    current = CurrentEncoder(BrokenEncoder())
    proc, dead = make(store, current)
    with pytest.raises(EncodingFailed, match="CUDA out of memory"):
        asyncio.run(proc.process([record(event(1, title="blue mug"), 0)]))
    assert store.batches == [] and dead == []
    asyncio.run(current.swap(HashingEncoder()))  # the agent retries the batch: now it is written
    out = asyncio.run(proc.process([record(event(1, title="blue mug"), 0)]))
    assert out.applied == 1 and set(store.batches[0].item_embeddings) == {"i1"}


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_dead_letters_carry_key_and_timestamp_and_a_retried_batch_sends_and_counts_once() -> None:
    store = MemoryStore()
    proc, dead = make(store)
    bad = RawRecord("clicks", 0, 7, key=b"user-9", value=b"{oops", timestamp=TS + 1.5)
    records = [record(event(1), 6), bad]
    asyncio.run(proc.process(records))
    asyncio.run(proc.process(records))  # the agent retries a failed batch whole
    assert len(dead) == 1
    original, meta = read_dead_letter(dead[0])
    assert original == b"{oops" and meta["key"] == "user-9"
    assert meta["source_timestamp"] == round((TS + 1.5) * 1000)
    assert _sample(proc.metrics, "tastegraph_invalid_events_total", reason="not_json") == 1


def test_a_poison_record_counts_one_write_failure() -> None:
    store = MemoryStore()
    store.poison_event_ids = {"e3"}
    proc, dead = make(store)
    asyncio.run(proc.process([record(event(n), n) for n in range(8)]))
    assert len(dead) == 1
    assert (
        _sample(proc.metrics, "tastegraph_neo4j_write_failures_total", reason="client_error") == 1
    )


def test_an_item_tombstone_deletes_the_item() -> None:
    store = MemoryStore()
    proc, dead = make(store)
    items = [
        RawRecord("items", 0, 0, key=b"i1", value=orjson.dumps({"item_id": "i1", "title": "mug"})),
        RawRecord("items", 0, 1, key=b"i1", value=None),
        RawRecord("items", 0, 2, key=None, value=None),
    ]
    out = asyncio.run(proc.process(items))
    got = store.batches[0].items
    assert [(i.item_id, i.deleted) for i in got] == [("i1", False), ("i1", True)]
    assert out.invalid == 1  # a tombstone without a key deletes nothing
    assert [read_dead_letter(v)[1]["reason"] for v in dead] == ["empty"]


class OneBadTextEncoder(HashingEncoder):
    def encode(self, texts: Sequence[str]):  # type: ignore[no-untyped-def]
        if any("boom" in t for t in texts):
            raise ValueError("cannot tokenize")
        return super().encode(texts)


def test_a_text_the_encoder_refuses_is_isolated_and_the_rest_encoded() -> None:
    store = MemoryStore()
    proc, dead = make(store, CurrentEncoder(OneBadTextEncoder()))
    records = [
        record(event(1, title="blue mug"), 0),
        record(event(2, title="boom box"), 1),  # item i2
        record(event(3, text="red boom"), 2),
    ]
    out = asyncio.run(proc.process(records))
    assert out.applied == 3  # applied, without the refused texts' embeddings
    assert set(store.batches[0].item_embeddings) == {"i1"}
    assert set(store.batches[0].text_embeddings) == set()
    metas = sorted((m["offset"], m["reason"]) for _, m in map(read_dead_letter, dead))
    assert metas == [(1, "encode_failed"), (2, "encode_failed")]


def test_an_error_that_is_not_the_databases_is_retried_a_bounded_number_of_times() -> None:
    from stream.retry import MAX_OTHER_ATTEMPTS, retry_transient

    calls = 0

    async def disk_full() -> None:
        nonlocal calls
        calls += 1
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        asyncio.run(retry_transient(disk_full, max_delay=0.001, first_delay=0.001))
    assert calls == MAX_OTHER_ATTEMPTS

    outage = 0

    async def neo4j_down_then_up() -> str:
        nonlocal outage
        outage += 1
        if outage <= 2 * MAX_OTHER_ATTEMPTS:
            raise ServiceUnavailable("down")  # the database: waited for without end
        return "written"

    assert asyncio.run(retry_transient(neo4j_down_then_up, max_delay=0.001, first_delay=0.001)) == (
        "written"
    )
