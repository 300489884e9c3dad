"""Labelled examples: the builder's contexts, the bounded store, forget, the durable file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoder.example_store import ExampleStore, read_examples
from encoder.examples import (
    CONTEXT_SEP,
    Example,
    ExampleBuilder,
    ExampleCollector,
    build_examples,
    split_examples,
)


def ex(user: str, i: int) -> Example:
    return Example(user, f"ctx {i}", f"item{i}", f"text {i}", float(i), (f"c{i}",))


def test_context_is_last_n_distinct_items_most_recent_first() -> None:
    b = ExampleBuilder(context_n=3)
    assert b.observe("u", "a", "A", "browse", 1) is None  # no history yet, browse is no label
    assert b.observe("u", "b", "B", "click", 2) is not None
    b.observe("u", "c", "C", "browse", 3)
    b.observe("u", "a", "A", "browse", 4)  # a again: moves to the front, not duplicated
    b.observe("u", "d", "D", "browse", 5)
    e = b.observe("u", "x", "X", "purchase", 6)
    assert e is not None
    assert e.context == CONTEXT_SEP.join(["D", "A", "C"])
    assert e.context_ids == ("d", "a", "c")
    assert (e.item_id, e.item_text, e.ts) == ("x", "X", 6)


def test_same_timestamp_basket_is_not_its_own_context() -> None:
    b = ExampleBuilder(context_n=5)
    b.observe("u", "a", "A", "purchase", 1)
    e1 = b.observe("u", "b", "B", "purchase", 2)
    e2 = b.observe("u", "c", "C", "purchase", 2)  # same basket as b
    assert e1 is not None and e2 is not None
    assert e1.context_ids == e2.context_ids == ("a",)
    e3 = b.observe("u", "d", "D", "purchase", 3)
    assert e3 is not None and set(e3.context_ids) == {"a", "b", "c"}


def test_repeats_returns_and_users_are_separate() -> None:
    b = ExampleBuilder(context_n=5)
    b.observe("u", "a", "A", "purchase", 1)
    assert b.observe("u", "a", "A", "purchase", 2) is None  # re-buying: no example
    b.observe("u", "r", "R", "return", 3)  # returns do not enter the history
    e = b.observe("u", "z", "Z", "purchase", 4)
    assert e is not None and e.context_ids == ("a",)
    assert b.observe("v", "z", "Z", "purchase", 5) is None  # v has no history
    assert b.forget("u") and not b.forget("u")
    assert b.observe("u", "q", "Q", "purchase", 6) is None


def test_builder_bounds_users() -> None:
    b = ExampleBuilder(context_n=2, max_users=10)
    for u in range(100):
        b.observe(f"u{u}", "a", "A", "click", u)
    assert len(b) == 10


def test_build_examples_skips_items_without_text() -> None:
    events = [("u", "a", "click", 1.0), ("u", "nope", "click", 2.0), ("u", "b", "click", 3.0)]
    out = list(build_examples(events, {"a": "A", "b": "B"}))
    assert [(e.context_ids, e.item_id) for e in out] == [(("a",), "b")]


def test_store_is_bounded_and_splits_newest_for_evaluation() -> None:
    store = ExampleStore(max_examples=100)
    store.add_many(ex(f"u{i % 7}", i) for i in range(250))
    assert len(store) == 100 and store.added_total == 250
    assert next(iter(store)).ts == 150.0  # the oldest fell off
    train, held = store.split(0.1)
    assert len(train) == 90 and len(held) == 10
    assert [e.ts for e in held] == [float(i) for i in range(240, 250)]
    _, held_max = store.split(0.5, holdout_max=5)
    assert len(held_max) == 5
    assert split_examples([], 0.1) == ([], [])
    with pytest.raises(ValueError):
        split_examples([], 1.0)


def test_forget_removes_a_users_examples_from_memory_and_file(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    with ExampleStore(max_examples=1000, path=path) as store:
        store.add_many(ex(f"u{i % 3}", i) for i in range(30))
        store.flush()
        assert store.forget("u1") == 10
        assert store.forget("u1") == 0
        assert all(e.user_id != "u1" for e in store)
    on_disk = list(read_examples(path))
    assert len(on_disk) == 20 and all(e.user_id != "u1" for e in on_disk)
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic rewrite left no temporary file


def test_store_reloads_and_compacts_its_file(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    with ExampleStore(max_examples=10, path=path) as store:
        for i in range(25):  # past 2 x max lines the file is compacted
            store.add(ex("u", i))
    lines = path.read_text().splitlines()
    assert len(lines) <= 20
    with ExampleStore(max_examples=10, path=path) as again:
        assert [e.ts for e in again] == [float(i) for i in range(15, 25)]
        assert again.examples()[-1] == ex("u", 24)


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps(ex("u", 1).to_json()) + "\n" + '{"user_id": "u", "cont')
    assert [e.ts for e in read_examples(path)] == [1.0]


def test_collector_stores_examples_and_forgets_everywhere(tmp_path: Path) -> None:
    from encoder.examples import ExampleCollector

    store = ExampleStore(100, path=tmp_path / "ex.jsonl")
    c = ExampleCollector(store, ExampleBuilder(context_n=2))
    mark = store.added_total
    for i, (user, item) in enumerate([("u", "a"), ("u", "b"), ("v", "a"), ("v", "c"), ("u", "c")]):
        c.observe(user, item, item.upper(), "purchase", float(i))
    assert c.new_since(mark) == 3
    assert c.forget("u") == 2
    assert [(e.user_id, e.item_id) for e in store] == [("v", "c")]
    assert c.observe("u", "d", "D", "purchase", 9.0) is None  # u's history is gone too
    store.close()
    assert [e.user_id for e in read_examples(tmp_path / "ex.jsonl")] == ["v"]


def test_a_forget_in_another_process_is_not_undone_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "ex.jsonl"
    worker = ExampleStore(100, path=path)
    worker.add_many([ex("alice", 1), ex("bob", 2)])
    other = ExampleStore(100, path=path)  # e.g. `tastegraph forget alice` in another process
    assert other.forget("alice") == 1
    other.close()
    worker.add(ex("bob", 3))  # the worker notices the rewrite and reloads before appending
    assert [e.user_id for e in worker] == ["bob", "bob"]
    worker.compact()
    worker.close()
    assert [e.user_id for e in read_examples(path)] == ["bob", "bob"]


def test_context_n_is_honoured_by_build_examples_and_the_collector(tmp_path: Path) -> None:
    # a fresh builder holds no users (len 0): it must still be used, not replaced by a default
    events = [("u", i, "purchase", float(n)) for n, i in enumerate("abcdefg")]
    texts = {i: i.upper() for i in "abcdefg"}
    out = list(build_examples(events, texts, ExampleBuilder(context_n=1)))
    assert [(e.context, e.item_id) for e in out] == [
        ("A", "b"),
        ("B", "c"),
        ("C", "d"),
        ("D", "e"),
        ("E", "f"),
        ("F", "g"),
    ]
    c = ExampleCollector(ExampleStore(10, tmp_path / "ex.jsonl"), ExampleBuilder(context_n=2))
    for user, item, kind, ts in events:
        c.observe(user, item, texts[item], kind, ts)
    assert c.store.examples()[-1].context_ids == ("f", "e")
    c.store.close()


def test_held_out_slice_can_be_capped_per_user_and_stays_the_newest() -> None:
    # 3 users; u0 owns the 8 newest examples, u1 and u2 alternate before that
    examples = [ex(f"u{1 + i % 2}", i) for i in range(20)] + [ex("u0", i) for i in range(20, 28)]
    train, held = split_examples(examples, 0.5, holdout_max=6)
    assert {e.user_id for e in held} == {"u0"}  # uncapped: one user's last basket
    train, held = split_examples(examples, 0.5, holdout_max=6, per_user_max=2)
    assert [(e.user_id, e.ts) for e in held] == [
        ("u1", 16.0),
        ("u2", 17.0),
        ("u1", 18.0),
        ("u2", 19.0),
        ("u0", 26.0),
        ("u0", 27.0),
    ]
    # training keeps only what is older than the oldest held-out example; skipped ones are lost
    assert [e.ts for e in train] == [float(i) for i in range(16)]
    # a same-timestamp example (one basket) never lands on both sides
    basket = [ex("a", 0), ex("b", 1), Example("c", "x", "i1", "t", 2.0), ex("c", 2), ex("d", 3)]
    train, held = split_examples(basket, 0.4, per_user_max=1)
    assert [e.user_id for e in held] == ["c", "d"]
    assert [e.user_id for e in train] == ["a", "b"]
    with pytest.raises(ValueError):
        split_examples(examples, 0.5, per_user_max=-1)
