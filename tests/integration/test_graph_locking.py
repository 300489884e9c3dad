"""Batch and refresh transactions running at the same time never deadlock: every write
transaction takes its locks in one global order (users, then items, then categories, each sorted),
so the driver never has to retry one (its retries log "Transaction failed and will be retried").

Two writers (two partitions, or two workers) apply batches that share users, items and
categories, while a third thread refreshes embeddings and similarity edges as the worker does.
"""

from __future__ import annotations

import calendar
import logging
import threading
import time
from typing import Any

import pytest

from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.protocol import HashingEncoder
from graph.model import Event, ItemRecord, item_text
from graph.store import GraphBatch, GraphStore, InterestParams
from tools.datagen import generate_dataset

pytestmark = pytest.mark.integration

DIM = 384
HL = 14 * 86400.0
ENC = HashingEncoder(dim=DIM)
VERSION = "hash-384"


class Retries(logging.Handler):
    """Counts the driver's retry warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "will be retried" in message or "Deadlock" in message:
            self.messages.append(message[:300])


def batches(n_events: int, size: int) -> list[GraphBatch]:
    items, raw = generate_dataset(n_events, seed=9, users=40, items=80, embedded_share=1.0)
    vectors = dict(
        zip(
            [it["item_id"] for it in items],
            ENC.encode([item_text(it["title"], it["category"], it["description"]) for it in items]),
            strict=True,
        )
    )
    records = [
        ItemRecord(it["item_id"], it["title"], it["category"], it["description"]) for it in items
    ]
    events = [
        Event(
            e["event_id"],
            e["user_id"],
            e["item_id"],
            e["type"],
            float(calendar.timegm(time.strptime(e["ts"], "%Y-%m-%dT%H:%M:%SZ"))),
        )
        for e in raw
    ]
    out = []
    for at in range(0, len(events), size):
        chunk = events[at : at + size]
        ids = {e.item_id for e in chunk}
        out.append(
            GraphBatch(
                events=chunk,
                items=[r for r in records if r.item_id in ids][:10],
                item_embeddings={i: vectors[i] for i in ids},
                model_version=VERSION,
            )
        )
    return out


@pytest.fixture
def store(clean_graph: Any, settings: Settings) -> GraphStore:
    params = InterestParams(half_life_s=HL, weights=DEFAULT_WEIGHTS, similar_k=5)
    s = GraphStore(clean_graph, settings.neo4j_database, params)
    s.ensure_schema(DIM)
    return s


def test_batches_and_refreshes_at_the_same_time_never_deadlock(store: GraphStore) -> None:
    work = batches(3000, 60)
    retries = Retries()
    driver_log = logging.getLogger("neo4j")
    driver_log.addHandler(retries)
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(part: list[GraphBatch]) -> None:
        try:
            for b in part:
                store.apply_batch(b)
        except BaseException as e:  # reported below
            errors.append(e)

    def refresher() -> None:
        try:
            while not done.is_set():
                if store.refresh_dirty(VERSION, limit=25) == 0:
                    time.sleep(0.01)  # nothing dirty yet: poll again
        except BaseException as e:
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(work[k::2],)) for k in range(2)]
    refresh = threading.Thread(target=refresher)
    try:
        refresh.start()
        for t in writers:
            t.start()
        for t in writers:
            t.join(600)
    finally:
        done.set()
        refresh.join(600)
        driver_log.removeHandler(retries)
    assert not errors, errors
    print(f"FIGURES batches={len(work)} driver_retries={len(retries.messages)}")
    assert retries.messages == [], f"{len(retries.messages)} retries: {retries.messages[:3]}"
