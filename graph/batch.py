"""The steps of ``GraphStore.apply_batch`` inside its transaction: the exactly-once filter, reading
the stored state of a batch's keys, and writing the folded states back as absolute values.

Exactly-once effect: ``(:PartitionOffset {key: "topic/partition"})`` holds the highest offset
processed per partition, locked and read in the same transaction that writes the batch, so a
redelivered or replayed offset is dropped; ``(:AppliedEvent {event_id})`` catches the same event
arriving again with a new offset (a file replayed twice). Events with ``partition == -1`` skip the
offset guard but not the event-id ledger.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graph import queries as q
from graph.decay import EdgeState
from graph.fold import FoldResult, StoredState, TextState, event_category, item_categories
from graph.model import Event, ItemRecord, item_text

if TYPE_CHECKING:
    from graph.store import GraphBatch

COUNT_PREFIX = "n_"


def _records(events: Sequence[Event], items: Sequence[ItemRecord]) -> list[Event | ItemRecord]:
    return [*events, *items]


def offset_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def offset_rows(batch: GraphBatch) -> list[dict[str, Any]]:
    """One row per (topic, partition) of the batch that came from Kafka, sorted (lock order)."""
    pairs = {
        (r.topic, r.partition) for r in _records(batch.events, batch.items) if r.partition >= 0
    }
    return [{"key": offset_key(t, p), "topic": t, "partition": p} for t, p in sorted(pairs)]


def filter_applied(
    events: Sequence[Event],
    items: Sequence[ItemRecord],
    offsets: Mapping[str, int],
    seen_ids: set[str],
) -> tuple[list[Event], list[ItemRecord], int]:
    """Drop what was applied before: offsets at or below the stored one, known event ids."""

    def fresh(r: Event | ItemRecord) -> bool:
        return r.partition < 0 or r.offset > offsets.get(offset_key(r.topic, r.partition), -1)

    kept: list[Event] = []
    ids = set(seen_ids)
    for ev in events:
        if fresh(ev) and ev.event_id not in ids:
            kept.append(ev)
            ids.add(ev.event_id)
    return kept, [it for it in items if fresh(it)], len(events) - len(kept)


def new_offsets(
    events: Sequence[Event], items: Sequence[ItemRecord], offsets: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The highest offset per partition among ``records`` and the stored ``offsets``: every record
    of a batch was processed (applied, or dropped as a duplicate)."""
    best: dict[str, int] = {}
    for r in _records(events, items):
        if r.partition >= 0:
            key = offset_key(r.topic, r.partition)
            best[key] = max(best.get(key, offsets.get(key, -1)), r.offset)
    return [{"key": k, "offset": v} for k, v in sorted(best.items())]


def edge_state(props: Mapping[str, Any]) -> EdgeState:
    counts = {
        k[len(COUNT_PREFIX) :]: int(v) for k, v in props.items() if k.startswith(COUNT_PREFIX)
    }
    return EdgeState(
        float(props["strength"]), float(props["last_ts"]), float(props["first_ts"]), counts
    )


def claim_events(tx: Any, events: Sequence[Event]) -> set[str]:
    """Create the events' ledger nodes; returns the ids this transaction created (fresh)."""
    claim = secrets.randbits(63)  # a retried transaction claims again under a new token
    rows = [{"event_id": e.event_id, "ts": e.ts} for e in sorted(events, key=lambda e: e.event_id)]
    return {r["event_id"] for r in tx.run(q.CLAIM_EVENTS, rows=rows, claim=claim) if r["fresh"]}


