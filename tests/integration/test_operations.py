"""Operations against the real services (issue 17): destructive commands refuse what they did not
make, and each command of docs/readme/80-operations.md does what the docs say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.evaluate import _claim_graph
from cli.main import main
from config.exceptions import ConfigError
from config.settings import DEFAULT_WEIGHTS, Settings
from graph.store import GraphStore, InterestParams

pytestmark = pytest.mark.integration


def _count(driver: Any, settings: Settings, query: str) -> int:
    records, _, _ = driver.execute_query(query, database_=settings.neo4j_database)
    return int(records[0][0])


def _store(driver: Any, settings: Settings) -> GraphStore:
    params = InterestParams(half_life_s=14 * 86400.0, weights=DEFAULT_WEIGHTS)
    return GraphStore(driver, settings.neo4j_database, params)


def test_evaluate_refuses_a_graph_it_did_not_build(
    clean_graph: Any, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_graph.execute_query(
        "CREATE (:User {user_id: 'precious'})", database_=settings.neo4j_database
    )
    events = tmp_path / "events.jsonl"
    items = tmp_path / "items.jsonl"
    events.write_text(json.dumps({"user_id": "u", "item_id": "i", "ts": 0, "type": "click"}) + "\n")
    items.write_text(json.dumps({"item_id": "i", "title": "t", "category": "c"}) + "\n")
    code = main(["evaluate", "--events", str(events), "--items", str(items), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluate did not build" in err and "--wipe" in err
    assert (
        _count(clean_graph, settings, "MATCH (u:User {user_id: 'precious'}) RETURN count(u)") == 1
    )


def test_evaluate_claims_an_empty_graph_and_wipes_only_when_told(
    clean_graph: Any, settings: Settings
) -> None:
    store = _store(clean_graph, settings)
    assert store.owner() == "empty"
    _claim_graph(store, settings, keep=False, wipe=False)
    assert store.owner() == "evaluation"
    # its own graph: emptied on the next run (the marker stays)
    clean_graph.execute_query("CREATE (:Item {item_id: 'x'})", database_=settings.neo4j_database)
    _claim_graph(store, settings, keep=False, wipe=False)
    assert _count(clean_graph, settings, "MATCH (n) RETURN count(n)") == 1
    # a worker's graph: refused, then deleted with --wipe
    clean_graph.execute_query("MATCH (n) DETACH DELETE n", database_=settings.neo4j_database)
    clean_graph.execute_query("CREATE (:User {user_id: 'w'})", database_=settings.neo4j_database)
    assert store.owner() == "other"
    with pytest.raises(ConfigError, match="did not build"):
        _claim_graph(store, settings, keep=True, wipe=False)
    _claim_graph(store, settings, keep=False, wipe=True)
    assert _count(clean_graph, settings, "MATCH (u:User) RETURN count(u)") == 0
    assert store.owner() == "evaluation"
