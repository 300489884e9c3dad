"""The query commands against the real Neo4j: `tastegraph recommend ... --json` and `forget`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli import queries
from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.example_store import ExampleStore
from encoder.examples import Example
from finetuning.stores import default_examples_path
from graph.model import Event, ItemRecord
from graph.store import GraphBatch, GraphStore, InterestParams

pytestmark = pytest.mark.integration

DAY = 86400.0


def command(name: str, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=name)
    queries.configure_command(name, parser)
    args = parser.parse_args(argv)
    args.command = name
    return args


@pytest.fixture
def planted(clean_graph: Any, settings: Settings, tmp_path: Path) -> Settings:
    store = GraphStore(
        clean_graph,
        settings.neo4j_database,
        InterestParams(half_life_s=14 * DAY, weights=DEFAULT_WEIGHTS),
    )
    store.ensure_schema(384)
    items = [ItemRecord("i1", "tent", "camping"), ItemRecord("i2", "stove", "camping")]
    events = [
        Event("e1", "u1", "i1", "purchase", 0.0),
        Event("e2", "u2", "i2", "click", 0.0),
        Event("e3", "u2", "i1", "click", 0.0),
    ]
    store.apply_batch(GraphBatch(events, items))
    return dataclasses.replace(settings, home=tmp_path)


def test_recommend_json(planted: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    args = command("recommend", "u1", "--strategy", "blend", "--json", "--now", "86400")
    assert queries.run(args, planted) == 0
    out = orjson.loads(capsys.readouterr().out)
    # no embeddings and no neighbours yet: popularity only; i1 is purchased so it never shows
    assert [(r["item_id"], r["category"]) for r in out] == [("i2", "camping")]


@pytest.mark.parametrize(
    ("exclude", "u1", "u2"),
    [
        # u1 bought i1; u2 clicked i1 and i2 and bought nothing
        ("purchased", ["i2"], ["i1", "i2"]),
        ("seen", ["i2"], []),
        ("none", ["i1", "i2"], ["i1", "i2"]),
    ],
)
def test_recommend_exclude(
    planted: Settings,
    capsys: pytest.CaptureFixture[str],
    exclude: str,
    u1: list[str],
    u2: list[str],
) -> None:
    for user, expected in (("u1", u1), ("u2", u2)):
        args = command("recommend", user, "--exclude", exclude, "--json", "--now", "86400")
        assert queries.run(args, planted) == 0
        assert sorted(r["item_id"] for r in orjson.loads(capsys.readouterr().out)) == expected


def test_recommend_excludes_purchases_by_default(planted: Settings) -> None:
    assert command("recommend", "u1").exclude == "purchased"


def test_forget_erases_the_graph_and_the_finetuning_examples(
    planted: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    path = default_examples_path(planted)
    path.parent.mkdir(parents=True)
    with ExampleStore(path=path) as store:
        store.add_many(
            [Example("u2", "tent", "i2", "stove", 1.0), Example("u1", "x", "i1", "t", 2)]
        )
    assert queries.run(command("forget", "u2", "--json"), planted) == 0
    assert orjson.loads(capsys.readouterr().out) == {
        "user_id": "u2",
        "forgotten": True,
        "finetune_examples_removed": 1,
    }
    with ExampleStore(path=path) as store:
        assert [ex.user_id for ex in store] == ["u1"]
    assert queries.run(command("audience", "--item", "i1", "--json", "--now", "0"), planted) == 0
    assert [r["user_id"] for r in orjson.loads(capsys.readouterr().out)] == ["u1"]
    # a second time there is nothing to erase: exit 1 and one sentence, so a typo is not success
    assert queries.run(command("forget", "u2"), planted) == 1
    captured = capsys.readouterr()
    assert "False" in captured.out
    assert captured.err == "tastegraph: user 'u2' is not in the graph: nothing erased\n"


def test_prune_ledger_drops_only_entries_older_than_the_horizon(
    planted: Settings, clean_graph: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    store = GraphStore(
        clean_graph,
        planted.neo4j_database,
        InterestParams(half_life_s=14 * DAY, weights=DEFAULT_WEIGHTS),
    )
    store.apply_batch(GraphBatch([Event("e9", "u1", "i2", "click", 20 * DAY)]))
    # now = day 30: e1..e3 (day 0) are 30 days old, e9 (day 20) is 10 days old
    args = command("prune-ledger", "--older-than-days", "15", "--now", str(30 * DAY), "--json")
    assert queries.run(args, planted) == 0
    assert orjson.loads(capsys.readouterr().out)["deleted"] == 3
    records, _, _ = clean_graph.execute_query(
        "MATCH (e:AppliedEvent) RETURN e.event_id AS id", database_=planted.neo4j_database
    )
    assert [r["id"] for r in records] == ["e9"]
    # the pruned ids are no longer deduplicated: the same click counts again (documented)
    again = store.apply_batch(GraphBatch([Event("e2", "u2", "i2", "click", 0.0)]))
    assert (again.applied, again.duplicates) == (1, 0)
