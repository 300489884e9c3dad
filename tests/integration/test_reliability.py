"""Reliability on the real services (issue 7): bad input, crashes and outages lose nothing and count
nothing twice.

Every test runs the real worker (`tastegraph worker`, a subprocess with the real encoder) against
the Kafka and Neo4j that the settings point at, with topics and a consumer group of its own
(`harness.isolated`) and a cleaned graph.

- One *mixed* replay (module fixture) serves the input tests: tests/data/invalid.jsonl, 10,000
  fuzzed messages (`tools.fuzz.mutated_messages`), Cypher-injection payloads and one event that
  real Neo4j refuses to write, all through Kafka into one worker run.
- The fault tests (`slow`) replay a generated data set while a fault happens -- Neo4j stopped for
  30 s, the worker killed with SIGKILL five times, the Kafka broker restarted, the worker stopped
  with SIGTERM -- and compare the final graph with the graph of an uninterrupted run of the same
  events (`reference`): `graph.dump.canonical_dump` without derived data and PartitionOffset nodes;
  floats to a relative 1e-6 (events of different partitions fold in another order) and
  item embeddings to a cosine of 0.995 (the encoder pads batches differently, in bfloat16 where
  the CPU has it). Then the consumer group's committed
  offsets must equal the topics' end offsets: everything consumed and acknowledged.

The fault tests stop and start the local services of the instance the settings name
(`services`) and leave them running; they are skipped when KAFKA_BOOTSTRAP_SERVERS or
NEO4J_URI names external services. The figures of docs/reliability.md come from
`pytest -m integration tests/integration/test_reliability.py -s` (each test prints a FIGURES line).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.settings import Settings
from stream.validation import decode_bytes, parse_event, read_dead_letter
from tools.datagen import generate_dataset
from tools.fuzz import mutated_messages

from .faults import (
    Sent,
    applied,
    assert_all_acknowledged,
    committed,
    derived_differences,
    derived_state,
    graph_differences,
    graph_offsets,
    produce,
    read_topic,
    scalar,
    start_services,
    stop_service,
    wipe,
)
from .harness import (
    ROOT,
    Worker,
    env_of,
    graph_state,
    isolated,
    run_until_caught_up,
    topic_map,
    wait_for,
)

pytestmark = pytest.mark.integration

INVALID = ROOT / "tests" / "data" / "invalid.jsonl"
EVENTS, USERS, ITEMS, SEED = 2000, 60, 120, 7
FUZZ, FUZZ_SEED = 10_000, 3
REPLAY_ARGS = ("--rate", "80", "--no-progress")
FAULT_BATCH = 100  # small batches: a fault lands in the middle of the replay, not after it
# what an SQL/Cypher injection would try: close the literal or the map, comment the rest out, or
# smuggle a parameter or an identifier
INJECTIONS = (
    "x'}) DETACH DELETE n //",
    'x"}) MATCH (m) DETACH DELETE m //',
    "`) DETACH DELETE n WITH 1 AS `x",
    "$param",
    "{user_id: $user_id}",
    "x\\' OR 1=1 //",
    "'; CALL dbms.shutdown() //",
    "x\u0000y",
)
RETRIED = re.compile(r"failed, retrying|Transaction failed and will be retried")
POISON_CATEGORY = "\u20ac" * 4096  # valid (<= max_text_len chars), 12 kB: too large for the index


@pytest.fixture
def local_services(settings: Settings) -> Iterator[Settings]:
    """The fault tests need servers they can stop; they are started again whatever happens."""
    if not settings.use_local_services:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS or NEO4J_URI is set: no local server to stop")
    yield settings
    start_services(settings)


# --- the data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset() -> list[dict[str, Any]]:
    _, events = generate_dataset(EVENTS, seed=SEED, users=USERS, items=ITEMS, embedded_share=0.9)
    return events


@pytest.fixture(scope="module")
def events_file(dataset: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reliability") / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in dataset))
    return path


def replay_events(settings: Settings, events: Sequence[dict[str, Any]]) -> list[Sent]:
    """Produces events as `tastegraph replay` routes them (by type, keyed by user)."""
    from tools.recording import route

    return produce(
        settings,
        [
            (route(settings, e["type"]), e["user_id"].encode(), orjson.dumps(e), "event")
            for e in events
        ],
    )


def fault_settings(settings: Settings) -> Settings:
    # a short retry ceiling: the worker notices a recovered Neo4j within 2 s
    return isolated(settings, max_batch=FAULT_BATCH, write_retry_max_s=2.0)


@pytest.fixture(scope="module")
def reference(
    settings: Settings,
    neo4j_driver: Any,
    kafka_admin: Any,
    dataset: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The graph of an uninterrupted run of the data set."""
    s = fault_settings(settings)
    wipe(neo4j_driver, s.neo4j_database)
    replay_events(s, dataset)
    run_until_caught_up(s, tmp_path_factory.mktemp("reference") / "worker.log")
    assert applied(neo4j_driver, s.neo4j_database) == EVENTS
    assert_all_acknowledged(s)
    state = graph_state(neo4j_driver, s.neo4j_database)
    state["derived"] = derived_state(s, neo4j_driver)
    return state


