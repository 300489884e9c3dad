"""Operations against the real services (issue 17): destructive commands refuse what they did not
make, and each command of docs/operations.md does what the docs say."""

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


# --- docs/operations.md, each command ---------------------------------------------
T0_MS = 1_700_000_000_000  # record timestamps: T0 + i seconds for record i


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(
                topic, b"{}", partition=i % 2, timestamp_ms=T0_MS + i * 1000
            )
    finally:
        await producer.stop()


def _committed(settings: Settings, topic: str) -> dict[int, int | None]:
    from tools.offsets import describe_offsets, run_blocking

    return {o.partition: o.committed for o in run_blocking(describe_offsets(settings, [topic]))}


@pytest.fixture
def offsets_env(
    settings: Settings,
    kafka_admin: Any,
    unique_topics: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Settings, str]:
    """A topic of 2 partitions holding 10 records (0, 2, 4.. on partition 0) and a fresh group."""
    import dataclasses

    from tests.integration.conftest import run_sync

    topic = unique_topics("offsets")
    # the records are stamped in 2023: without retention.ms=-1 the broker's retention check
    # (every 5 minutes; the local services keep a day) may delete them in the middle of the test
    kafka_admin.create_topics(topic, partitions=2, configs={"retention.ms": "-1"})
    run_sync(_produce(settings.kafka_servers, topic, 10))
    group = unique_topics("group")
    monkeypatch.setenv("TASTEGRAPH_APP_ID", group)
    return dataclasses.replace(settings, app_id=group), topic


def test_offsets_reset_to_a_time_to_the_start_and_to_the_end(
    offsets_env: tuple[Settings, str], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, topic = offsets_env
    assert _committed(settings, topic) == {0: None, 1: None}
    # without --yes (stdin is no terminal here): the plan, exit 1, nothing moved
    assert main(["offsets", "reset", "--topic", topic, "--to-latest"]) == 1
    assert "nothing changed" in capsys.readouterr().err
    assert _committed(settings, topic) == {0: None, 1: None}
    assert main(["offsets", "reset", "--topic", topic, "--to-latest", "--yes"]) == 0
    assert _committed(settings, topic) == {0: 5, 1: 5}
    # records 5..9 were produced at T0 + 5 s ..: partition 0 holds 0,2,4,6,8 and 1 holds 1,3,5,..
    at = f"{(T0_MS + 5000) / 1000}"
    assert main(["offsets", "reset", "--topic", topic, "--to-datetime", at, "--yes"]) == 0
    assert _committed(settings, topic) == {0: 3, 1: 2}
    iso = "2023-11-14T22:13:27Z"  # T0 + 7 s
    assert main(["offsets", "reset", "--topic", topic, "--to-datetime", iso, "--yes"]) == 0
    assert _committed(settings, topic) == {0: 4, 1: 3}
    assert main(["offsets", "reset", "--topic", topic, "--to-earliest", "--yes"]) == 0
    assert _committed(settings, topic) == {0: 0, 1: 0}
    capsys.readouterr()
    assert main(["offsets", "show", "--topic", topic, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(r["partition"], r["committed"], r["end"], r["lag"]) for r in shown] == [
        (0, 0, 5, 5),
        (1, 0, 5, 5),
    ]


def test_offsets_reset_refuses_while_a_worker_consumes(
    offsets_env: tuple[Settings, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from aiokafka import AIOKafkaConsumer

    from tests.integration.conftest import run_sync

    settings, topic = offsets_env

    async def with_a_member() -> int:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=settings.kafka_servers, group_id=settings.app_id
        )
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=5000)  # joined, assigned
            return main(["offsets", "reset", "--topic", topic, "--to-earliest", "--yes"])
        finally:
            await consumer.stop()

    assert run_sync(with_a_member()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "active member" in err and "stop every worker" in err


def test_graph_reset_asks_then_deletes_everything(
    clean_graph: Any, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_graph.execute_query(
        "CREATE (:User {user_id: 'a'})-[:INTERESTED_IN]->(:Item {item_id: 'b'})",
        database_=settings.neo4j_database,
    )
    assert main(["graph", "reset"]) == 1
    assert "nothing deleted" in capsys.readouterr().err
    assert _count(clean_graph, settings, "MATCH (n) RETURN count(n)") == 2
    assert main(["graph", "reset", "--yes"]) == 0
    assert _count(clean_graph, settings, "MATCH (n) RETURN count(n)") == 0
    assert main(["graph", "reset"]) == 0  # empty: nothing to ask
    assert "is empty" in capsys.readouterr().out


def _connects(settings: Settings, password: str) -> bool:
    import neo4j

    driver = neo4j.GraphDatabase.driver(settings.neo4j_url, auth=(settings.neo4j_user, password))
    try:
        driver.verify_connectivity()
        return True
    except neo4j.exceptions.AuthError:
        return False
    finally:
        driver.close()


def test_rotate_password_with_the_local_password_file(
    neo4j_driver: Any, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local services' file is updated; an external NEO4J_PASSWORD is not (rotated back)."""
    import shutil

    old = settings.neo4j_password.get_secret_value()
    new = "rotated-" + tmp_path.name[-12:]
    new_file = tmp_path / "new"
    new_file.write_text(new + "\n")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(settings.home / "neo4j-password", home / "neo4j-password")
    (home / "neo4j-password").chmod(0o600)
    for variable in ("NEO4J_PASSWORD", "NEO4J_PASSWORD_FILE", "NEO4J_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TASTEGRAPH_HOME", str(home))
    try:
        assert main(["graph", "rotate-password", "--new-password-file", str(new_file)]) == 1
        assert _connects(settings, old)
        code = main(["graph", "rotate-password", "--new-password-file", str(new_file), "--yes"])
        assert code == 0
        assert (home / "neo4j-password").read_text().strip() == new
        assert _connects(settings, new) and not _connects(settings, old)
    finally:
        # back, through the external-password path (the local file is left alone there)
        back = tmp_path / "back"
        back.write_text(old)
        monkeypatch.setenv("NEO4J_PASSWORD", new)
        monkeypatch.setenv("TASTEGRAPH_HOME", str(settings.home))
        assert main(["graph", "rotate-password", "--new-password-file", str(back), "--yes"]) == 0
    assert _connects(settings, old)
    assert (settings.home / "neo4j-password").read_text().strip() == old
