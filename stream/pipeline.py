"""The batch path: decode, embed, write to the graph, dead-letter what cannot be applied.

One event's way, in the order of this module: the Faust agent (`stream.app`) hands over a batch of
``RawRecord``s to `BatchProcessor.process`, which decodes and validates them
(`stream.validation`), looks up which items lack a current embedding, starts encoding them on the
encoder's thread, writes the batch to Neo4j (`graph.store.GraphStore.apply_batch`, which waits for
the embeddings once it holds its locks), isolates and dead-letters records the encoder or the graph
refuses (`stream.isolation`), and reports the batch. The agent acks the records only after
``process`` returned, i.e. after the graph write committed. Nothing here blocks the event loop:
the encoder and the (sync) Neo4j driver run in the runtime's threads. Derived data (user
embeddings, similarity) is `stream.derived`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from config.logs import RateLimiter, kv
from config.settings import Settings
from encoder.examples import ExampleCollector
from encoder.protocol import TextEncoder
from graph.model import Event, ItemRecord, item_text
from graph.store import ApplyResult, GraphBatch, GraphStore, Vector
from stream.dead_letters import DeadLetters, DeadLetterSink
from stream.isolation import EncodingFailed, encode_failures, isolate_texts, split_batch
from stream.lifecycle import CurrentEncoder
from stream.metrics import Metrics
from stream.retry import retry_transient
from stream.validation import Invalid, classify, classify_items

log = logging.getLogger("tastegraph.pipeline")
T = TypeVar("T")
INVALID_LOG_INTERVAL_S = 10.0  # at most one "invalid record" line per reason this often

__all__ = ["BatchOutcome", "BatchProcessor", "DeadLetterSink", "EncodingFailed", "RawRecord"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as the agent received it (value undecoded)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None


@dataclass
class BatchOutcome:
    records: int = 0
    applied: int = 0
    duplicates: int = 0
    invalid: int = 0
    dead_lettered: int = 0
    encoded: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    failed_texts: set[str] = field(
        default_factory=set
    )  # item ids and event ids the encoder refused


class BatchProcessor:
    """Processes one micro-batch at a time, from raw records to a committed graph write.

    Called by the Faust agent (`stream.app`), one batch after the other. Built by the runtime
    (`stream.runtime.open_runtime`), which owns and closes what it is given: the ``executor`` for
    the driver's calls, the ``encode_executor`` (the encoder's thread), the dead-letter sink, the
    example collector (None: no fine-tuning examples are collected) and the metrics. Holds the
    current encoder for a whole batch, so a model swap happens only between two batches.
    """

    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        encoder: CurrentEncoder,
        dead_letter: DeadLetterSink,
        metrics: Metrics,
        executor: Executor,
        encode_executor: Executor,
        clock: Callable[[], float] = time.time,
        examples: ExampleCollector | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        # each record dead-lettered and counted once, also when its batch is retried whole
        self.dead_letters = DeadLetters(dead_letter)
        self.metrics = metrics
        self.executor = executor
        self.encode_executor = encode_executor
        self.clock = clock
        self.examples = examples
        # one 'invalid record' line per reason and interval, with how many were held back
        self.invalid_log = RateLimiter(interval_s=INVALID_LOG_INTERVAL_S)

    # -- the batch ---------------------------------------------------------------------------------
    async def process(self, records: Sequence[RawRecord]) -> BatchOutcome:
        async with self.encoder.in_use() as encoder:
            return await self._process(records, encoder)

    async def _process(self, records: Sequence[RawRecord], encoder: TextEncoder) -> BatchOutcome:
        out = BatchOutcome(records=len(records))
        t0 = time.perf_counter()
        events, items, dead = self.decode(records, out)
        t1 = time.perf_counter()
        item_texts, event_texts = await self.texts_to_embed(events, items, encoder.version)
        out.encoded = len(item_texts) + len(event_texts)
        # the encoder works while the write transaction claims, locks and reads
        future = self.start_encoding(encoder, item_texts, event_texts, out)
        batch = GraphBatch(
            events=events,
            items=items,
            model_version=encoder.version,
            pending=future.result,
        )
        try:
            if events or items:
                dead += await self.write(batch, out)
        finally:
            # never leave the encoder's thread busy with this batch behind us
            await asyncio.wait([asyncio.wrap_future(future)])
        future.result()  # an encoder error fails the batch (the agent retries it)
        dead += encode_failures(events, items, out.failed_texts)
        t3 = time.perf_counter()
        stats = getattr(encoder, "stats", None)
        if stats is not None and out.encoded:
            self.metrics.observe_encoder(stats)
        if dead:
            await self.dead_letters.send(records, dead)
            out.dead_lettered = len(dead)
        # a batch whose every event was a duplicate (a replay, a batch re-read after a crash)
        # already fed the collector when it was first written
        if self.examples is not None and out.applied:
            await self._collect_examples(events, items, dead)
        # encode overlaps graph_write, which includes the embedded-items lookup and any wait for
        # the encoder
        out.stages = {
            "decode": t1 - t0,
            "encode": out.stages.get("encode", 0.0),
            "graph_write": t3 - t1,
        }
        self._observe(out, events)
        return out

    # -- stages, in the order of a batch -----------------------------------------------------------
    def decode(
        self, records: Sequence[RawRecord], out: BatchOutcome
    ) -> tuple[list[Event], list[ItemRecord], list[Invalid]]:
        items_topic = self.settings.topic_items
        events, bad = classify(
            ((r.value, r.topic, r.partition, r.offset) for r in records if r.topic != items_topic),
            self.settings,
            now=self.clock(),
        )
        on_items = [r for r in records if r.topic == items_topic]
        items, bad_items = classify_items(
            ((r.value, r.topic, r.partition, r.offset) for r in on_items if r.value is not None),
            self.settings,
        )
        # a tombstone (a key, no value) on the compacted items topic deletes the item
        for r in on_items:
            if r.value is None and r.key:
                item_id = r.key.decode("utf-8", "replace")
                items.append(
                    ItemRecord(
                        item_id, None, None, None, r.topic, r.partition, r.offset, deleted=True
                    )
                )
                log.info(
                    "item tombstone %s",
                    kv(item_id=item_id[:100], partition=r.partition, offset=r.offset),
                )
            elif r.value is None:
                bad_items.append(
                    Invalid(
                        None, "empty", "a tombstone without a key", r.topic, r.partition, r.offset
                    )
                )
        items.sort(key=lambda it: (it.partition, it.offset))  # a tombstone among its item's records
        bad += bad_items
        for b in bad:
            out.invalid += 1
            if not self.dead_letters.first_count(b):
                continue  # counted when its batch was first processed
            self.metrics.invalid(b.reason)
            emit, held = self.invalid_log.hit(b.reason)
            if emit:  # a bad producer does not flood the log: the metric counts every record
                fields = kv(topic=b.topic, partition=b.partition, offset=b.offset, reason=b.reason)
                more = f" held_back={held}" if held else ""
                log.warning("invalid record %s%s", fields, more)
        return events, items, bad

    async def texts_to_embed(
        self, events: Sequence[Event], items: Sequence[ItemRecord], version: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Item texts (item_id -> text) that lack a ``version`` embedding, and event free texts
        (event_id -> text)."""
        texts: dict[str, str] = {}
        for it in items:  # catalogue records: their text may have changed, always (cached) encode
            text = item_text(it.title, it.category, it.description)
            if text:
                texts[it.item_id] = text
        candidates: dict[str, str] = {}
        for ev in events:
            if ev.item_id not in texts and ev.item_id not in candidates:
                text = item_text(ev.title, ev.category, ev.description)
                if text:
                    candidates[ev.item_id] = text
        if candidates:
            # a read of the graph: an unreachable Neo4j stalls the batch here as in `write`
            done = await retry_transient(
                lambda: self._graph(self.store.embedded_items, list(candidates), version),
                max_delay=self.settings.write_retry_max_s,
                on_retry=lambda e: self._graph_retried("read", e),
            )
            texts.update({k: v for k, v in candidates.items() if k not in done})
        return texts, {ev.event_id: ev.text for ev in events if ev.text}

    def start_encoding(
        self,
        encoder: TextEncoder,
        item_texts: dict[str, str],
        event_texts: dict[str, str],
        out: BatchOutcome,
    ) -> Future[tuple[dict[str, Vector], dict[str, Vector]]]:
        """Encodes on the encoder's thread; the future holds (item vectors, text vectors)."""

        def encode() -> tuple[dict[str, Vector], dict[str, Vector]]:
            t0 = time.perf_counter()
            all_texts = list(item_texts.values()) + list(event_texts.values())
            try:
                vectors: Any = encoder.encode(all_texts) if all_texts else []
            except Exception as e:
                vectors = isolate_texts(encoder, all_texts, e)
            n = len(item_texts)
            out.stages["encode"] = time.perf_counter() - t0
            keys = list(item_texts) + list(event_texts)
            out.failed_texts = {k for k, v in zip(keys, vectors, strict=True) if v is None}
            return (
                {k: v for k, v in zip(item_texts, vectors[:n], strict=True) if v is not None},
                {k: v for k, v in zip(event_texts, vectors[n:], strict=True) if v is not None},
            )

        return self.encode_executor.submit(encode)

    async def write(self, batch: GraphBatch, out: BatchOutcome) -> list[Invalid]:
        """Writes the batch, retrying transient errors until it succeeds (backpressure).

        A non-transient failure splits the batch to isolate the records that cause it; those are
        returned as dead letters and everything else is written.
        """

        async def attempt() -> tuple[ApplyResult, float]:
            t0 = time.perf_counter()
            result = await self._graph(self.store.apply_batch, batch)
            return result, time.perf_counter() - t0

        try:
            result, seconds = await retry_transient(
                attempt,
                max_delay=self.settings.write_retry_max_s,
                on_retry=lambda e: self._graph_retried("write", e),
            )
        except EncodingFailed:
            raise
        except Exception as e:
            if batch.pending is not None:
                # isolate with the embeddings in hand (an encoder failure raises here)
                batch = await self._graph(batch.resolved)
            return await self._isolate(batch, e, out)
        self.metrics.observe_write(seconds)
        out.applied += result.applied
        out.duplicates += result.duplicates
        for kind, n in result.rows.items():
            out.rows[kind] = out.rows.get(kind, 0) + n
        return []

    async def _isolate(
        self, batch: GraphBatch, error: Exception, out: BatchOutcome
    ) -> list[Invalid]:
        records: list[Event | ItemRecord] = [*batch.items, *batch.events]
        if len(records) == 1:
            r = records[0]
            detail = f"{type(error).__name__}: {error}"[:500]
            refused = Invalid(None, "write_failed", detail, r.topic, r.partition, r.offset)
            if self.dead_letters.first_count(refused):  # once per record the graph refuses
                self.metrics.write_failure("client_error")
                log.error(
                    "poison record %s", kv(topic=r.topic, partition=r.partition, offset=r.offset)
                )
            return [refused]
        half_items, half_events = split_batch(batch)
        dead = []
        for part in (half_items, half_events):
            if part.events or part.items:
                dead += await self.write(part, out)
        return dead

    async def _collect_examples(
        self, events: Sequence[Event], items: Sequence[ItemRecord], dead: Sequence[Invalid]
    ) -> None:
        """Feeds the batch's written events to the example collector, then flushes it.

        The item text comes from the batch's catalogue record, else the event, else the graph
        (catalogue records win, as in the graph); events of items without text are skipped.

        Runs once per successfully processed batch (a retried batch is fed when it finally
        succeeds); dead-lettered events are left out. Every event type is fed: the collector's
        builder makes examples of clicks and purchases and keeps the others as context. A failure
        here never fails the batch: the examples are a by-product, the graph write committed.
        """
        collector = self.examples
        if collector is None:
            return
        failed = {(d.topic, d.partition, d.offset) for d in dead}
        written = [ev for ev in events if (ev.topic, ev.partition, ev.offset) not in failed]
        texts = {
            ev.item_id: t
            for ev in written
            if (t := item_text(ev.title, ev.category, ev.description))
        }
        # catalogue records win over event fields, as in the graph
        for it in items:
            if t := item_text(it.title, it.category, it.description):
                texts[it.item_id] = t

        def collect() -> None:
            # the catalogue text of the other items, from the graph (one read per batch)
            missing = {ev.item_id for ev in written if not texts.get(ev.item_id)}
            if missing:
                texts.update(self.store.item_texts(missing))
            feed = [
                (ev.user_id, ev.item_id, texts[ev.item_id], ev.type, ev.ts)
                for ev in sorted(written, key=lambda e: e.ts)  # event-time order per user
                if texts.get(ev.item_id)
            ]
            for row in feed:
                collector.observe(*row)
            collector.store.flush()

        try:
            await self._graph(collect)
        except Exception as e:
            log.error("collecting fine-tuning examples failed %s", kv(error=repr(e)[:300]))

    # -- helpers -----------------------------------------------------------------------------------
    async def _graph(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the driver's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _graph_retried(self, what: str, error: Exception) -> None:
        self.metrics.write_retry()
        log.warning("graph %s failed, retrying %s", what, kv(error=type(error).__name__))

    def _observe(self, out: BatchOutcome, events: Sequence[Event]) -> None:
        m = self.metrics
        log.info(
            "batch %s",
            kv(
                records=out.records,
                applied=out.applied,
                duplicates=out.duplicates,
                invalid=out.invalid,
                encoded=out.encoded,
                **{f"{k}_ms": round(v * 1000, 1) for k, v in out.stages.items()},
            ),
        )
        now = self.clock()
        m.observe_batch(out.records, sum(out.stages.values()))
        for stage, seconds in out.stages.items():
            m.observe_stage(stage, seconds)
        by_kind: dict[tuple[str, str], int] = {}
        for ev in events:
            by_kind[(ev.topic, ev.type)] = by_kind.get((ev.topic, ev.type), 0) + 1
        for (topic, etype), n in by_kind.items():
            m.event_consumed(topic, etype, n)
        m.observe_freshness([now - ev.ts for ev in events])
        for kind, n in out.rows.items():
            m.rows_written(kind, n)