def finish(
    s: Settings, driver: Any, worker: Worker, reference: dict[str, Any], timeout: float = 300.0
) -> list[str]:
    """Waits until every event is applied, stops the worker (SIGTERM) and compares the graph."""
    db = s.neo4j_database
    try:
        wait_for(lambda: applied(driver, db) >= EVENTS, timeout, f"{EVENTS} applied events")
    except AssertionError as e:
        raise AssertionError(f"{e}; worker log: {worker.log()}") from None
    rc = worker.stop(60)
    assert rc == 0, f"worker exited with {rc}: {worker.log()}"
    assert applied(driver, db) == EVENTS
    assert_all_acknowledged(s)
    want = dict(reference)
    derived = want.pop("derived")
    differences = graph_differences(graph_state(driver, db), want)
    assert not differences, f"{len(differences)} differences, first: {differences[:10]}"
    # derived data converges to the clean run's: the refresh state survived the faults
    differences, borderline = derived_differences(
        derived_state(s, driver), derived, s.similar_k, s.similar_threshold
    )
    figures(derived_edges_within_tolerance=borderline)
    assert not differences, f"{len(differences)} derived differences: {differences[:10]}"
    return differences


def figures(**values: Any) -> None:
    print("\nFIGURES " + " ".join(f"{k}={v}" for k, v in values.items()), file=sys.stderr)


# --- bad input: one worker run over invalid, fuzzed, hostile and poison messages ------------------


@dataclass
class Mixed:
    settings: Settings
    sent: list[Sent]
    dead: dict[tuple[str, int, int], tuple[bytes | None, dict[str, Any]]]
    log: str
    metrics_port: int
    ledger: set[str] = field(default_factory=set)


def _invalid_file_records(s: Settings) -> list[tuple[str, bytes | None, bytes | None, str]]:
    mapping = topic_map(s)
    out = []
    for line in INVALID.read_text().splitlines():
        obj = json.loads(line)
        key, value = decode_bytes("key", obj), decode_bytes("value", obj)
        out.append((mapping[obj["topic"]], key, value, f"file:{obj['expect']}"))
    return out


def _fuzz_records(
    s: Settings, events: list[dict[str, Any]]
) -> list[tuple[str, bytes | None, bytes | None, str]]:
    from tools.recording import route

    rng = random.Random(f"reliability-{FUZZ_SEED}")
    out: list[tuple[str, bytes | None, bytes | None, str]] = []
    for how, raw in mutated_messages(events, FUZZ, seed=FUZZ_SEED):
        # on the topic of its type, as a producer would send it (a random one when unreadable)
        try:
            etype = orjson.loads(raw).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            etype = None
        topic = route(s, etype) if isinstance(etype, str) else rng.choice(s.event_topics)
        out.append((topic, f"fuzz-{rng.randrange(100)}".encode(), raw, f"fuzz:{how}"))
    return out


