"""Similarity lists converge to their definition whatever the order and timing of refreshes
(graph/similarity.py), and the edge changes that write them."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.similarity import Lists, changes, nearest, recompute, relist, top_k

K, THRESHOLD = 3, 0.2


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def candidates(vectors: dict[str, np.ndarray], x: str) -> dict[str, float]:
    """What the vector index and the exact rescore return: every other node above the threshold."""
    sims = {n: round(cosine(vectors[x], v), 12) for n, v in vectors.items() if n != x}
    return {n: s for n, s in sims.items() if s >= THRESHOLD}


def definition(vectors: dict[str, np.ndarray]) -> Lists:
    return {x: top_k(candidates(vectors, x), K) for x in vectors}


def refresh(lists: Lists, vectors: dict[str, np.ndarray], x: str, moved: bool) -> set[str]:
    """One pending node's refresh; returns the nodes it flags for a relist."""
    if not moved:
        relist(lists, x, candidates(vectors, x), K)
        return set()
    pointing = [y for y, ly in lists.items() if x in ly]
    return recompute(lists, x, candidates(vectors, x), K, pointing)


def run_one(
    lists: Lists, vectors: dict[str, np.ndarray], pending: dict[str, bool], rnd: Any
) -> None:
    x = rnd.choice(sorted(pending))
    moved = pending.pop(x)
    for y in refresh(lists, vectors, x, moved):
        pending.setdefault(y, False)  # a relist never clears a pending move


vector = st.lists(st.integers(-3, 3), min_size=3, max_size=3).filter(any)
steps = st.lists(st.tuples(st.integers(0, 7), vector, st.integers(0, 3)), min_size=1, max_size=30)


@settings(max_examples=300, deadline=None)
@given(steps, st.randoms(use_true_random=False))
def test_lists_converge_to_the_definition_whatever_the_refresh_timing(
    plan: list[tuple[int, list[int], int]], rnd: Any
) -> None:
    """Embeddings change one at a time; after each change a random number of pending refreshes
    run, in a random order; then the rest run. The lists equal the top-k of the final embeddings,
    and each refresh after the last change is a relist at most once per node: the work is
    bounded."""
    vectors: dict[str, np.ndarray] = {}
    lists: Lists = {}
    pending: dict[str, bool] = {}  # node -> moved (else: its own list only)
    for node, vec, n_refresh in plan:
        vectors[f"n{node}"] = np.asarray(vec, dtype=np.float64)
        pending[f"n{node}"] = True
        for _ in range(n_refresh):
            if pending:
                run_one(lists, vectors, pending, rnd)
    moves = sum(pending.values())
    refreshes = 0
    while pending:
        run_one(lists, vectors, pending, rnd)
        refreshes += 1
    assert refreshes <= moves + len(vectors)
    want = definition(vectors)
    assert {n: ly for n, ly in lists.items() if ly} == {n: ly for n, ly in want.items() if ly}


def test_a_relist_changes_no_other_list() -> None:
    lists: Lists = {"a": {"x": 0.9}, "b": {"a": 0.8}, "x": {"a": 0.9}}
    relist(lists, "a", {"x": 0.9, "c": 0.7, "b": 0.8}, k=2)
    assert lists == {"a": {"x": 0.9, "b": 0.8}, "b": {"a": 0.8}, "x": {"a": 0.9}}


def test_a_node_that_moved_away_leaves_the_lists_it_was_in() -> None:
    lists: Lists = {"a": {"x": 0.9, "b": 0.8}, "b": {"a": 0.8}}
    again = recompute(lists, "x", {"b": 0.6}, k=2, others=["a"])
    assert lists == {"a": {"b": 0.8}, "b": {"a": 0.8, "x": 0.6}, "x": {"b": 0.6}}
    assert again == {"a"}  # a's list was full: someone outside it may take the free place


def test_edge_changes_and_their_locks() -> None:
    before = {"a": {"b": 0.9, "c": 0.5}, "b": {"a": 0.9}}
    after = {"a": {"b": 0.7, "d": 0.6}, "b": {"a": 0.9}}
    ch = changes(before, after)
    assert ch.deleted == [("a", "c")]
    assert ch.written == [("a", "b", 0.7), ("a", "d", 0.6)]
    assert ch.locks == ["a", "b", "c", "d"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(vector, min_size=2, max_size=9),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_exact_candidates_are_the_top_fetch_by_cosine_whatever_the_row_order(
    vecs: list[list[int]], fetch: int, rnd: Any
) -> None:
    """The exact search (TASTEGRAPH_SIMILAR_SEARCH=exact) gives every node the ``fetch`` best
    others at or above the threshold, ties by id, and the same lists whatever order the database
    returned the embeddings in."""
    vectors = {f"n{i}": np.array(v, dtype=float) for i, v in enumerate(vecs)}
    names = sorted(vectors)
    shuffled = names[:]
    rnd.shuffle(shuffled)
    matrix = np.array([vectors[n] for n in shuffled])
    found = nearest(shuffled, matrix, names, fetch, THRESHOLD)
    again = nearest(names, np.array([vectors[n] for n in names]), names, fetch, THRESHOLD)
    assert found == again
    for x in names:
        expected = top_k(candidates(vectors, x), fetch)
        assert list(found[x]) == list(expected)
        assert all(abs(found[x][n] - s) < 1e-9 for n, s in expected.items())


def test_exact_candidates_add_the_pointing_nodes_above_the_threshold() -> None:
    """A node pointing at ``x`` outside ``x``'s fetch best is scored exactly (it stays in the
    list it is in), unless it is below the threshold; an unknown node gets nothing."""
    vectors = {
        "a": np.array([1.0, 0.0]),
        "b": np.array([1.0, 0.1]),
        "c": np.array([1.0, 0.5]),
        "d": np.array([0.0, 1.0]),
    }
    names = sorted(vectors)
    matrix = np.array([vectors[n] for n in names])
    found = nearest(names, matrix, ["a", "zz"], 1, 0.5, {"a": ["c", "d", "a"]})
    assert list(found["a"]) == ["b", "c"]  # b is the best; c points at a and is above 0.5
    assert found["zz"] == {}


def test_exact_candidates_with_nothing_embedded_are_empty() -> None:
    """No node of the kind carries the current version yet (or any more, after a model swap):
    every wanted node gets no candidates instead of an error."""
    assert nearest([], [], ["a", "b"], 5, 0.5) == {"a": {}, "b": {}}
