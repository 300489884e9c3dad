"""`tastegraph bench pipeline`: end-to-end throughput and freshness on the real Kafka and Neo4j.

Phases, all in one run, on topics and ids unique to the run (removed afterwards):
1. warm-up: the catalogue items of the "already embedded" share are produced to `items` and a
   worker (`tastegraph worker`, a subprocess, exactly as deployed) embeds them, then exits;
2. maximum throughput: N generated events are produced first, then a fresh worker consumes them;
   events/s is measured from its first to its last counted event (its /metrics endpoint);
3. freshness: with that worker still running, events stamped with the current time are produced at
   half the measured maximum for a fixed duration; p50/p99 of the event-to-graph delay come from
   the worker's histogram (the same figure the dashboards show);
4. naive path (the design article's): on a smaller sample, each event is encoded on its own and
   written in its own Neo4j transaction, in this process, without Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from config.settings import Settings
from stream.kafka_connection import client_options
from tools.naive_path import naive_path
from tools.recording import route
from tools.worker_metrics import histogram_quantile, scrape
from tools.worker_process import WorkerProcess, free_port


async def produce(
    settings: Settings, records: Iterable[tuple[str, bytes, bytes]], rate: float | None = None
) -> int:
    """Produces (topic, key, value) records, paced at ``rate`` per second when given."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**client_options(settings), linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    n = 0
    start = time.monotonic()
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            n += 1
            if rate:
                ahead = n / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def _events(gen: Sequence[dict[str, Any]], run: str, live: bool) -> list[tuple[str, dict]]:
    out = []
    for e in gen:
        e = dict(e)
        e["user_id"] = f"{run}-{e['user_id']}"
        e["item_id"] = f"{run}-{e['item_id']}"
        e["event_id"] = f"{run}-{'l' if live else 'b'}-{e['event_id']}"
        out.append((e["type"], e))
    return out


def _records(settings: Settings, events: list[tuple[str, dict]], live: bool) -> Iterable:
    for etype, e in events:
        if live:
            e = dict(e, ts=time.time())
        yield route(settings, etype), e["user_id"].encode(), orjson.dumps(e)


