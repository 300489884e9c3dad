"""Isolation: what the batch path (`stream.pipeline`) does when part of a batch is refused.

The encoder refuses a text: `isolate_texts` encodes the batch's texts one by one and
`encode_failures` makes dead letters of the records whose text failed. The graph refuses a write
that is not transient: `split_batch` halves the batch until the record that causes it stands
alone (`BatchProcessor._isolate`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from config.logs import kv
from encoder.protocol import TextEncoder
from graph.model import Event, ItemRecord
from graph.store import GraphBatch
from stream.validation import Invalid

log = logging.getLogger("tastegraph.pipeline")


class EncodingFailed(Exception):
    """The encoder failed on a batch: not the records' fault, so the batch is retried whole."""


def isolate_texts(encoder: TextEncoder, texts: Sequence[str], error: Exception) -> list[Any]:
    """The encoder failed on a batch: encode its texts one by one, ``None`` where one fails. When
    every one fails the encoder itself is at fault (out of memory, a broken model): the batch
    fails whole (`EncodingFailed`) and the agent retries it; otherwise only the failing texts are
    left out (their records are dead-lettered, `encode_failures`)."""
    out: list[Any] = []
    for text in texts:
        try:
            out.append(encoder.encode([text])[0])
        except Exception as e:
            log.error("encoder failed on one text %s", kv(error=repr(e)[:200], chars=len(text)))
            out.append(None)
    if all(v is None for v in out):
        raise EncodingFailed(f"{type(error).__name__}: {error}") from error
    return out


def encode_failures(
    events: Sequence[Event], items: Sequence[ItemRecord], failed: set[str]
) -> list[Invalid]:
    """Dead letters for the records whose text the encoder refused (``failed``: item ids and
    event ids). They are applied without that text's embedding (the item stays unembedded, the
    query text does not count), and dead-lettered so the text can be looked at."""
    if not failed:
        return []
    out: list[Invalid] = []
    for it in items:
        if it.item_id in failed:
            out.append(
                Invalid(None, "encode_failed", "item text", it.topic, it.partition, it.offset)
            )
    for ev in events:
        if ev.event_id in failed or (ev.item_id in failed and (ev.title or ev.description)):
            out.append(
                Invalid(None, "encode_failed", "event text", ev.topic, ev.partition, ev.offset)
            )
    return out


def split_batch(batch: GraphBatch) -> tuple[GraphBatch, GraphBatch]:
    """Halves a batch (items and events in arrival order) for poison isolation."""
    records: list[Event | ItemRecord] = [*batch.items, *batch.events]
    mid = len(records) // 2
    parts = []
    for chunk in (records[:mid], records[mid:]):
        evs = [r for r in chunk if isinstance(r, Event)]
        its = [r for r in chunk if isinstance(r, ItemRecord)]
        ids = {r.item_id for r in its} | {e.item_id for e in evs}
        eids = {e.event_id for e in evs}
        parts.append(
            GraphBatch(
                events=evs,
                items=its,
                item_embeddings={k: v for k, v in batch.item_embeddings.items() if k in ids},
                text_embeddings={k: v for k, v in batch.text_embeddings.items() if k in eids},
                model_version=batch.model_version,
            )
        )
    return parts[0], parts[1]
