"""The Faust app: one agent micro-batches the three event topics and the `items` topic.

Built at the entry point (never at import time), in three steps: ``create_app`` (the Faust app),
``DeadLetterTopic`` (the sink the runtime's batch path is built with), ``add_agents`` (the agent
and the timers, around the runtime). The agent hands each batch to the runtime's
`stream.pipeline.BatchProcessor`; the timers drive `stream.derived.DerivedWork`, the model swap and
the periodic fine-tuning. Records are read raw (bytes), so
a malformed value reaches our validation and the dead-letter topic instead of crashing a codec.
``take_events`` acks a batch only after the agent's loop body returned, i.e. after the graph write
committed; the consumer commits acked offsets only, and on shutdown waits for in-flight events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from aiokafka.errors import IllegalStateError

from config.logs import kv
from config.settings import Settings
from encoder.examples import ExampleCollector
from stream.batch_retry import BatchRetry
from stream.derived import REFRESH_CHUNK
from stream.kafka_connection import faust_credentials
from stream.pipeline import RawRecord
from stream.runtime import Runtime

log = logging.getLogger("tastegraph.app")
SESSION_TIMEOUT_S = 10.0


class Progress:
    """What the worker has processed, for lag metrics and `--until-idle`."""

    def __init__(self) -> None:
        self.processed: dict[tuple[str, int], int] = {}
        self.last_record_at = time.monotonic()
        self.in_flight = 0
        self.lag = 0  # records not yet processed on the assigned partitions (last lag report)

    def done(self, records: Sequence[RawRecord]) -> None:
        for r in records:
            key = (r.topic, r.partition)
            if r.offset > self.processed.get(key, -1):
                self.processed[key] = r.offset
        self.last_record_at = time.monotonic()


class PeriodicFinetune:
    """The periodic fine-tuning agent: a run when ``finetune_min_examples`` new examples arrived
    since the last run. Training happens in a child process (`finetuning.trainer`, started by
    `finetuning.job`), waited on in a thread, so batches keep flowing; a promoted version reaches
    the worker via the hot swap."""

    def __init__(
        self,
        settings: Settings,
        collector: ExampleCollector,
        metrics: Any | None = None,
        run: Callable[[Settings], Awaitable[Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.collector = collector
        self.metrics = metrics
        self.mark = 0  # examples already stored at start-up count as new
        self._run = run
        self.runs = 0

    async def tick(self) -> Any | None:
        """One check; returns the run's FinetuneResult, or None when it did not run."""
        new = self.collector.new_since(self.mark)
        if new < self.settings.finetune_min_examples:
            return None
        if self._run is None:
            from finetuning.job import run_finetune_async

            self._run = run_finetune_async
        mark = self.collector.store.added_total
        self.collector.store.flush()  # what the child reads is on disk
        log.info("fine-tuning starts %s", kv(new_examples=new))
        try:
            result = await self._run(self.settings)
        except Exception as e:  # run_finetune records child failures itself; this is unexpected
            log.error("fine-tuning failed %s", kv(error=repr(e)[:300]))
            if self.metrics is not None:
                self.metrics.finetune_run("failed", 0.0)
            return None
        self.runs += 1
        if result.result != "skipped":
            self.mark = mark
        if self.metrics is not None:
            evaluation = None
            if result.metrics_before or result.metrics_after:
                evaluation = {
                    "current": result.metrics_before or {},
                    "candidate": result.metrics_after or {},
                }
            self.metrics.finetune_run(result.result, result.seconds, evaluation=evaluation)
        return result


def create_app(settings: Settings) -> faust.App:
    """The Faust app of a worker: raw bytes in and out, no web server, in-memory tables."""
    # Faust creates its data directory itself, but not the directories above it
    (settings.home / "worker-data").mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{s.strip()}" for s in settings.kafka_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # a crashed worker's partitions move on after this long (Faust's default, 60 s, kept a
        # restarted worker waiting a minute for its dead predecessor to leave the group)
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=SESSION_TIMEOUT_S / 5,
        stream_buffer_maxsize=max(4096, 2 * settings.max_batch),
        web_enabled=False,
        store="memory://",
        table_cleanup_interval=3600.0,
        # Faust keeps a small data directory per app; by default in the current directory
        datadir=str(settings.home / "worker-data" / settings.app_id),
    )