def _hostile_records(s: Settings) -> list[tuple[str, bytes | None, bytes | None, str]]:
    out = []
    for n, payload in enumerate(INJECTIONS):
        event = {
            "event_id": f"inj-{n}-{payload}",
            "user_id": payload,
            "item_id": f"item {payload}",
            "type": "click",
            "ts": "2026-03-02T10:00:00Z",
            "title": payload,
            "category": f"cat {payload}",
            "text": f"search {payload}",
        }
        out.append((s.topic_clicks, payload.encode(), orjson.dumps(event), "injection"))
    poison = {
        "event_id": "poison-1",
        "user_id": "poison-user",
        "item_id": "poison-item",
        "type": "click",
        "ts": "2026-03-02T10:00:00Z",
        "category": POISON_CATEGORY,
    }
    out.append((s.topic_clicks, b"poison-user", orjson.dumps(poison), "poison"))
    return out


@pytest.fixture(scope="module")
def mixed(
    settings: Settings,
    neo4j_driver: Any,
    kafka_admin: Any,
    dataset: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Mixed:
    s = isolated(settings)
    wipe(neo4j_driver, s.neo4j_database)
    kafka_admin.create_topics(*s.event_topics, partitions=s.topic_partitions)
    records = _invalid_file_records(s) + _hostile_records(s) + _fuzz_records(s, dataset)
    sent = produce(s, records)
    t0 = time.monotonic()
    log_path = tmp_path_factory.mktemp("mixed") / "worker.log"
    run_until_caught_up(s, log_path, timeout=600)
    log = log_path.read_text(errors="replace")
    seconds = time.monotonic() - t0
    dead = {}
    for r in read_topic(s, s.topic_dead_letter):
        raw, record = read_dead_letter(r.value)
        where = (record["topic"], record["partition"], record["offset"])
        assert where not in dead, f"dead-lettered twice: {where}"
        dead[where] = (raw, record)
    ids, _, _ = neo4j_driver.execute_query(
        "MATCH (e:AppliedEvent) RETURN e.event_id AS id", database_=s.neo4j_database
    )
    figures(mixed_messages=len(sent), dead_lettered=len(dead), worker_s=round(seconds, 1))
    return Mixed(s, sent, dead, log, s.metrics_port, {r["id"] for r in ids})


def test_invalid_records_go_to_the_dead_letter_topic_with_their_source(mixed: Mixed) -> None:
    from_file = [m for m in mixed.sent if m.label.startswith("file:")]
    assert len(from_file) == 17
    for m in from_file:
        expect = m.label.removeprefix("file:")
        where = (m.topic, m.partition, m.offset)
        if expect == "valid":
            assert where not in mixed.dead
            event = parse_event(m.value, mixed.settings)
            assert event.event_id in mixed.ledger
            continue
        assert where in mixed.dead, f"{expect} record at {where} is not on the dead-letter topic"
        raw, record = mixed.dead[where]
        assert raw == m.value  # the original bytes (a tombstone stays None)
        assert record["reason"] == expect
        assert record["detail"] is not None
    # the worker went on after every bad record: it caught up and stopped by itself
    assert "caught up, stopping" in mixed.log


def test_a_record_neo4j_refuses_is_isolated_and_dead_lettered_alone(mixed: Mixed) -> None:
    (poison,) = [m for m in mixed.sent if m.label == "poison"]
    raw, record = mixed.dead[(poison.topic, poison.partition, poison.offset)]
    assert raw == poison.value
    assert record["reason"] == "write_failed"
    assert "too large to index" in record["detail"]
    assert "poison-1" not in mixed.ledger
    # only the poison record: every other valid record of its batch was written
    write_failed = [w for w, (_, r) in mixed.dead.items() if r["reason"] == "write_failed"]
    assert write_failed == [(poison.topic, poison.partition, poison.offset)]
    assert "poison record" in mixed.log


def test_every_fuzzed_message_is_applied_or_dead_lettered(mixed: Mixed) -> None:
    fuzz = [m for m in mixed.sent if m.label.startswith("fuzz:")]
    assert len(fuzz) == FUZZ
    dead = applied_ids = duplicates = 0
    seen: set[str] = set()
    for m in fuzz:
        if (m.topic, m.partition, m.offset) in mixed.dead:
            dead += 1
            continue
        # not dead-lettered: it must be a valid event, and its id is in the graph's ledger
        event = parse_event(m.value, mixed.settings, m.topic, m.partition, m.offset)
        assert event.event_id in mixed.ledger, f"{m} neither applied nor dead-lettered"
        if event.event_id in seen:
            duplicates += 1  # a mutation that set the id to one used before: applied once
        else:
            applied_ids += 1
        seen.add(event.event_id)
    assert dead + applied_ids + duplicates == FUZZ
    assert dead > FUZZ // 2 and applied_ids > FUZZ // 20
    # nothing else got into the graph: the ledger holds exactly the valid events' ids
    others = {parse_event(m.value, mixed.settings).event_id for m in mixed.sent if _valid(m, mixed)}
    assert mixed.ledger == others
    assert not re.search(r"Traceback|CRITICAL|crashed", mixed.log), mixed.log[-4000:]
    figures(fuzzed=FUZZ, fuzz_dead_lettered=dead, fuzz_applied=applied_ids, fuzz_dup_ids=duplicates)


def _valid(m: Sent, mixed: Mixed) -> bool:
    return (m.topic, m.partition, m.offset) not in mixed.dead


def test_injection_payloads_are_stored_as_plain_data(mixed: Mixed) -> None:
    driver_db = mixed.settings.neo4j_database
    from stream.runtime import open_store

    driver, _ = open_store(mixed.settings)
    try:
        for payload in INJECTIONS:
            records, _, _ = driver.execute_query(
                "MATCH (u:User {user_id: $u})-[r:INTERESTED_IN]->(i:Item {item_id: $i}) "
                "RETURN i.title AS title, r.strength AS s",
                u=payload,
                i=f"item {payload}",
                database_=driver_db,
            )
            assert len(records) == 1, f"{payload!r} not stored as data"
            assert records[0]["title"] == payload
            cat = scalar(
                driver,
                driver_db,
                "MATCH (c:Category {name: $n}) RETURN count(c)",
                n=f"cat {payload}",
            )
            assert cat == 1
        # nothing was deleted or shut down: every valid event is still there
        assert applied(driver, driver_db) == len(mixed.ledger) > FUZZ // 20
        labels = scalar(driver, driver_db, "CALL db.labels() YIELD label RETURN collect(label)")
        assert set(labels) <= {"User", "Item", "Category", "PartitionOffset", "AppliedEvent"}
    finally:
        driver.close()


def test_the_password_never_shows_in_logs_or_config(mixed: Mixed, settings: Settings) -> None:
    password = settings.neo4j_password.get_secret_value()
    assert len(password) >= 8
    assert password not in mixed.log
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "config"],
        env=env_of(mixed.settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "NEO4J_PASSWORD" in done.stdout and "**********" in done.stdout
    assert password not in done.stdout + done.stderr


def _listeners() -> dict[int, set[str]]:
    """Listening TCP sockets of this machine: port -> local addresses (IPv4 and IPv6)."""
    out: dict[int, set[str]] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            addr, port = local.split(":")
            out.setdefault(int(port, 16), set()).add(addr)
    return out


# 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc shows them
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def test_servers_listen_on_loopback_only(settings: Settings, tmp_path: Path) -> None:
    """The worker's metrics port binds 127.0.0.1 by default (and the local servers loopback)."""
    s = isolated(settings)
    worker = Worker(s, tmp_path / "worker.log")
    try:
        found = wait_for(
            lambda: _listeners().get(s.metrics_port), 240, "the metrics port", interval=0.5
        )
        assert found <= LOOPBACK, f"metrics port {s.metrics_port} listens on {found}"
    finally:
        assert worker.stop(60) == 0, worker.log()
    if settings.use_local_services:
        listeners = _listeners()
        for port in (settings.local_kafka_port, settings.local_neo4j_port):
            assert listeners.get(port, set()) <= LOOPBACK, f"port {port}: {listeners.get(port)}"


# --- faults: outages and crashes during a replay --------------------------------------------------


@pytest.mark.slow
def test_neo4j_down_30s_in_the_middle_of_a_replay(
    local_services: Settings,
    neo4j_driver: Any,
    reference: dict[str, Any],
    events_file: Path,
    tmp_path: Path,
) -> None:
    s = fault_settings(local_services)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    # a rate-limited replay: events keep arriving while Neo4j is away
    replay_log = (tmp_path / "replay.log").open("wb")
    replayer = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "replay", str(events_file), *REPLAY_ARGS],
        env=env_of(s),
        cwd=ROOT,
        stdout=replay_log,
        stderr=subprocess.STDOUT,
    )
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: applied(neo4j_driver, db) >= 200, 300, "200 applied events")
        before = graph_offsets(neo4j_driver, db)
        t_down = time.monotonic()
        stop_s = stop_service(s, "neo4j")
        # while Neo4j is away the worker must not acknowledge what it could not write: the
        # committed offsets stop where the graph stopped
        commits = []
        while time.monotonic() - t_down < 30:
            assert worker.proc.poll() is None, f"worker died: {worker.log()}"
            commits.append(committed(s))
            time.sleep(1)  # a sampling interval while the outage lasts, not a wait for a result
        down_s = time.monotonic() - t_down
        start_s = start_services(s)
        after = graph_offsets(neo4j_driver, db)  # what was written before the stop, at least
        # committed offset = next to read; the graph's offset = last written
        for key, offset in commits[-1].items():
            assert offset <= after.get(key, -1) + 1, f"{key} committed {offset}, graph {after}"
        assert commits[-1] == commits[-3], "the worker kept acknowledging while Neo4j was down"
        assert replayer.wait(300) == 0, (tmp_path / "replay.log").read_text()[-2000:]
        finish(s, neo4j_driver, worker, reference)
        # the driver retries a transaction for 30 s before the worker's own back-off takes over
        retries = len(RETRIED.findall(worker.log(10**7)))
        assert retries >= 2, "the worker did not retry the write"
        assert "Crashed" not in worker.log(10**7)
        assert before  # something was written before the outage, and more after it
        figures(
            neo4j_outage_s=round(down_s + start_s, 1),
            neo4j_stop_s=round(stop_s, 1),
            write_retries=retries,
            events=EVENTS,
        )
    finally:
        if replayer.poll() is None:
            replayer.kill()
            replayer.wait()
        replay_log.close()
        worker.kill()


