"""The Neo4j adapter: schema, the batch write path and the refresh of derived data.

Synchronous neo4j driver; the worker calls it from a thread executor. One managed write
transaction per batch (``session.execute_write``, retried on transient errors), so everything
written is an absolute value computed from what the same transaction read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from graph import queries as q
from graph.batch import (
    claim_events,
    filter_applied,
    lock_and_read,
    offset_rows,
    write_rows,
)
from graph.exceptions import GraphError
from graph.fold import TextState, embedding_moved, fold_events, user_embedding
from graph.model import Event, ItemRecord, item_text
from graph.reads import GraphReads
from graph.similarity import Lists, changes, recompute, relist

log = logging.getLogger(__name__)

Vector = Sequence[float] | np.ndarray
T = TypeVar("T")


@dataclass(frozen=True)
class InterestParams:
    half_life_s: float
    weights: Mapping[str, float]
    similar_k: int = 20
    similar_threshold: float = 0.5  # cosine similarity in [-1, 1]
    text_weight: float = 1.0  # weight of one free-text embedding in the user embedding
    trend_days: int = 56  # day buckets kept on user->category edges for interest_trends
    embedding_tolerance: float = 1e-4  # 1 - cosine below which a user embedding is kept


@dataclass
class GraphBatch:
    events: list[Event]
    items: list[ItemRecord] = field(default_factory=list)
    item_embeddings: dict[str, Vector] = field(default_factory=dict)  # item_id -> vector
    text_embeddings: dict[str, Vector] = field(default_factory=dict)  # event_id -> vector
    model_version: str = ""
    # Embeddings still being computed: called inside the transaction once the locks are held and
    # the stored state is read, it returns (item_embeddings, text_embeddings) to add to the above.
    # The encoder thus runs while the database works; it must return the same on a retry.
    pending: Callable[[], tuple[dict[str, Vector], dict[str, Vector]]] | None = None

    def resolved(self) -> GraphBatch:
        """This batch with its pending embeddings waited for (a no-op without them)."""
        if self.pending is None:
            return self
        item_vecs, text_vecs = self.pending()
        return replace(
            self,
            item_embeddings={**self.item_embeddings, **item_vecs},
            text_embeddings={**self.text_embeddings, **text_vecs},
            pending=None,
        )


@dataclass
class ApplyResult:
    applied: int  # events folded into the graph
    duplicates: int  # events dropped: offset already applied, or event_id already applied
    rows: dict[str, int] = field(default_factory=dict)  # rows written by kind


class GraphStore(GraphReads):
    def __init__(
        self,
        driver: Any,
        database: str,
        params: InterestParams,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """``on_retry(operation)`` is called each time the driver runs a write transaction again
        (a deadlock, a leader switch, a lost connection: its own retries, which no caller sees
        otherwise); ``operation`` is ``batch``, ``refresh`` or ``forget``."""
        super().__init__(driver, database, params)
        self._on_retry = on_retry

    def _write(self, session: Any, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """``session.execute_write(fn, *args)``, reporting the driver's retries."""
        attempts = 0

        def counted(tx: Any, *a: Any) -> T:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and self._on_retry is not None:
                self._on_retry(operation)
            return fn(tx, *a)

        return session.execute_write(counted, *args)

    # --- schema ---------------------------------------------------------------------------
    def ensure_schema(self, dim: int, timeout_s: int = 60) -> None:
        """Create constraints and indexes if missing (idempotent); refuse a dimension change."""
        with self._session() as session:
            for stmt in (*q.SCHEMA_CONSTRAINTS, *q.SCHEMA_INDEXES):
                session.run(stmt).consume()
            for stmt in (q.CREATE_USER_VECTOR_INDEX, q.CREATE_ITEM_VECTOR_INDEX):
                session.run(stmt, dim=dim).consume()
            found = {r["name"]: r["dim"] for r in session.run(q.VECTOR_INDEX_DIMENSIONS)}
            wrong = {name: d for name, d in found.items() if d is not None and int(d) != dim}
            if wrong:
                raise GraphError(
                    f"vector indexes {sorted(wrong)} have dimension {sorted(set(wrong.values()))},"
                    f" the encoder has {dim}; drop them to change the model's dimension"
                )
            session.run(q.AWAIT_INDEXES, timeout_s=timeout_s).consume()

    # --- write path -----------------------------------------------------------------------
    def embedded_items(self, item_ids: Iterable[str], version: str) -> set[str]:
        """The items that already carry a current embedding of ``version``."""
        ids = sorted(set(item_ids))
        if not ids:
            return set()
        records, _, _ = self._driver.execute_query(
            q.EMBEDDED_ITEMS, ids=ids, version=version, database_=self._database, routing_="r"
        )
        return {r["item_id"] for r in records}

    def apply_batch(self, batch: GraphBatch) -> ApplyResult:
        """Fold the batch into the graph in one write transaction; exactly-once in effect."""
        with self._session() as session:
            result: ApplyResult = self._write(session, "batch", self._apply_tx, batch)
        return result

    def _apply_tx(self, tx: Any, batch: GraphBatch) -> ApplyResult:
        p = self._params
        offsets = {r["key"]: r["offset"] for r in tx.run(q.LOCK_OFFSETS, rows=offset_rows(batch))}
        # exactly-once: the offset guard first, then the event-id ledger
        events, items, _ = filter_applied(batch.events, batch.items, offsets, set())
        fresh = claim_events(tx, events)
        seen = {e.event_id for e in events} - fresh
        events, items, duplicates = filter_applied(batch.events, batch.items, offsets, seen)
        stored, known, locked = lock_and_read(tx, events, items)
        batch = batch.resolved()
        folded = fold_events(
            events,
            stored,
            weights=p.weights,
            half_life=p.half_life_s,
            text_embeddings=batch.text_embeddings,
            model_version=batch.model_version,
            text_weight=p.text_weight,
            trend_days=p.trend_days,
        )
        rows = write_rows(
            tx, batch, events, items, known, folded, offsets, locked, p.half_life_s, p.trend_days
        )
        return ApplyResult(applied=len(events), duplicates=duplicates, rows=rows)

    # --- derived data ---------------------------------------------------------------------
    def refresh_dirty(self, version: str, limit: int = 1000) -> int:
        """Recompute embeddings and similarity lists of up to ``limit`` dirty users and items.

        A user whose embedding moved less than ``InterestParams.embedding_tolerance`` keeps it
        and its similarity edges. A node whose embedding changed gets its ``SIMILAR_TO`` list
        recomputed, and the lists it enters or leaves are updated with it (graph/similarity.py),
        so the edges converge to the top-k of the stored embeddings whatever the refresh timing.
        A list that a node left gets recomputed on its own (``relist``), which changes no other
        list, so one change causes a bounded amount of work.
        Each step is one transaction that sets the flags of the next (``resimilar``, ``dirty``,
        ``relist``), so a crash between them loses nothing. Returns how many users and items were
        processed (call again while it returns > 0).
        """
        with self._session() as session:
            # items with a new embedding first flag their users (whose embeddings average them)
            items: list[str] = self._write(session, "refresh", self._item_users_tx, version, limit)
            users: set[str] = self._write(
                session, "refresh", self._user_embeddings_tx, version, limit
            )
            users |= self._write(session, "refresh", self._similarity_tx, "users", version, limit)
            listed: set[str] = self._write(
                session, "refresh", self._similarity_tx, "items", version, limit, items
            )
        return len(users) + len(set(items) | listed)

    def _item_users_tx(self, tx: Any, version: str, limit: int) -> list[str]:
        """Flags dirty the users of up to ``limit`` items with a new embedding (``Item.dirty``):
        their embeddings include the item from now on. Returns those items (sorted); their
        similarity lists are recomputed in this refresh, which clears their flag."""
        items = [r["id"] for r in tx.run(q.DIRTY_ITEMS, version=version, limit=limit)]
        if items:
            users = sorted({r["id"] for r in tx.run(q.USERS_OF_ITEMS, ids=items)})
            if users:
                tx.run(q.LOCK_USERS, ids=users).consume()
                tx.run(q.MARK_USERS_DIRTY, ids=users).consume()
        return items

    def _user_embeddings_tx(self, tx: Any, version: str, limit: int) -> set[str]:
        """New embeddings for dirty users; flags the users whose similarity list to recompute.

        Reads the dirty users, locks them (with the neighbours of those whose embedding goes,
        sorted), then reads them again under the lock: a batch that changed one meanwhile has
        committed by then, so its change (and its dirty flag) is never overwritten."""
        first = list(tx.run(q.DIRTY_USERS, limit=limit, version=version))
        ids = sorted(r["user_id"] for r in first)
        if not ids:
            return set()
        _, _, empty = self._user_embeddings(tx, first, version)
        locks = set(ids) | self._similar_neighbours(tx, empty)
        tx.run(q.LOCK_USERS, ids=sorted(locks)).consume()
        records = list(tx.run(q.DIRTY_USERS_BY_ID, ids=ids, version=version))
        embedded, kept, empty = self._user_embeddings(tx, records, version)
        if late := sorted(self._similar_neighbours(tx, empty) - locks):
            tx.run(q.LOCK_USERS, ids=late).consume()  # rare: emptied in between
        if embedded:
            tx.run(q.SET_USER_EMBEDDINGS, rows=embedded, version=version).consume()
        if kept:
            tx.run(q.MARK_USERS_CLEAN, ids=kept).consume()
        if empty:
            tx.run(q.CLEAR_USER_EMBEDDINGS, ids=empty).consume()
        return {r["user_id"] for r in records}

    def _user_embeddings(
        self, tx: Any, records: Sequence[Any], version: str
    ) -> tuple[list[dict[str, Any]], list[str], list[str]]:
        """(new embeddings, users whose embedding stays, users left without one)."""
        half_life = self._params.half_life_s
        embedded: list[dict[str, Any]] = []
        kept: list[str] = []
        empty: list[str] = []
        item_ids = sorted({e[2] for r in records for e in r["edges"] if e[2] is not None})
        vectors = {
            v["item_id"]: np.asarray(v["embedding"], dtype=np.float64)
            for v in tx.run(q.ITEM_EMBEDDINGS, ids=item_ids)
        }
        for r in records:
            text = None
            if r["text_vec"] is not None and r["text_version"] == version:
                text = TextState(np.asarray(r["text_vec"]), float(r["text_ts"]), version)
            edges = [(e[0], e[1], vectors[e[2]]) for e in r["edges"] if e[2] in vectors]
            vec = user_embedding(edges, text, half_life)
            old = r["embedding"] if r["embedding_version"] == version else None
            if vec is None:
                empty.append(r["user_id"])
            elif embedding_moved(old, vec, self._params.embedding_tolerance):
                embedded.append({"user_id": r["user_id"], "embedding": vec.tolist()})
            else:
                kept.append(r["user_id"])
        return embedded, kept, empty

    def _similar_neighbours(self, tx: Any, users: Sequence[str]) -> set[str]:
        """The users with a SIMILAR_TO edge to or from ``users``."""
        out: set[str] = set()
        if users:
            for r in tx.run(q.USER_SIMILAR_LISTS, ids=sorted(users)):
                out |= {n for n, _ in r["out"]} | set(r["pointing"])
        return out

    def _similarity_tx(
        self, tx: Any, kind: str, version: str, limit: int, only: Sequence[str] | None = None
    ) -> set[str]:
        """Recompute the lists of up to ``limit`` flagged nodes of one kind (``only``: the moved
        ones among these); see :mod:`graph.similarity`. Reads first (no locks), then locks every
        node whose edges change, sorted, then writes the difference."""
        p = self._params
        pending = {
            r["id"]: bool(r["moved"])
            for r in tx.run(_SIMILARITY[kind, "pending"], version=version, limit=limit)
        }
        if only is not None:  # the items whose users were flagged (new ones: the next round)
            allowed = set(only)
            pending = {n: m for n, m in pending.items() if not m or n in allowed}
        ids = sorted(pending)
        if not ids:
            return set()
        moved = [n for n in ids if pending[n]]
        stamps = _stamps(tx, moved) if kind == "items" and moved else {}
        fetch = max(4 * p.similar_k, p.similar_k + 10)
        found = tx.run(
            _SIMILARITY[kind, "candidates"],
            ids=ids,
            version=version,
            fetch=fetch,
            threshold=p.similar_threshold,
        )
        candidates = {r["id"]: {n: float(s) for n, s in r["candidates"]} for r in found}
        lists: Lists = {}
        pointing: dict[str, list[str]] = {}
        for r in tx.run(_SIMILARITY[kind, "lists"], ids=ids):
            lists[r["id"]] = {n: float(s) for n, s in r["out"]}
            pointing[r["id"]] = list(r["pointing"])
        self._score_pointing(tx, kind, moved, candidates, pointing)
        others = {n for x in moved for n in candidates.get(x, {})}
        others |= {n for x in moved for n in pointing.get(x, [])}
        others -= set(ids)
        if others:
            for r in tx.run(_SIMILARITY[kind, "lists"], ids=sorted(others)):
                lists[r["id"]] = {n: float(s) for n, s in r["out"]}
        before = {n: dict(ly) for n, ly in lists.items()}
        again: set[str] = set()
        for x in ids:
            if pending[x]:
                again |= recompute(lists, x, candidates.get(x, {}), p.similar_k, pointing[x])
            else:
                relist(lists, x, candidates.get(x, {}), p.similar_k)
        edges = changes(before, lists)
        tx.run(_SIMILARITY[kind, "lock"], ids=sorted(set(edges.locks) | set(ids) | again)).consume()
        if kind == "items" and moved:  # a batch may have re-embedded one since it was read
            changed = {i for i, stamp in _stamps(tx, moved).items() if stamp != stamps.get(i)}
            moved = [i for i in moved if i not in changed]  # it stays dirty
        if edges.deleted:
            deleted = [{"a": a, "b": b} for a, b in edges.deleted]
            tx.run(_SIMILARITY[kind, "delete"], rows=deleted).consume()
        if edges.written:
            written = [{"a": a, "b": b, "score": s} for a, b, s in edges.written]
            tx.run(_SIMILARITY[kind, "merge"], rows=written).consume()
        relisted = [n for n in ids if not pending[n]]
        again -= set(moved)
        tx.run(
            _SIMILARITY[kind, "done"], moved=moved, relisted=relisted, again=sorted(again)
        ).consume()
        return set(moved) | set(relisted)

    def _score_pointing(
        self,
        tx: Any,
        kind: str,
        moved: Sequence[str],
        candidates: dict[str, dict[str, float]],
        pointing: Mapping[str, Sequence[str]],
    ) -> None:
        """Adds to ``candidates`` the exact scores of the nodes pointing at a moved node that the
        vector index did not return (it returns ``fetch`` nodes at most): a node above the
        threshold stays in the list it is in instead of leaving it and coming back."""
        pairs = [
            [x, n] for x in moved for n in pointing.get(x, []) if n not in candidates.get(x, {})
        ]
        if not pairs:
            return
        threshold = self._params.similar_threshold
        for r in tx.run(_SIMILARITY[kind, "pairs"], pairs=pairs):
            if (sim := float(r["sim"])) >= threshold:
                candidates.setdefault(r["a"], {})[r["b"]] = sim

    # --- re-embedding after a model swap --------------------------------------------------
    def stale_items(self, version: str, limit: int = 200) -> list[tuple[str, str]]:
        """Up to ``limit`` (item_id, text) of items embedded by a version other than ``version``."""
        records, _, _ = self._driver.execute_query(
            q.STALE_ITEMS, version=version, limit=limit, database_=self._database, routing_="r"
        )
        out = []
        for r in records:
            text = item_text(r["title"], r["category"], r["description"])
            if text:
                out.append((str(r["item_id"]), text))
        return out

    def item_texts(self, item_ids: Iterable[str]) -> dict[str, str]:
        """The embedding text (title, category, description) of the given items that have one."""
        ids = sorted(set(item_ids))
        if not ids:
            return {}
        records, _, _ = self._driver.execute_query(
            q.READ_ITEM_TEXTS, ids=ids, database_=self._database, routing_="r"
        )
        out = {}
        for r in records:
            text = item_text(r["title"], r["category"], r["description"])
            if text:
                out[str(r["item_id"])] = text
        return out

    def set_item_embeddings(self, embeddings: Mapping[str, Vector], version: str) -> int:
        """Stores ``version`` embeddings of existing items (marked dirty for their similarity)."""
        rows = [
            {"item_id": k, "embedding": np.asarray(v, dtype=np.float64).tolist()}
            for k, v in sorted(embeddings.items())
        ]
        if rows:
            with self._session() as session:
                session.execute_write(_run, q.SET_ITEM_EMBEDDINGS, rows=rows, version=version)
        return len(rows)

    def mark_stale_users_dirty(self, version: str, limit: int = 1000) -> int:
        """Marks dirty up to ``limit`` users without a ``version`` embedding that have an interest
        in a ``version`` item (so the refresh gives them one); returns how many."""
        with self._session() as session:
            n = session.execute_write(
                _single, q.MARK_STALE_USERS_DIRTY, version=version, limit=limit
            )
        return int(n or 0)

    def delete_by_id_prefix(self, prefix: str) -> None:
        """Delete the users, items and ledger entries whose ids start with ``prefix`` (a benchmark
        run's own data); never call it with an empty prefix."""
        if not prefix:
            raise GraphError("refusing to delete by an empty id prefix")
        with self._session() as session:
            session.run(q.DELETE_BY_ID_PREFIX, prefix=prefix).consume()

    def prune_applied_events(self, before_ts: float, limit: int = 10_000) -> int:
        """Delete event-id ledger entries of events older than ``before_ts`` (event time).

        After pruning, an event older than ``before_ts`` that arrives again with a new offset is
        applied again; keep the horizon longer than any replay you intend to deduplicate.
        Returns how many were deleted (call again while it returns ``limit``).
        """
        with self._session() as session:
            deleted: int = session.execute_write(
                _single, q.PRUNE_APPLIED_EVENTS, before_ts=before_ts, limit=limit
            )
        return deleted

    # --- erasure --------------------------------------------------------------------------
    def owner(self) -> str:
        """``"empty"``, ``"evaluation"`` (a graph `tastegraph evaluate` built: its marker node,
        whatever else) or ``"other"`` (nodes and no marker: a worker's graph, say)."""
        with self._session() as session:
            row = session.run(q.GRAPH_OWNER).single(strict=True)
        if row["markers"] > 0:
            return "evaluation"
        return "other" if row["others"] > 0 else "empty"

    def wipe(self) -> None:
        """Deletes every node and relationship (indexes and constraints stay)."""
        with self._session() as session:
            session.run(q.WIPE_RELATIONSHIPS).consume()
            session.run(q.WIPE_NODES).consume()

    def mark_evaluation_graph(self, now: float) -> None:
        """Leaves the marker that says `tastegraph evaluate` built this graph."""
        with self._session() as session:
            session.execute_write(_run, q.MARK_EVALUATION_GRAPH, now=now)

    def forget(self, user_id: str) -> bool:
        """Erase a user, their edges and their share of derived data; True if they existed."""
        with self._session() as session:
            deleted: int = self._write(session, "forget", self._forget_tx, user_id)
        return deleted > 0

    def _forget_tx(self, tx: Any, user_id: str) -> int:
        half_life = self._params.half_life_s
        for r in list(tx.run(q.FORGET_LOCKS, user_id=user_id)):
            tx.run(q.LOCK_USERS, ids=sorted(set(r["users"]))).consume()
            tx.run(q.LOCK_ITEMS, ids=sorted(set(r["items"]))).consume()
            tx.run(q.LOCK_CATEGORIES, names=sorted(set(r["categories"]))).consume()
        tx.run(q.FORGET_POPULARITY, user_id=user_id, half_life=half_life).consume()
        tx.run(q.FORGET_DISCOVERY, user_id=user_id, half_life=half_life).consume()
        return int(tx.run(q.FORGET_USER, user_id=user_id).single(strict=True)["deleted"])