class DeadLetterTopic:
    """The dead-letter sink: sends values to ``settings.topic_dead_letter`` through the app's
    producer and waits until Kafka acknowledged them (the batch is acked only after that)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.topic = app.topic(
            settings.topic_dead_letter, key_serializer="raw", value_serializer="raw"
        )

    async def __call__(self, values: Sequence[bytes]) -> None:
        # wait on Faust's own message futures: a refused dead letter fails them too, and one
        # nobody awaited would be logged with a traceback when collected
        messages = [self.topic.as_future_message(value=v) for v in values]
        for message in messages:
            await self.topic.publish_message(message)
        results = await asyncio.gather(*messages, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


def add_agents(app: faust.App, runtime: Runtime, until_idle_s: float | None = None) -> Progress:
    """Attaches the batch agent and the timers (refresh, model swap, fine-tuning, lag report) to
    ``app``; returns what the worker has processed. ``until_idle_s``: stop once caught up."""
    settings, metrics, stop = runtime.settings, runtime.metrics, runtime.stop
    processor, derived = runtime.processor, runtime.derived
    progress = Progress()
    source = app.topic(
        *settings.event_topics,
        settings.topic_items,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    # No error leaves the agent's loop: a batch that fails is retried whole (what was written is
    # dropped as duplicates), without end only while Neo4j or Kafka is away; after a bounded
    # number of other failures the records that fail are isolated and dead-lettered
    retry = BatchRetry(processor, metrics, max_delay=settings.write_retry_max_s)

    @app.agent(source, name="tastegraph.batches")
    async def consume(stream: faust.StreamT) -> None:
        batches = stream.take_events(settings.max_batch, within=settings.max_wait_s)  # type: ignore[attr-defined]
        async for events in batches:
            records = [
                RawRecord(
                    topic=e.message.topic,
                    partition=e.message.partition,
                    offset=e.message.offset,
                    key=e.message.key,
                    value=e.message.value,
                    timestamp=e.message.timestamp,
                )
                for e in events
            ]
            progress.in_flight = len(records)
            metrics.set_in_flight(len(records))
            await retry.settle(records)
            progress.done(records)
            progress.in_flight = 0
            metrics.set_in_flight(0)

    @app.timer(interval=settings.refresh_interval_s)
    async def refresh_derived() -> None:
        # a bounded amount per tick: under load, derived data (user embeddings, SIMILAR_TO) lags
        # behind the strengths instead of taking the CPU the batches need; while the worker is
        # more than a batch behind (a burst, a restart), one small chunk per tick, so the backlog
        # of strengths drains first and derived data still moves
        if not stop.is_set():
            behind = progress.lag > settings.max_batch
            await derived.refresh(REFRESH_CHUNK if behind else settings.refresh_limit)

    @app.timer(interval=settings.model_poll_s)
    async def watch_model() -> None:
        # a promoted or rolled-back version: load it aside, swap between batches, then
        # re-embed older-version nodes a bounded chunk per tick
        if not stop.is_set():
            await runtime.swapper.poll()

    if settings.finetune_enabled and runtime.examples is not None:
        finetuner = PeriodicFinetune(settings, runtime.examples, metrics)

        @app.timer(interval=settings.finetune_interval_s)
        async def finetune_periodically() -> None:
            if not stop.is_set():
                await finetuner.tick()

    @app.timer(interval=2.0)
    async def report_lag() -> None:
        lags = {}
        for tp in app.consumer.assignment():
            # a rebalance can revoke the partition between these calls: skip it this tick
            try:
                high = app.consumer.highwater(tp)
                if high is None:
                    continue
                done = progress.processed.get((tp.topic, tp.partition))
                if done is None:  # nothing processed here in this run: where the consumer stands
                    position = await app.consumer.position(tp)
                    done = (position if position is not None else 0) - 1
            except (AssertionError, IllegalStateError):
                continue
            if tp not in app.consumer.assignment():
                continue
            lags[(tp.topic, tp.partition)] = max(0, high - done - 1)
            metrics.set_lag(tp.topic, tp.partition, lags[(tp.topic, tp.partition)])
        progress.lag = sum(lags.values())
        if until_idle_s is None or not lags:
            return
        idle = time.monotonic() - progress.last_record_at
        if idle >= until_idle_s and progress.in_flight == 0 and not any(lags.values()):
            log.info("caught up, refreshing derived data %s", kv(idle_s=round(idle, 1)))
            while await derived.refresh(settings.refresh_limit) > 0:
                pass
            log.info("caught up, stopping")
            stop.set()
            # the same path as an operator's SIGTERM: finish the batch, commit, close
            os.kill(os.getpid(), signal.SIGTERM)

    return progress