@pytest.mark.slow
def test_kill_9_five_times_during_a_replay(
    settings: Settings,
    neo4j_driver: Any,
    reference: dict[str, Any],
    dataset: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    s = fault_settings(settings)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    replay_events(s, dataset)
    rng = random.Random(11)
    # kill at a random number of applied events in each sixth of the data set: always after some
    # progress of the restarted worker, never after the end
    thresholds = [int(EVENTS * (i + rng.uniform(0.2, 0.9)) / 6) for i in range(5)]
    kills = []
    for i, threshold in enumerate(thresholds):
        worker = Worker(s, tmp_path / f"worker-{i}.log")
        try:
            wait_for(
                lambda t=threshold: applied(neo4j_driver, db) >= t, 300, f"{threshold} applied"
            )
        except AssertionError as e:
            worker.kill()
            raise AssertionError(f"{e}: {worker.log()}") from None
        worker.kill()  # SIGKILL: no shutdown code runs
        kills.append(applied(neo4j_driver, db))
    worker = Worker(s, tmp_path / "worker-final.log")
    try:
        finish(s, neo4j_driver, worker, reference)
    finally:
        worker.kill()
    figures(kill9=len(kills), applied_at_kills=kills, events=EVENTS)


@pytest.mark.slow
def test_kafka_restart_in_the_middle_of_a_replay(
    local_services: Settings,
    neo4j_driver: Any,
    reference: dict[str, Any],
    dataset: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    s = fault_settings(local_services)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    half = EVENTS // 2
    replay_events(s, dataset[:half])
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: applied(neo4j_driver, db) >= half // 4, 300, f"{half // 4} applied")
        at_stop = applied(neo4j_driver, db)
        t0 = time.monotonic()
        stop_service(s, "kafka")
        start_services(s)
        restart_s = time.monotonic() - t0
        assert worker.proc.poll() is None, f"worker died: {worker.log()}"
        replay_events(s, dataset[half:])  # the rest of the replay, after the restart
        finish(s, neo4j_driver, worker, reference)
    finally:
        worker.kill()
    figures(kafka_restart_s=round(restart_s, 1), applied_at_stop=at_stop, events=EVENTS)


@pytest.mark.slow
def test_sigterm_stops_in_bounded_time_and_leaves_a_consistent_graph(
    local_services: Settings,
    neo4j_driver: Any,
    reference: dict[str, Any],
    dataset: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    """SIGTERM while batches flow, then SIGTERM while a batch cannot be written (Neo4j down)."""
    s = fault_settings(local_services)
    db = s.neo4j_database
    wipe(neo4j_driver, db)
    first = EVENTS * 2 // 3
    replay_events(s, dataset[:first])
    exits = []
    # 1. in the middle of the replay: the batch in flight finishes (or is left unacknowledged)
    worker = Worker(s, tmp_path / "worker-1.log")
    wait_for(lambda: applied(neo4j_driver, db) >= first // 3, 300, f"{first // 3} applied")
    exits.append(stop_timed(worker))
    assert_nothing_acknowledged_unwritten(s, neo4j_driver)
    # 2. Neo4j stops while the worker waits for events; the next ones cannot be written
    worker = Worker(s, tmp_path / "worker-2.log")
    try:
        wait_for(lambda: applied(neo4j_driver, db) >= first, 300, f"{first} applied")
        stop_service(s, "neo4j")
        replay_events(s, dataset[first:])
        wait_for(
            lambda: re.search(r"failed, retrying|Transaction failed", worker.log(10**7)),
            120,
            "a failing graph read or write",
        )
        exits.append(stop_timed(worker))
    finally:
        worker.kill()
        start_services(s)
    assert_nothing_acknowledged_unwritten(s, neo4j_driver)
    # 3. a new worker writes the rest: the same graph as an uninterrupted run
    worker = Worker(s, tmp_path / "worker-3.log")
    try:
        finish(s, neo4j_driver, worker, reference)
    finally:
        worker.kill()
    figures(sigterm_exit_s=[round(x, 1) for x in exits], events=EVENTS)


def stop_timed(worker: Worker, bound_s: float = 45.0) -> float:
    t0 = time.monotonic()
    rc = worker.stop(bound_s + 30)
    seconds = time.monotonic() - t0
    assert rc == 0, worker.log()
    assert seconds < bound_s, f"SIGTERM took {seconds:.1f} s: {worker.log()}"
    assert "driver closed" in worker.log(10**7), worker.log()
    return seconds


def assert_nothing_acknowledged_unwritten(s: Settings, driver: Any) -> None:
    """Every committed offset (the next record to read) is at most one past the graph's offset."""
    written = graph_offsets(driver, s.neo4j_database)
    for key, offset in committed(s).items():
        assert offset <= written.get(key, -1) + 1, f"{key}: committed {offset}, graph {written}"