def lock_and_read(
    tx: Any, events: Sequence[Event], items: Sequence[ItemRecord]
) -> tuple[StoredState, dict[str, dict[str, Any]]]:
    """Write-lock the users and items the batch folds into (sorted ids, users first) and read the
    current state of every key the batch touches, and the stored item records."""
    stored = StoredState()
    text_users = {e.user_id for e in events if e.text}
    users = [{"user_id": u, "text": u in text_users} for u in sorted({e.user_id for e in events})]
    if users:
        for r in tx.run(q.LOCK_READ_USERS, rows=users):
            vec = np.asarray(r["vector"], dtype=np.float64)
            stored.user_text[r["user_id"]] = TextState(vec, float(r["ts"]), r["version"] or "")
    item_ids = sorted({e.item_id for e in events} | {it.item_id for it in items})
    known: dict[str, dict[str, Any]] = {}
    if item_ids:
        for r in tx.run(q.LOCK_READ_ITEMS, ids=item_ids):
            known[r["item_id"]] = dict(r)
            if r["category"]:
                stored.item_categories[r["item_id"]] = r["category"]
            if r["popularity"] is not None:
                stored.popularity[r["item_id"]] = (
                    float(r["popularity"]),
                    float(r["popularity_ts"]),
                )
            if r["discovery"] is not None:
                stored.discovery[r["item_id"]] = (float(r["discovery"]), float(r["discovery_ts"]))
    for it in items:  # catalogue records win over stored categories
        if it.category:
            stored.item_categories[it.item_id] = it.category

    pairs = sorted({(e.user_id, e.item_id) for e in events})
    rows = [{"user_id": u, "item_id": i} for u, i in pairs]
    if rows:
        for r in tx.run(q.READ_ITEM_EDGES, rows=rows):
            stored.item_edges[(r["user_id"], r["item_id"])] = edge_state(r["props"])

    categories = item_categories(events, stored.item_categories)
    cats = {(e.user_id, c) for e in events if (c := event_category(e, categories))}
    rows = [{"user_id": u, "category": c} for u, c in sorted(cats)]
    if rows:
        for r in tx.run(q.READ_CATEGORY_EDGES, rows=rows):
            key = (r["user_id"], r["category"])
            stored.category_edges[key] = edge_state(r["props"])
            days = zip(
                r["props"].get("day_index") or [], r["props"].get("day_weight") or [], strict=True
            )
            stored.category_days[key] = {int(d): float(w) for d, w in days}
    return stored, known


ITEM_FIELDS = ("title", "category", "description")


