"""The Neo4j adapter: schema, the batch write path, the entry to the refresh of derived data
(graph/refresh.py), re-embedding and erasure.

Synchronous neo4j driver; the worker calls it from a thread executor. One managed write
transaction per batch (``session.execute_write``, retried on transient errors), so everything
written is an absolute value computed from what the same transaction read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
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
from graph.fold import fold_events
from graph.model import Event, ItemRecord, item_text
from graph.reads import GraphReads
from graph.refresh import Refresh

log = logging.getLogger(__name__)

Vector = Sequence[float] | np.ndarray
T = TypeVar("T")


@dataclass(frozen=True)
class InterestParams:
    half_life_s: float
    weights: Mapping[str, float]
    similar_k: int = 20
    similar_threshold: float = 0.5  # cosine similarity in [-1, 1]
    # Where a similarity list's candidates come from: "index", Neo4j's approximate (HNSW) vector
    # index; "exact", every node's stored embedding (deterministic; for evaluation and small graphs)
    similar_search: str = "index"
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
        self._refresh = Refresh(params)

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
            return self._refresh.one_round(partial(self._write, session, "refresh"), version, limit)

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


def _run(tx: Any, query: str, **params: Any) -> None:
    tx.run(query, **params).consume()


def _single(tx: Any, query: str, **params: Any) -> Any:
    return tx.run(query, **params).single(strict=True)[0]
