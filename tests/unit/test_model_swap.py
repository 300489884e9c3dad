"""Fine-tuning in the worker: the examples feed, the swap between batches, the background
re-embedding and the periodic fine-tuning agent — with fakes (no Kafka, Neo4j or torch)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from config.settings import Settings
from encoder.example_store import ExampleStore, read_examples
from encoder.examples import ExampleBuilder, ExampleCollector
from encoder.protocol import HashingEncoder, TextEncoder
from encoder.registry import ModelRegistry
from encoder.serving import serving_reports
from finetuning.job import FinetuneResult
from graph.store import ApplyResult, GraphBatch
from stream.app import PeriodicFinetune
from stream.derived import DerivedWork
from stream.lifecycle import CurrentEncoder, StopSignal, WorkerPools
from stream.metrics import Metrics
from stream.model_swap import ModelSwapper
from stream.pipeline import BatchProcessor, RawRecord

TS = 1_700_000_000.0
OLD, NEW = HashingEncoder(version="hash-v1"), HashingEncoder(version="hash-v2")


class FakeStore:
    """An in-memory graph: item versions and texts, user versions and dirty flags."""

    def __init__(self) -> None:
        self.batches: list[GraphBatch] = []
        self.items: dict[str, tuple[str, str]] = {}  # item_id -> (embedding_version, text)
        self.users: dict[str, tuple[str, bool]] = {}  # user_id -> (embedding_version, dirty)
        self.gate: threading.Event | None = None  # apply_batch waits on it when set
        self.writing = threading.Event()
        self.applied: set[str] = set()

    def embedded_items(self, item_ids: Sequence[str], version: str) -> set[str]:
        return {i for i in item_ids if self.items.get(i, ("", ""))[0] == version}

    def apply_batch(self, batch: GraphBatch) -> ApplyResult:
        self.writing.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        batch = batch.resolved()  # as GraphStore does once it holds its locks
        self.batches.append(batch)
        for item_id in batch.item_embeddings:
            self.items[item_id] = (batch.model_version, self.items.get(item_id, ("", ""))[1])
        fresh = [e for e in batch.events if e.event_id not in self.applied]
        self.applied |= {e.event_id for e in fresh}
        return ApplyResult(applied=len(fresh), duplicates=len(batch.events) - len(fresh))

    def refresh_dirty(self, version: str, limit: int = 1000) -> int:
        dirty = [u for u, (_, d) in self.users.items() if d][:limit]
        for u in dirty:
            self.users[u] = (version, False)
        return len(dirty)

    def item_texts(self, item_ids: Sequence[str]) -> dict[str, str]:
        return {i: self.items[i][1] for i in item_ids if i in self.items and self.items[i][1]}

    def stale_items(self, version: str, limit: int = 200) -> list[tuple[str, str]]:
        stale = [(i, t) for i, (v, t) in sorted(self.items.items()) if v != version and t]
        return stale[:limit]

    def set_item_embeddings(self, embeddings: Mapping[str, Any], version: str) -> int:
        for item_id in embeddings:
            self.items[item_id] = (version, self.items[item_id][1])
        return len(embeddings)

    def mark_stale_users_dirty(self, version: str, limit: int = 1000) -> int:
        stale = [u for u, (v, d) in sorted(self.users.items()) if v != version and not d][:limit]
        for u in stale:
            self.users[u] = (self.users[u][0], True)
        return len(stale)


def raw(n: int, etype: str = "click", topic: str = "clicks", **extra: object) -> RawRecord:
    value = {
        "event_id": f"e{n}",
        "user_id": f"u{n % 2}",
        "item_id": f"i{n}",
        "type": etype,
        "ts": TS + n,
        **extra,
    }
    return RawRecord(topic=topic, partition=0, offset=n, key=b"k", value=orjson.dumps(value))


def processor(
    store: FakeStore, encoder: TextEncoder = OLD, examples: ExampleCollector | None = None
) -> BatchProcessor:
    return worker(store, encoder, examples)[0]


def worker(
    store: FakeStore, encoder: TextEncoder = OLD, examples: ExampleCollector | None = None
) -> tuple[BatchProcessor, DerivedWork]:
    """The batch path and the derived-data work around one current encoder, as the runtime
    builds them."""

    async def sink(values: Sequence[bytes]) -> None:
        pass

    settings = Settings(write_retry_max_s=0.01)
    pools = WorkerPools.open()
    current = CurrentEncoder(encoder)
    metrics = Metrics.create(CollectorRegistry())
    proc = BatchProcessor(
        settings,
        store,  # type: ignore[arg-type]
        current,
        sink,
        metrics,
        executor=pools.graph,
        encode_executor=pools.encode,
        clock=lambda: TS + 100,
        examples=examples,
    )
    derived = DerivedWork(
        settings,
        store,  # type: ignore[arg-type]
        current,
        metrics,
        StopSignal(),
        executor=pools.refresh,
        encode_executor=pools.encode,
    )
    return proc, derived


def collector(path: Path | None = None) -> ExampleCollector:
    return ExampleCollector(ExampleStore(100, path=path), ExampleBuilder(context_n=3))


# -- the examples feed -----------------------------------------------------------------------


def test_written_events_with_text_feed_the_collector_in_event_time_order(tmp_path: Path) -> None:
    coll = collector(tmp_path / "examples.jsonl")
    store = FakeStore()
    store.items["i8"] = ("hash-v1", "Yellow cup")  # catalogued by an earlier batch
    proc = processor(store, examples=coll)
    item = orjson.dumps({"item_id": "i4", "title": "Red mug", "category": "kitchen"})
    records = [
        # arrival order differs from event time: the collector sees u0's events by ts
        raw(4, "purchase", "purchases"),  # text from the batch's catalogue record
        raw(0, title="Blue teapot"),
        raw(2, title="Green kettle"),
        raw(6),  # no text anywhere: skipped
        raw(8, "purchase", "purchases"),  # text from the graph
        RawRecord("items", 0, 0, b"i4", item),
    ]
    asyncio.run(proc.process(records))
    coll.store.close()
    got = [(ex.user_id, ex.item_id, ex.item_text, ex.context) for ex in coll.store]
    assert [g[:3] for g in got] == [
        ("u0", "i2", "Green kettle"),
        ("u0", "i4", "Red mug | kitchen"),
        ("u0", "i8", "Yellow cup"),
    ]
    assert got[1][3].startswith("Green kettle")  # most recent first
    # the same events again (a replay, a batch re-read after a crash): all duplicates, no examples
    asyncio.run(proc.process(records))
    assert coll.store.added_total == 3
    # flushed: another reader sees them on disk
    assert [ex.item_id for ex in read_examples(tmp_path / "examples.jsonl")] == ["i2", "i4", "i8"]


def test_without_a_collector_nothing_is_collected_and_a_failing_one_never_fails_a_batch() -> None:
    store = FakeStore()
    asyncio.run(processor(store).process([raw(0, title="a"), raw(2, title="b")]))
    assert len(store.batches) == 1

    class Broken(ExampleCollector):
        def observe(self, *a: Any, **k: Any) -> None:
            raise OSError("disk full")

    store = FakeStore()
    proc = processor(store, examples=Broken(ExampleStore(10)))
    out = asyncio.run(proc.process([raw(0, title="a"), raw(2, title="b")]))
    assert out.applied == 2 and len(store.batches) == 1


# -- the swap between batches ----------------------------------------------------------------


def test_a_swap_waits_for_the_running_batch_and_the_next_batch_uses_the_new_version() -> None:
    store = FakeStore()
    store.gate = threading.Event()
    proc, derived = worker(store)

    async def scenario() -> list[str]:
        first = asyncio.create_task(proc.process([raw(0, title="a")]))
        while not store.writing.is_set():  # the batch is inside its graph write
            await asyncio.sleep(0.005)
        swap = asyncio.create_task(derived.swap_encoder(NEW))
        await asyncio.sleep(0.05)
        assert not swap.done() and proc.encoder.encoder is OLD  # not in the middle of a batch
        store.gate.set()  # type: ignore[union-attr]
        await first
        assert await swap == "hash-v1"
        await proc.process([raw(1, title="b")])
        return [b.model_version for b in store.batches]

    assert asyncio.run(scenario()) == ["hash-v1", "hash-v2"]
    assert store.items == {"i0": ("hash-v1", ""), "i1": ("hash-v2", "")}


def _registry_with_candidate(root: Path) -> tuple[ModelRegistry, str]:
    registry = ModelRegistry(root, base_source="fake-base")
    info = registry.create_version("base", 10)
    (info.path / "model.safetensors").write_bytes(b"weights")
    registry.update(info.version, status="candidate")
    return registry, info.version


class RecordingMetrics:
    def __init__(self) -> None:
        self.versions: list[str] = []
        self.wanted: list[str | None] = []
        self.load_failures: list[str] = []
        self.runs: list[tuple[str, float, Any]] = []

    def set_model_version(self, version: str, wanted: str | None = None) -> None:
        self.versions.append(version)
        self.wanted.append(wanted)

    def model_load_failed(self, version: str) -> None:
        self.load_failures.append(version)

    def finetune_run(self, result: str, seconds: float, evaluation: Any = None) -> None:
        self.runs.append((result, seconds, evaluation))


def test_a_promoted_version_is_loaded_swapped_in_and_old_nodes_re_embedded(
    tmp_path: Path,
) -> None:
    store = FakeStore()
    store.items = {f"i{n}": ("hash-v1", f"text {n}") for n in range(5)}
    store.items["bare"] = ("hash-v1", "")  # no text: left as it is
    store.users = {f"u{n}": ("hash-v1", False) for n in range(3)}
    proc, derived = worker(store)
    registry, version = _registry_with_candidate(tmp_path)
    loaded: list[str] = []
    fail = [True]

    def load(ref: str) -> TextEncoder:
        loaded.append(ref)
        if fail[0]:
            raise RuntimeError("torn weights")
        return NEW

    metrics = RecordingMetrics()
    swapper = ModelSwapper(derived, registry, load, metrics, reembed_limit=2)

    async def scenario() -> None:
        assert await swapper.poll() is None  # nothing promoted; nothing stale of hash-v1
        assert store.items["i0"][0] == "hash-v1"
        registry.promote(version)
        assert await swapper.poll() is None  # the load failed: still on the old encoder
        assert proc.encoder.encoder is OLD and metrics.load_failures == [version]
        # the truth: base serves, the promoted version is wanted
        assert (metrics.versions[-1], metrics.wanted[-1]) == ("base", version)
        (report,) = serving_reports(registry)
        assert (report.serving, report.wanted, report.failures) == ("base", version, 1)
        fail[0] = False
        assert await swapper.poll() == version  # retried on the next poll
        assert proc.encoder.encoder is NEW
        assert (metrics.versions[-1], metrics.wanted[-1]) == (version, version)
        assert serving_reports(registry)[0].in_step
        assert loaded == [str(registry.get(version).path)] * 2
        polls = 0
        while swapper.reembedding:  # bounded steps until nothing stale is left
            await swapper.poll()
            polls += 1
            assert polls < 20
            await derived.refresh(100)
        # 5 items in chunks of 2, then 3 users in chunks of 2, then a step that finds nothing
        assert polls == 3 + 2 + 1

    asyncio.run(scenario())
    assert {i: v for i, (v, _) in store.items.items()} == {
        **{f"i{n}": "hash-v2" for n in range(5)},
        "bare": "hash-v1",
    }
    assert store.users == {f"u{n}": ("hash-v2", False) for n in range(3)}


def test_a_version_that_fails_at_start_up_is_retried_with_back_off_and_nothing_re_embedded(
    tmp_path: Path,
) -> None:
    """The worker started on its fallback (the current version did not load): it says so, counts,
    retries after 1, 2, 4 polls, and never moves the graph onto the fallback meanwhile."""
    store = FakeStore()
    store.items = {"i0": ("hash-v2", "text 0")}  # embedded by the wanted version before
    proc, derived = worker(store)  # serving OLD (hash-v1), the fallback
    registry, version = _registry_with_candidate(tmp_path)
    registry.promote(version)
    attempts: list[int] = []
    fail = [True]
    polls = [0]

    def load(ref: str) -> TextEncoder:
        attempts.append(polls[0])
        if fail[0]:
            raise RuntimeError("torn weights")
        return NEW

    metrics = RecordingMetrics()
    swapper = ModelSwapper(
        derived, registry, load, metrics, reembed_limit=10, load_error="RuntimeError('x')"
    )
    assert swapper.version is None and not swapper.reembedding
    assert metrics.load_failures == [version] and metrics.wanted[-1] == version

    async def scenario() -> None:
        for n in range(1, 9):
            polls[0] = n
            assert await swapper.poll() is None
        assert proc.encoder.encoder is OLD
        assert store.items["i0"][0] == "hash-v2"  # not re-embedded with the fallback
        fail[0] = False
        for n in range(9, 20):
            polls[0] = n
            if await swapper.poll() == version:
                return
        raise AssertionError("never swapped")

    asyncio.run(scenario())
    # after the start-up failure: tries at polls 1, 3, 7, 15 (waits of 0, 1, 3 and 7 polls)
    assert attempts == [1, 3, 7, 15]
    assert proc.encoder.encoder is NEW and swapper.reembedding
    assert metrics.load_failures == [version] * 4
    (report,) = serving_reports(registry)
    assert report.in_step and report.failures == 0 and report.error == ""
    swapper.close()  # a clean stop takes the report away
    assert serving_reports(registry) == []


# -- the periodic fine-tuning agent ----------------------------------------------------------


def test_periodic_finetune_runs_after_enough_new_examples_and_records_metrics(
    tmp_path: Path,
) -> None:
    coll = collector(tmp_path / "examples.jsonl")
    proc = processor(FakeStore(), examples=coll)
    settings = Settings(finetune_min_examples=2, finetune_enabled=1)
    outcomes = ["skipped", "rejected"]
    calls: list[int] = []

    async def run(s: Settings) -> FinetuneResult:
        calls.append(len(list(read_examples(tmp_path / "examples.jsonl"))))
        return FinetuneResult(
            outcomes.pop(0), "ft-0001", "base", {"hr@10": 0.1}, {"hr@10": 0.09}, seconds=1.5
        )

    metrics = RecordingMetrics()
    agent = PeriodicFinetune(settings, coll, metrics, run=run)

    async def scenario() -> None:
        assert await agent.tick() is None  # no examples yet
        await proc.process([raw(0, title="a"), raw(2, title="b"), raw(4, title="c")])
        assert len(coll.store) == 2
        assert (await agent.tick()).result == "skipped"  # type: ignore[union-attr]
        # a skipped run does not consume the examples: the next tick tries again
        assert (await agent.tick()).result == "rejected"  # type: ignore[union-attr]
        assert await agent.tick() is None  # nothing new since the real run

    asyncio.run(scenario())
    coll.store.close()
    assert calls == [2, 2]  # the child sees the examples on disk
    assert [r[0] for r in metrics.runs] == ["skipped", "rejected"]
    assert metrics.runs[1][2] == {"current": {"hr@10": 0.1}, "candidate": {"hr@10": 0.09}}
    assert np.isclose(metrics.runs[1][1], 1.5)


def test_periodic_finetune_with_the_real_job_reads_what_the_worker_collected(
    tmp_path: Path,
) -> None:
    # too few examples for a held-out slice: the real run_finetune skips without a child process
    from finetuning.stores import example_collector_for

    settings = Settings(home=tmp_path, finetune_min_examples=1, finetune_enabled=1)
    coll = example_collector_for(settings)
    proc = processor(FakeStore(), examples=coll)
    metrics = RecordingMetrics()
    agent = PeriodicFinetune(settings, coll, metrics)

    async def scenario() -> Any:
        await proc.process([raw(0, title="a"), raw(2, title="b"), raw(4, title="c")])
        return await agent.tick()

    result = asyncio.run(scenario())
    coll.store.close()
    assert result.result == "skipped" and "too few examples" in result.reason
    assert result.examples + result.held_out == 2  # both examples reached the job
    assert [r[0] for r in metrics.runs] == ["skipped"]
