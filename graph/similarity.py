"""Similarity lists (``SIMILAR_TO`` edges) as a function of the stored embeddings: pure, no I/O.

The definition: a node's out-list is its top ``k`` other nodes (same embedding version) by cosine
similarity, at least ``threshold``, ties broken by id. A node whose embedding changed (``x``) gets
its list recomputed from the vector index's candidates, and every list that ``x`` enters, leaves
or changes rank in is updated at the same time (:func:`recompute`): the nodes among ``x``'s
candidates and the nodes that pointed at ``x``. Where that cannot be decided from the list alone
(``x`` fell below the last entry of a full list: a node outside the list may now beat it), the
node is flagged for a recompute of its own. So the lists converge to the definition whatever the
order and timing of the refreshes (a crash, another batch split), instead of depending on which
nodes existed when each list was computed.

A flagged node's own list is recomputed by :func:`relist`, which touches no other list: a node
whose embedding did not change is seen the same from every other list. So the work a change
causes is bounded: the node that moved, the lists it is in or enters, and at most one own-list
recompute for each list it left; nothing flags anything further.

Edges are then written as a difference between the lists before and after (:func:`changes`), and
the nodes whose edges change are locked first, sorted (the project's lock order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Lists = dict[str, dict[str, float]]  # node id -> {neighbour id: score}


def top_k(scores: Mapping[str, float], k: int) -> dict[str, float]:
    """The ``k`` best by score, ties by id."""
    return dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k])


def _rank(node: str, score: float) -> tuple[float, str]:
    return -score, node  # smaller is better: higher score, then smaller id


def _last(scores: Mapping[str, float]) -> tuple[float, str]:
    """The rank of a list's last entry."""
    return max(_rank(n, s) for n, s in scores.items())


def relist(lists: Lists, x: str, candidates: Mapping[str, float], k: int) -> None:
    """Recompute ``x``'s own list from ``candidates``; ``x``'s embedding did not change, so no
    other list changes with it."""
    lists[x] = top_k({n: s for n, s in candidates.items() if n != x}, k)


def recompute(
    lists: Lists, x: str, candidates: Mapping[str, float], k: int, others: Iterable[str] = ()
) -> set[str]:
    """``x``'s embedding changed: recompute its list from ``candidates`` (every node with a
    similarity of at least the threshold, exact scores; a node of ``others`` that is missing from
    them is taken to be below the threshold) and update the lists of ``candidates`` and
    ``others`` (the nodes that pointed at ``x``) in place. Returns the nodes whose own list needs
    a recompute (:func:`relist`): ``x`` left their full list or fell below its last entry."""
    again: set[str] = set()
    relist(lists, x, candidates, k)
    for y in sorted(set(candidates) | set(others)):
        if y == x:
            continue
        ly = lists.setdefault(y, {})
        s = candidates.get(y)
        full = len(ly) >= k
        if x in ly:
            last = _last(ly)
            if s is None:
                del ly[x]
                if full:
                    again.add(y)  # a node outside the list may take the free place
            else:
                ly[x] = s
                if full and _rank(x, s) > last:
                    again.add(y)  # x fell below the old last entry: outside nodes may beat it
        elif s is not None:
            if not full:
                ly[x] = s
            elif _rank(x, s) < (last := _last(ly)):
                del ly[last[1]]
                ly[x] = s
    return again


def nearest(
    ids: Sequence[str],
    vectors: np.ndarray | Sequence[Sequence[float]],
    wanted: Sequence[str],
    fetch: int,
    threshold: float,
    also: Mapping[str, Iterable[str]] | None = None,
    chunk: int = 256,
) -> Lists:
    """Exact candidates, as the vector index would give them without its approximation: for each
    node of ``wanted``, its ``fetch`` most similar other nodes by cosine (at least ``threshold``,
    ties by id), plus the scores of its ``also`` nodes (those pointing at it) that reach the
    threshold. ``vectors``' rows are the nodes ``ids``. A function of the inputs alone, whatever
    their order: two runs on the same embeddings give the same lists."""
    out: Lists = {x: {} for x in wanted}
    if not ids:  # nothing embedded with this version (yet, or any more)
        return out
    order = sorted(range(len(ids)), key=ids.__getitem__)
    names = [ids[n] for n in order]
    m = np.asarray(vectors, dtype=np.float64)[order]
    norms = np.linalg.norm(m, axis=1)
    m = m / np.where(norms > 0, norms, 1.0)[:, None]
    row = {n: r for r, n in enumerate(names)}
    present = [x for x in wanted if x in row]
    for start in range(0, len(present), chunk):
        part = present[start : start + chunk]
        # rounded: cosines equal but for the arithmetic's last bits tie, and break by id
        sims = np.round(m[[row[x] for x in part]] @ m.T, 12)
        for x, sim in zip(part, sims, strict=True):
            sim[row[x]] = -np.inf  # never its own candidate
            idx = np.flatnonzero(sim >= threshold)
            if len(idx) > fetch:  # keep every node tied with the fetch-th, then order by id
                kth = np.partition(-sim[idx], fetch - 1)[fetch - 1]
                idx = idx[-sim[idx] <= kth]
            idx = idx[np.lexsort((idx, -sim[idx]))][:fetch]
            found = {names[i]: float(sim[i]) for i in idx}
            for n in (also or {}).get(x, ()):
                if n in row and n != x and n not in found and sim[row[n]] >= threshold:
                    found[n] = float(sim[row[n]])
            out[x] = found
    return out


@dataclass(frozen=True)
class EdgeChanges:
    deleted: list[tuple[str, str]]  # (from, to)
    written: list[tuple[str, str, float]]  # (from, to, score): new edges and changed scores
    locks: list[str]  # every node whose edges change, sorted


def changes(
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> EdgeChanges:
    """The edge operations that turn the lists ``before`` into ``after``."""
    deleted: list[tuple[str, str]] = []
    written: list[tuple[str, str, float]] = []
    for node in sorted(after.keys() | before.keys()):
        old, new = before.get(node, {}), after.get(node, {})
        deleted += [(node, n) for n in sorted(old.keys() - new.keys())]
        written += [(node, n, s) for n, s in sorted(new.items()) if old.get(n) != s]
    locks = {a for a, _ in deleted} | {b for _, b in deleted}
    locks |= {a for a, _, _ in written} | {b for _, b, _ in written}
    return EdgeChanges(deleted, written, sorted(locks))
