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
from graph.decay import EdgeState, floored
from graph.fold import (
    FoldResult,
    StoredState,
    TextState,
    UserCategory,
    affected_categories,
    category_states,
    event_fields,
)
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
    """An edge's state from its properties (``raw`` missing: written before it existed, when the
    stored strength was the running floored value)."""
    counts = {
        k[len(COUNT_PREFIX) :]: int(v) for k, v in props.items() if k.startswith(COUNT_PREFIX)
    }
    raw = props.get("raw")
    days = zip(props.get("day_index") or [], props.get("day_weight") or [], strict=True)
    return EdgeState(
        float(props["strength"] if raw is None else raw),
        float(props["last_ts"]),
        float(props["first_ts"]),
        counts,
        {int(d): float(w) for d, w in days},
    )


def claim_events(tx: Any, events: Sequence[Event]) -> set[str]:
    """Create the events' ledger nodes; returns the ids this transaction created (fresh)."""
    claim = secrets.randbits(63)  # a retried transaction claims again under a new token
    rows = [{"event_id": e.event_id, "ts": e.ts} for e in sorted(events, key=lambda e: e.event_id)]
    return {r["event_id"] for r in tx.run(q.CLAIM_EVENTS, rows=rows, claim=claim) if r["fresh"]}


def catalogue_categories(
    events: Sequence[Event], items: Sequence[ItemRecord]
) -> list[dict[str, Any]]:
    """The category each item of the batch would get: a catalogue record's (the last one wins),
    else its events' (``fill``: only where the item has none); ``delete`` for an item whose last
    record of the batch is a tombstone."""
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        if it.category or it.deleted:
            row = {"item_id": it.item_id, "category": it.category, "fill": False}
            out[it.item_id] = {**row, "delete": it.deleted}
    for item_id, fields in event_fields(events, ("category",)).items():
        if item_id not in out and "category" in fields:
            row = {"item_id": item_id, "category": fields["category"], "fill": True}
            out[item_id] = {**row, "delete": False}
    return [out[k] for k in sorted(out)]


def deleted_items(items: Sequence[ItemRecord]) -> list[str]:
    """The items whose last record of the batch is a tombstone, sorted: they leave the graph at
    the end of the batch (its own events on them included); a later record creates them anew."""
    last = {it.item_id: it for it in items}
    return sorted(i for i, it in last.items() if it.deleted)


def lock_and_read(
    tx: Any, events: Sequence[Event], items: Sequence[ItemRecord]
) -> tuple[StoredState, dict[str, dict[str, Any]], set[str]]:
    """Write-lock the users and items the batch folds into and read the current state of every
    key the batch touches, and the stored item records. Returns the locked users too.

    Lock order (every write transaction of the project takes it): users, then items, then
    categories, each sorted by key. The users include those of items whose category the batch
    sets or changes (their category interest moves)."""
    stored = StoredState()
    text_users = {e.user_id for e in events if e.text}
    locked = {e.user_id for e in events}
    planned = catalogue_categories(events, items)
    if planned:
        for r in tx.run(q.PLAN_CATEGORY_MOVES, rows=planned):
            locked.update(r["users"])
    neighbours: set[str] = set()  # of deleted items: their similarity lists change
    if deleted := deleted_items(items):
        for r in tx.run(q.SIMILAR_ITEM_NEIGHBOURS, ids=deleted):
            neighbours.update(r["neighbours"])
    users = [{"user_id": u, "text": u in text_users} for u in sorted(locked)]
    if users:
        for r in tx.run(q.LOCK_READ_USERS, rows=users):
            vec = np.asarray(r["vector"], dtype=np.float64)
            stored.user_text[r["user_id"]] = TextState(vec, float(r["ts"]), r["version"] or "")
    item_ids = sorted({e.item_id for e in events} | {it.item_id for it in items} | neighbours)
    known: dict[str, dict[str, Any]] = {}
    if item_ids:
        for r in tx.run(q.LOCK_READ_ITEMS, ids=item_ids):
            known[r["item_id"]] = dict(r)
            if r["popularity"] is not None:
                stored.popularity[r["item_id"]] = (
                    float(r["popularity"]),
                    float(r["popularity_ts"]),
                )
            if r["discovery"] is not None:
                stored.discovery[r["item_id"]] = (float(r["discovery"]), float(r["discovery_ts"]))

    pairs = sorted({(e.user_id, e.item_id) for e in events})
    rows = [{"user_id": u, "item_id": i} for u, i in pairs]
    if rows:
        for r in tx.run(q.READ_ITEM_EDGES, rows=rows):
            stored.item_edges[(r["user_id"], r["item_id"])] = edge_state(r["props"])
    return stored, known, locked