async def _wait(cond: Any, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark: timed out waiting for {what}")
        await asyncio.sleep(0.2)


def cleanup(settings: Settings, run: str, topics: Sequence[str]) -> None:
    """Removes the run's nodes (ids prefixed with the run) and topics."""
    from stream.runtime import open_store

    driver, store = open_store(settings)
    try:
        store.delete_by_id_prefix(f"{run}")
    finally:
        driver.close()

    async def drop() -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            await admin.delete_topics(list(topics))
        finally:
            await admin.close()

    asyncio.run(drop())


async def _bench(
    settings: Settings,
    run: str,
    n_events: int,
    naive_n: int,
    live_s: float,
    embedded_share: float = 0.9,
) -> dict[str, Any]:
    from tools.datagen import generate_dataset

    items, events = generate_dataset(
        n_events=n_events + int(live_s * 20000), seed=11, embedded_share=embedded_share
    )
    # the naive path's events carry their own prefix: its items by those ids
    naive_items = {f"{run}n-{it['item_id']}": it for it in items}
    items = [dict(it, item_id=f"{run}-{it['item_id']}") for it in items]
    batch_events = _events(events[:n_events], run, live=False)
    live_events = _events(events[n_events:], run, live=True)

    # 1. warm-up: embed the catalogue, as a running deployment would have
    say(f"warm-up: embedding a catalogue of {len(items)} items")
    t0 = time.monotonic()
    await produce(
        settings,
        ((settings.topic_items, it["item_id"].encode(), orjson.dumps(it)) for it in items),
    )
    w = WorkerProcess(settings, until_idle=3.0)
    await asyncio.to_thread(w.wait_exit, 600)
    warmup_s = time.monotonic() - t0

    # 2. maximum throughput
    say(f"maximum throughput: producing {n_events} events, then a fresh worker consumes them")
    t0 = time.monotonic()
    await produce(settings, _records(settings, batch_events, live=False))
    produce_s = time.monotonic() - t0
    w = WorkerProcess(settings, until_idle=None)
    try:
        await _wait(lambda: w.counted() > 0, 300, "the worker's first batch")
        # the clock starts when the first batch started: its end minus its own duration
        first = scrape(w.port)
        t_start = time.monotonic() - first.get("tastegraph_batch_seconds_sum", 0.0)
        await _wait(lambda: w.counted() >= n_events, 600, "the worker to catch up")
        t_last = time.monotonic()
        events_per_s = n_events / max(t_last - t_start, 1e-9)
        after_max = scrape(w.port)

        # 3. freshness at half the maximum rate
        say(f"freshness: {events_per_s / 2:.0f} events/s (half the maximum) for {live_s} s")
        rate = events_per_s / 2
        n_live = min(len(live_events), int(rate * live_s))
        before = scrape(w.port)
        await produce(settings, _records(settings, live_events[:n_live], live=True), rate=rate)
        await _wait(lambda: w.counted() >= n_events + n_live, 120, "the live load")
        after = scrape(w.port)
    finally:
        w.stop()
    fresh = "tastegraph_event_to_graph_seconds"
    stages = {}
    for stage in ("decode", "encode", "graph_write", "refresh"):
        total = after_max.get(f"tastegraph_batch_stage_seconds_sum|{stage}", 0.0)
        count = after_max.get(f"tastegraph_batch_stage_seconds_count|{stage}", 0.0)
        stages[stage] = round(1000 * total / count, 2) if count else None

    # 4. the naive path on a smaller sample
    say(f"naive path: {naive_n} events, one encoder call and one transaction each")
    naive = await asyncio.to_thread(
        naive_path, settings, _events(events[:naive_n], run + "n", live=False), naive_items
    )
    batches = after_max.get("tastegraph_batch_size_count", 0.0)
    return {
        "events": n_events,
        "embedded_share": embedded_share,
        "events_per_s": round(events_per_s, 1),
        "naive_events": naive_n,
        "naive_events_per_s": round(naive, 1),
        "speedup": round(events_per_s / naive, 1),
        "live_rate_per_s": round(rate, 1),
        "live_events": n_live,
        "freshness_p50_s": round(histogram_quantile(0.5, before, after, fresh), 3),
        "freshness_p99_s": round(histogram_quantile(0.99, before, after, fresh), 3),
        "batches": int(batches),
        "mean_batch_size": round(n_events / batches, 1) if batches else None,
        "stage_ms_per_batch": stages,
        # the worker's and the driver's retries of graph writes (a deadlock shows here)
        "neo4j_write_retries": int(after.get("tastegraph_neo4j_write_retries_total", 0.0)),
        "produce_s": round(produce_s, 1),
        "warmup_s": round(warmup_s, 1),
        "items": len(items),
        "max_batch": settings.max_batch,
        "peak_rss_mb_bench": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb": round(
            max(
                after.get("process_resident_memory_bytes", 0.0) / 2**20,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            ),
            1,
        ),
        "run": run,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=50_000, help="events in the throughput phase")
    parser.add_argument("--naive-events", type=int, default=300, help="events on the naive path")
    parser.add_argument("--live-seconds", type=float, default=15.0, help="freshness phase length")
    parser.add_argument(
        "--embedded-share",
        type=float,
        default=0.9,
        metavar="F",
        help="share of events on catalogue items already embedded (default 0.9); the rest are on"
        " brand-new items whose text must be encoded",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the run's topics and nodes")


def run(args: argparse.Namespace, settings: Settings) -> int:
    run_id = uuid.uuid4().hex[:6]
    settings = dataclasses.replace(
        settings,
        app_id=f"tastegraph-bench-{run_id}",
        topic_clicks=f"bench-{run_id}-clicks",
        topic_browses=f"bench-{run_id}-browses",
        topic_purchases=f"bench-{run_id}-purchases",
        topic_items=f"bench-{run_id}-items",
        topic_dead_letter=f"bench-{run_id}-dead-letter",
        metrics_port=free_port(),
    )
    topics = [*settings.event_topics, settings.topic_items, settings.topic_dead_letter]
    try:
        result = asyncio.run(
            _bench(
                settings,
                f"bench{run_id}",
                args.events,
                args.naive_events,
                args.live_seconds,
                args.embedded_share,
            )
        )
    finally:
        if not args.keep:
            say("removing the run's topics and nodes")
            cleanup(settings, f"bench{run_id}", topics)
    if args.json:
        print(orjson.dumps(result).decode())
    else:
        for key, value in result.items():
            print(f"{key:<20} {orjson.dumps(value).decode()}")
    say(
        f"pipeline: {result['events_per_s']} events/s ({result['speedup']}x the naive path), "
        f"freshness p50 {result['freshness_p50_s']} s, p99 {result['freshness_p99_s']} s"
    )
    return 0


def say(message: str) -> None:
    """Progress of the benchmark's phases, on stderr (stdout holds the result)."""
    print(f"[bench pipeline] {message}", file=sys.stderr, flush=True)