def item_rows(
    events: Sequence[Event], items: Sequence[ItemRecord], known: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Item fields to write (``None``: leave as stored); flags items whose text changed.

    Catalogue records are the authority (the last one in the batch wins); the item fields an event
    carries only fill in what neither the graph nor the batch's catalogue records have (the first
    event wins, as for categories in ``graph.fold.item_categories``).
    """
    catalogue: dict[str, dict[str, Any]] = {}
    for it in items:
        row = catalogue.setdefault(it.item_id, {})
        row.update({n: getattr(it, n) for n in ITEM_FIELDS if getattr(it, n)})
    from_events: dict[str, dict[str, Any]] = {}
    for ev in events:
        row = from_events.setdefault(ev.item_id, {})
        for n in ITEM_FIELDS:
            if getattr(ev, n):
                row.setdefault(n, getattr(ev, n))
    out = []
    for item_id in sorted(catalogue.keys() | from_events.keys()):
        old = known.get(item_id, {})
        cat, evs = catalogue.get(item_id, {}), from_events.get(item_id, {})
        row = {n: cat.get(n) or (None if old.get(n) else evs.get(n)) for n in ITEM_FIELDS}
        changed = False
        if old.get("embedding_version") is not None:
            before = item_text(*(old.get(n) for n in ITEM_FIELDS))
            changed = item_text(*(row[n] or old.get(n) for n in ITEM_FIELDS)) != before
        out.append({"item_id": item_id, **row, "text_changed": changed})
    return out


def write_rows(
    tx: Any,
    batch: GraphBatch,
    events: Sequence[Event],
    items: Sequence[ItemRecord],
    known: Mapping[str, Mapping[str, Any]],
    folded: FoldResult,
    offsets: Mapping[str, int],
    half_life: float,
) -> dict[str, int]:
    """Write every folded state as an absolute value; returns the rows written by kind."""
    written: dict[str, int] = {}

    def put(kind: str, query: str, rows: list[dict[str, Any]], **params: Any) -> None:
        if rows:
            tx.run(query, rows=rows, **params).consume()
        written[kind] = len(rows)

    texts = folded.user_text
    users = []
    for u, (f, t) in sorted(folded.user_span.items()):
        row: dict[str, Any] = {"user_id": u, "first_ts": f, "last_ts": t, "vector": None}
        if (s := texts.get(u)) is not None:
            row.update(vector=s.vector.tolist(), text_ts=s.ts, text_version=s.version)
        users.append(row)
    put("users", q.WRITE_USERS, users)
    written["user_texts"] = len(texts)
    rows = item_rows(events, items, known)
    embeddings = {r["item_id"]: r["embedding"] for r in embedding_rows(batch, known, rows)}
    by_id = {r["item_id"]: r for r in rows}
    item_write = []
    ids = by_id.keys() | folded.popularity.keys() | folded.discovery.keys() | embeddings.keys()
    for item_id in sorted(ids):
        fields = by_id.get(item_id)
        pop = folded.popularity.get(item_id)
        disc = folded.discovery.get(item_id)
        item_write.append(
            {
                "item_id": item_id,
                **(fields or {n: None for n in ITEM_FIELDS}),
                # nothing to write: no field given, text unchanged (most event-only items)
                "fields": fields is not None
                and bool(fields["text_changed"] or any(fields[n] for n in ITEM_FIELDS)),
                "text_changed": bool(fields and fields["text_changed"]),
                "popularity": pop[0] if pop else None,
                "popularity_ts": pop[1] if pop else None,
                "discovery": disc[0] if disc else None,
                "discovery_ts": disc[1] if disc else None,
                "embedding": embeddings.get(item_id),
            }
        )
    put("items", q.WRITE_ITEMS, item_write, half_life=half_life, version=batch.model_version)
    written["item_categories"] = sum(1 for r in rows if r["category"])
    written["popularity"] = len(folded.popularity)
    written["discovery"] = len(folded.discovery)
    written["embeddings"] = len(embeddings)
    put(
        "item_edges",
        q.MERGE_ITEM_EDGES,
        [
            {"user_id": u, "item_id": i, **state_row(s)}
            for (u, i), s in sorted(folded.item_edges.items())
        ],
    )
    put(
        "category_edges",
        q.MERGE_CATEGORY_EDGES,
        [
            {
                "user_id": u,
                "category": c,
                **state_row(s),
                **days_row(folded.category_days.get((u, c), {})),
            }
            for (u, c), s in sorted(folded.category_edges.items())
        ],
    )
    written["applied_events"] = len(events)  # claimed by this transaction: now applied
    put("offsets", q.SET_OFFSETS, new_offsets(batch.events, batch.items, offsets))
    return written


def embedding_rows(
    batch: GraphBatch, known: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Embeddings to store: skip items that already carry a current one of this version."""
    changed = {r["item_id"] for r in rows if r["text_changed"]}
    out = []
    for item_id, vec in sorted(batch.item_embeddings.items()):
        old = known.get(item_id, {})
        current = old.get("embedding_version") == batch.model_version and not old.get("stale")
        if current and item_id not in changed:
            continue
        out.append({"item_id": item_id, "embedding": np.asarray(vec, dtype=np.float64).tolist()})
    return out


def state_row(s: EdgeState) -> dict[str, Any]:
    counts = {COUNT_PREFIX + t: n for t, n in sorted(s.counts.items())}
    return {"strength": s.strength, "last_ts": s.last_ts, "first_ts": s.first_ts, "counts": counts}


def days_row(days: Mapping[int, float]) -> dict[str, Any]:
    ordered = sorted(days.items())
    return {"day_index": [d for d, _ in ordered], "day_weight": [w for _, w in ordered]}