def category_moves(
    tx: Any,
    rows: Sequence[Mapping[str, Any]],
    known: Mapping[str, Mapping[str, Any]],
    locked: set[str],
    deleted: Sequence[str] = (),
) -> tuple[dict[str, str | None], dict[str, tuple[str | None, list[str]]]]:
    """Each item's category after the batch, and the items it moves (item -> (old category, its
    users)). Read with the items locked; a user the plan missed (an edge added between the plan
    and the lock) is locked now."""
    after: dict[str, str | None] = {}
    for item_id, old in known.items():
        after[item_id] = old.get("category")
    for r in rows:
        if r["category"]:
            after[r["item_id"]] = r["category"]
    for item_id in deleted:
        after[item_id] = None
    moved_ids = sorted(i for i, c in after.items() if c != known.get(i, {}).get("category"))
    moved: dict[str, tuple[str | None, list[str]]] = {
        i: (known.get(i, {}).get("category"), []) for i in moved_ids
    }
    if moved_ids:
        for r in tx.run(q.READ_ITEM_USERS, ids=moved_ids):
            moved[r["item_id"]] = (moved[r["item_id"]][0], sorted(r["users"]))
    late = sorted({u for _, users in moved.values() for u in users} - locked)
    if late:
        tx.run(q.LOCK_READ_USERS, rows=[{"user_id": u, "text": False} for u in late]).consume()
        locked.update(late)
    return after, moved


ITEM_FIELDS = ("title", "category", "description")


def item_rows(
    events: Sequence[Event], items: Sequence[ItemRecord], known: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Item fields to write (``None``: leave as stored); flags items whose text changed.

    Catalogue records are the authority (the last one in the batch wins); the item fields an event
    carries only fill in what neither the graph nor the batch's catalogue records have (the
    earliest event of the batch wins: ``graph.fold.event_fields``).
    """
    catalogue: dict[str, dict[str, Any]] = {}
    for it in items:
        row = catalogue.setdefault(it.item_id, {})
        row.update({n: getattr(it, n) for n in ITEM_FIELDS if getattr(it, n)})
    from_events: dict[str, dict[str, Any]] = dict(event_fields(events, ITEM_FIELDS))
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
    locked: set[str],
    half_life: float,
    trend_days: int,
) -> dict[str, int]:
    """Write every folded state as an absolute value; returns the rows written by kind."""
    written: dict[str, int] = {}
    rows = item_rows(events, items, known)
    deleted = deleted_items(items)
    categories, moved = category_moves(tx, rows, known, locked, deleted)
    names = {c for c in categories.values() if c} | {old for old, _ in moved.values() if old}
    if names:  # the lock order's last step: categories, sorted
        tx.run(q.LOCK_CATEGORIES, names=sorted(names)).consume()

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
                "popularity": floored(pop[0]) if pop else None,
                "popularity_raw": pop[0] if pop else None,
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
            {"user_id": u, "item_id": i, "props": edge_props(s)}
            for (u, i), s in sorted(folded.item_edges.items())
        ],
    )
    # tombstones: the items leave the graph (their users are refreshed, their similarity
    # neighbours recompute their lists), before their users' category interest is recomputed
    put("items_deleted", q.DELETE_ITEMS, [{"item_id": i} for i in deleted])
    # category interest: recomputed from the item edges written above, for every (user, category)
    # whose members changed (an edge of the batch, or an item that changed category)
    pairs = affected_categories(folded.item_edges, categories, moved)
    states = category_states(
        pairs, category_members(tx, pairs), half_life=half_life, trend_days=trend_days
    )
    put(
        "category_edges",
        q.MERGE_CATEGORY_EDGES,
        [
            {"user_id": u, "category": c, "props": edge_props(s)}
            for (u, c), s in states.items()
            if s is not None
        ],
    )
    put(
        "category_edges_deleted",
        q.DELETE_CATEGORY_EDGES,
        [{"user_id": u, "category": c} for (u, c), s in states.items() if s is None],
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


def edge_props(s: EdgeState) -> dict[str, Any]:
    """Every property of an INTERESTED_IN edge (written with ``SET r = ...``: absolute)."""
    ordered = sorted(s.days.items())
    return {
        "strength": s.strength,
        "raw": s.raw,
        "last_ts": s.last_ts,
        "first_ts": s.first_ts,
        "day_index": [d for d, _ in ordered],
        "day_weight": [w for _, w in ordered],
        **{COUNT_PREFIX + t: n for t, n in sorted(s.counts.items())},
    }


def category_members(tx: Any, pairs: set[UserCategory]) -> dict[UserCategory, dict[str, EdgeState]]:
    """The item edges of each (user, category): what its category interest sums."""
    out: dict[UserCategory, dict[str, EdgeState]] = {}
    if pairs:
        rows = [{"user_id": u, "category": c} for u, c in sorted(pairs)]
        for r in tx.run(q.READ_CATEGORY_MEMBERS, rows=rows):
            key = (r["user_id"], r["category"])
            out.setdefault(key, {})[r["item_id"]] = edge_state(r["props"])
    return out
