"""The refresh of derived data: user embeddings and the SIMILAR_TO lists of users and items.

``GraphStore.refresh_dirty`` is the entry point; it hands :meth:`Refresh.one_round` the store's
managed write (one transaction per step, the driver's retries reported). Each step sets the flags
of the next (``resimilar``, ``dirty``, ``relist``) in the same transaction, so a crash between
steps loses nothing. The list arithmetic itself is pure (graph/similarity.py); this module reads,
locks (in the project's order) and writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from graph import queries as q
from graph.fold import TextState, embedding_moved, user_embedding
from graph.similarity import Lists, changes, nearest, recompute, relist

if TYPE_CHECKING:
    from graph.store import InterestParams

# Co-engagement lists (graph/queries/refresh.py CO_ENGAGED_ROWS), chosen in issue 15 on Online
# Retail and Complete Journey (docs/evaluation.md).
CO_ENGAGED_K = 10  # neighbours kept per item
CO_ENGAGED_ALPHA = 0.35  # exponent of the source's users; the target's get 1 - alpha
CO_ENGAGED_REVERSE = 1.0 - 2.0 * CO_ENGAGED_ALPHA  # sim(j -> i) / sim(i -> j) = (n_j / n_i) ^ this
CO_ENGAGED_SHRINKAGE = 10.0  # co-engaged users at which the similarity gets half its weight
CO_ENGAGED_ENGAGERS = 2000  # the most recent users of an item that a recompute walks through
CO_ENGAGED_SHARE = 10  # a refresh round recomputes at most limit / CO_ENGAGED_SHARE lists

# ``write(fn, *args)``: runs ``fn(tx, *args)`` in a managed write transaction, returns its result.
Write = Callable[..., Any]


class Refresh:
    """The refresh's transactions, over the store's interest parameters (similar_k, threshold,
    half-life, embedding tolerance). Owned by ``GraphStore``; holds no connection of its own."""

    def __init__(self, params: InterestParams) -> None:
        self._params = params

    def one_round(self, write: Write, version: str, limit: int) -> int:
        """One round of ``GraphStore.refresh_dirty``: returns how many users and items it
        processed."""
        # items with a new embedding first flag their users (whose embeddings average them)
        items: list[str] = write(self._item_users_tx, version, limit)
        users: set[str] = write(self._user_embeddings_tx, version, limit)
        users |= write(self._similarity_tx, "users", version, limit)
        listed: set[str] = write(self._similarity_tx, "items", version, limit, items)
        # co-engagement lists: a tenth of the limit per round, so under a sustained load their
        # upkeep takes a bounded share of the database and repeated flags on an item coalesce
        listed |= write(self._co_engaged_tx, max(1, limit // CO_ENGAGED_SHARE))
        return len(users) + len(set(items) | listed)

    def _co_engaged_tx(self, tx: Any, limit: int) -> set[str]:
        """Recomputes the CO_ENGAGED lists of up to ``limit`` items whose engagers changed
        (``Item.co_dirty``): reads them (no locks), locks every item whose edges change, sorted,
        then replaces each list and clears its flag. Returns those items."""
        ids = [r["id"] for r in tx.run(q.PENDING_CO_ENGAGED, limit=limit)]
        if not ids:
            return set()
        rows = []
        touched = set(ids)  # the items, their old and their new neighbours
        for r in tx.run(
            q.CO_ENGAGED_ROWS,
            ids=ids,
            k=CO_ENGAGED_K,
            alpha=CO_ENGAGED_ALPHA,
            shrinkage=CO_ENGAGED_SHRINKAGE,
            engagers=CO_ENGAGED_ENGAGERS,
        ):
            top = [[n, float(s)] for n, s in r["top"]]
            rows.append({"id": r["id"], "users": r["users"], "top": top})
            touched |= {n for n, _ in r["top"]} | set(r["old"])
        tx.run(q.LOCK_ITEMS, ids=sorted(touched)).consume()
        tx.run(q.WRITE_CO_ENGAGED, rows=rows).consume()
        return set(ids)

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
        lists: Lists = {}
        pointing: dict[str, list[str]] = {}
        for r in tx.run(_SIMILARITY[kind, "lists"], ids=ids):
            lists[r["id"]] = {n: float(s) for n, s in r["out"]}
            pointing[r["id"]] = list(r["pointing"])
        if p.similar_search == "exact":
            rows = list(tx.run(_SIMILARITY[kind, "all"], version=version))
            also = {x: pointing.get(x, []) for x in moved}
            candidates = nearest(
                [r["id"] for r in rows],
                [r["embedding"] for r in rows],
                ids,
                fetch,
                p.similar_threshold,
                also,
            )
        else:
            found = tx.run(
                _SIMILARITY[kind, "candidates"],
                ids=ids,
                version=version,
                fetch=fetch,
                threshold=p.similar_threshold,
            )
            candidates = {r["id"]: {n: float(s) for n, s in r["candidates"]} for r in found}
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


# The queries of each kind of similarity list (labels are fixed in Cypher), by (kind, step).
_SIMILARITY = {
    ("users", "pending"): q.PENDING_SIMILAR_USERS,
    ("users", "pairs"): q.USER_PAIR_SCORES,
    ("users", "candidates"): q.USER_SIMILARITY_CANDIDATES,
    ("users", "all"): q.USER_EMBEDDINGS_ALL,
    ("users", "lists"): q.USER_SIMILAR_LISTS,
    ("users", "lock"): q.LOCK_USERS,
    ("users", "delete"): q.DELETE_USER_SIMILAR,
    ("users", "merge"): q.MERGE_USER_SIMILAR,
    ("users", "done"): q.USERS_SIMILAR_DONE,
    ("items", "pending"): q.PENDING_SIMILAR_ITEMS,
    ("items", "pairs"): q.ITEM_PAIR_SCORES,
    ("items", "candidates"): q.ITEM_SIMILARITY_CANDIDATES,
    ("items", "all"): q.ITEM_EMBEDDINGS_ALL,
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