def change_own_password(driver: Any, old: str, new: str) -> None:
    """Changes the connected user's password (Neo4j checks ``old``); existing connections stay
    open, new ones need ``new``."""
    with driver.session(database="system") as session:
        session.run(q.CHANGE_OWN_PASSWORD, old=old, new=new).consume()


# The queries of each kind of similarity list (labels are fixed in Cypher), by (kind, step).
_SIMILARITY = {
    ("users", "pending"): q.PENDING_SIMILAR_USERS,
    ("users", "pairs"): q.USER_PAIR_SCORES,
    ("users", "candidates"): q.USER_SIMILARITY_CANDIDATES,
    ("users", "lists"): q.USER_SIMILAR_LISTS,
    ("users", "lock"): q.LOCK_USERS,
    ("users", "delete"): q.DELETE_USER_SIMILAR,
    ("users", "merge"): q.MERGE_USER_SIMILAR,
    ("users", "done"): q.USERS_SIMILAR_DONE,
    ("items", "pending"): q.PENDING_SIMILAR_ITEMS,
    ("items", "pairs"): q.ITEM_PAIR_SCORES,
    ("items", "candidates"): q.ITEM_SIMILARITY_CANDIDATES,
    ("items", "lists"): q.ITEM_SIMILAR_LISTS,
    ("items", "lock"): q.LOCK_ITEMS,
    ("items", "delete"): q.DELETE_ITEM_SIMILAR,
    ("items", "merge"): q.MERGE_ITEM_SIMILAR,
    ("items", "done"): q.ITEMS_SIMILAR_DONE,
}


def _stamps(tx: Any, item_ids: Sequence[str]) -> dict[str, Any]:
    """Each item's embedding and version, to compare before and after a lock."""
    rows = tx.run(q.ITEM_EMBEDDING_STAMPS, ids=list(item_ids))
    return {r["id"]: (r["version"], r["embedding"]) for r in rows}


def _run(tx: Any, query: str, **params: Any) -> None:
    tx.run(query, **params).consume()


def _single(tx: Any, query: str, **params: Any) -> Any:
    return tx.run(query, **params).single(strict=True)[0]
