"""Scale-out: several `tastegraph worker` processes in one consumer group share the partitions.

On the real Kafka and Neo4j (`tastegraph services up`), with event topics of 4 partitions:

- a reference run: one worker processes a generated replay; the canonical dump of the graph;
- two workers (same TASTEGRAPH_APP_ID, their own metrics ports) process the same replay: both get
  partitions and consume events, every event is applied exactly once, and the graph equals the
  reference;
- two workers, and one of them stops (SIGTERM) or crashes (SIGKILL) in the middle of a rate-limited
  replay: Kafka moves its partitions to the other worker, nothing is lost or applied twice, the
  graph equals the reference.

Each run has its own topics and consumer group and starts from an empty graph. The graphs are
compared by `graph.dump.canonical_dump` without the derived parts (similarity edges, user
embeddings, `dirty` flags: their values depend on when refreshes ran) and without PartitionOffset
nodes (their keys name the run's topics). Floating-point values are compared to a relative 1e-6,
because events of different partitions are folded in a different order in each run, and embeddings
by direction (cosine 0.999) and length (1 %), because the encoder batches (and pads) texts
differently in each run.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from config.settings import Settings

from .harness import free_port, wait_for
from .harness import graph_state as harness_graph_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VENV_BIN = Path(sys.executable).parent
PARTITIONS = 4
USERS, ITEMS, EVENTS = 60, 120, 1500
T = TypeVar("T")
# Set by a batch and cleared by the refresh that follows: like the derived parts that
# `derived=False` leaves out (for items too), it depends on when refreshes ran, not on the events
REFRESHED = ("dirty",)


# --- helpers -------------------------------------------------------------------------------------


def tastegraph_cli() -> str:
    exe = VENV_BIN / "tastegraph"
    return str(exe) if exe.exists() else "tastegraph"


def applied_events(driver: Any, database: str) -> int:
    records, _, _ = driver.execute_query(
        "MATCH (e:AppliedEvent) RETURN count(e) AS n", database_=database, routing_="r"
    )
    return int(records[0]["n"])


def metric_total(port: int, name: str) -> float:
    """The sum of a metric's samples on a worker's /metrics (0 when it does not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


def group_members(servers: str, group: str) -> tuple[str, int]:
    """(state, members with an assignment) of a consumer group; ("unknown", 0) while the broker's
    group coordinator is not available yet."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    async def describe() -> tuple[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([group])
        except KafkaError:
            return "unknown", 0
        finally:
            await admin.close()
        _error, _gid, state, _ptype, _protocol, members, *_ = response.groups[0]
        return state, sum(1 for m in members if m[4])

    return asyncio.run(describe())


@dataclass
class Run:
    """One run: its topics and consumer group, its worker processes."""

    settings: Settings
    tmp_path: Path
    name: str = field(default_factory=lambda: f"scale{uuid.uuid4().hex[:10]}")
    workers: list[tuple[subprocess.Popen[bytes], int, Path]] = field(default_factory=list)

    def env(self, metrics_port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "TASTEGRAPH_APP_ID": self.name,
                "TASTEGRAPH_TOPIC_CLICKS": f"{self.name}-clicks",
                "TASTEGRAPH_TOPIC_BROWSES": f"{self.name}-browses",
                "TASTEGRAPH_TOPIC_PURCHASES": f"{self.name}-purchases",
                "TASTEGRAPH_TOPIC_ITEMS": f"{self.name}-items",
                "TASTEGRAPH_TOPIC_DEAD_LETTER": f"{self.name}-dead-letter",
                "TASTEGRAPH_TOPIC_PARTITIONS": str(PARTITIONS),
                "TASTEGRAPH_METRICS_HOST": "127.0.0.1",
                "TASTEGRAPH_METRICS_PORT": str(metrics_port),
                "TASTEGRAPH_MAX_BATCH": "100",
                "TASTEGRAPH_MAX_WAIT_S": "0.2",
                "TASTEGRAPH_LOG_LEVEL": "INFO",
            }
        )
        return env

    @property
    def topics(self) -> list[str]:
        return [f"{self.name}-{t}" for t in ("clicks", "browses", "purchases")]

    def start_worker(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log_path = self.tmp_path / f"{self.name}-worker-{len(self.workers)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [tastegraph_cli(), "worker"],
                env=self.env(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append((proc, port, log_path))
        return proc, port

    def wait_ready(self, members: int, timeout: float = 240.0) -> None:
        """Every worker serves /metrics; the group is stable with ``members`` assigned members."""
        for proc, port, _ in self.workers:

            def serving(proc: subprocess.Popen[bytes] = proc, port: int = port) -> bool:
                return self._alive(proc) and metric_total(port, "python_info") > 0

            wait_for(serving, timeout, f"the worker on :{port} to serve /metrics")

        self.wait_group(members, [proc for proc, _, _ in self.workers], timeout)

    def wait_group(
        self, members: int, alive: list[subprocess.Popen[bytes]], timeout: float
    ) -> None:
        """The group is stable with ``members`` assigned members; the ``alive`` workers must not
        exit meanwhile (a crash during the rebalance fails at once, with the logs)."""
        last = [("unknown", 0)]

        def stable() -> bool:
            for proc in alive:
                self._alive(proc)
            last[0] = group_members(self.settings.kafka_servers, self.name)
            return last[0] == ("Stable", members)

        what = f"consumer group {self.name} to be stable with {members} members"
        deadline = time.monotonic() + timeout
        while not stable():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what} (last: {last[0]}):\n{self.logs()}")
            time.sleep(1.0)

    def alive(self, *procs: subprocess.Popen[bytes]) -> bool:
        return all(self._alive(proc) for proc in procs)

    def _alive(self, proc: subprocess.Popen[bytes]) -> bool:
        if proc.poll() is not None:
            pytest.fail(f"a worker exited with {proc.returncode}:\n{self.logs()}")
        return True

    def replay(self, events_file: Path, rate: float | None = None) -> subprocess.Popen[bytes]:
        cmd = [tastegraph_cli(), "replay", str(events_file), "--no-progress"]
        if rate:
            cmd += ["--rate", str(rate)]
        return subprocess.Popen(
            cmd,
            env=self.env(free_port()),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        return proc.returncode

    def stop_all(self) -> None:
        for proc, _, _ in self.workers:
            self.stop(proc)

    def logs(self, lines: int = 30) -> str:
        out = []
        for _, port, path in self.workers:
            tail = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- worker :{port}\n" + "\n".join(tail))
        return "\n".join(out)


def wait_replayed(producer: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    try:
        out, _ = producer.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        producer.kill()
        out, _ = producer.communicate()
        pytest.fail(f"replay did not finish in {timeout} s: {out.decode(errors='replace')}")
    assert producer.returncode == 0, out.decode(errors="replace")


def wait_applied(run: Run, driver: Any, expected: int, timeout: float = 600.0) -> None:
    database = run.settings.neo4j_database

    def done() -> bool:
        for proc, _, _ in run.workers:
            if proc.poll() is None:
                break
        else:
            pytest.fail(f"every worker exited before the replay was applied:\n{run.logs()}")
        return applied_events(driver, database) >= expected

    wait_for(done, timeout, f"{expected} applied events ({run.logs(10)})", 1.0)


# --- graph comparison ----------------------------------------------------------------------------


def graph_state(driver: Any, database: str) -> dict[str, Any]:
    """`harness.graph_state` without the refresh's properties and the claim tokens."""
    return harness_graph_state(driver, database, REFRESHED, drop_node_properties=("claim",))


def is_vector(*values: list[Any]) -> bool:
    return all(isinstance(x, int | float) for v in values for x in v)


def same_direction(a: list[float], b: list[float]) -> bool:
    if len(a) != len(b):
        return False
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return na == nb
    cosine = sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)
    return cosine >= 0.999 and abs(na - nb) <= 0.01 * max(na, nb)


def close(a: Any, b: Any, path: str, problems: list[str]) -> None:
    if isinstance(a, float) or isinstance(b, float):
        if not (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        ):
            problems.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            problems.append(f"{path}: keys {sorted(set(a) ^ set(b))} differ")
        for k in set(a) & set(b):
            close(a[k], b[k], f"{path}.{k}", problems)
    elif isinstance(a, list) and isinstance(b, list) and len(a) >= 16 and is_vector(a, b):
        # embeddings: the encoder batches texts differently in each run, and padding to another
        # length changes the low digits (about 1e-3 in bfloat16, cosine 0.99998)
        if not same_direction(a, b):
            problems.append(f"{path}: vectors differ")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            problems.append(f"{path}: {len(a)} != {len(b)} elements")
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{path}[{i}]", problems)
    elif a != b:
        problems.append(f"{path}: {a!r} != {b!r}")


def assert_same_graph(got: dict[str, Any], want: dict[str, Any]) -> None:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing[:10]}, extra {extra[:10]}"
    problems: list[str] = []
    for key in want:
        close(got[key], want[key], key, problems)
    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale-data")
    cmd = [tastegraph_cli(), "generate", "--out", str(out), "--seed", "11", "--item-fields"]
    cmd += ["--users", str(USERS), "--items", str(ITEMS), "--events", str(EVENTS)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "events.jsonl.gz"


def clean(driver: Any, database: str) -> None:
    with driver.session(database=database) as session:  # an implicit transaction
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()


@pytest.fixture
def make_run(
    settings: Settings, kafka_admin: Any, neo4j_driver: Any, tmp_path: Path
) -> Iterator[Callable[[], Run]]:
    """Runs on an empty graph with their own 4-partition topics; workers stopped at the end."""
    runs: list[Run] = []

    def make() -> Run:
        for previous in runs:
            previous.stop_all()
        clean(neo4j_driver, settings.neo4j_database)
        run = Run(settings, tmp_path)
        kafka_admin.create_topics(*run.topics, partitions=PARTITIONS)
        kafka_admin.create_topics(
            f"{run.name}-items", partitions=PARTITIONS, configs={"cleanup.policy": "compact"}
        )
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop_all()


@pytest.fixture(scope="module")
def reference_state() -> dict[str, Any]:
    """Filled by the first test that needs it: the graph of a single-worker run."""
    return {}


def single_worker_graph(
    reference_state: dict[str, Any],
    make_run: Callable[[], Run],
    neo4j_driver: Any,
    events_file: Path,
    settings: Settings,
) -> dict[str, Any]:
    if "graph" not in reference_state:
        run = make_run()
        run.start_worker()
        run.wait_ready(members=1)
        wait_replayed(run.replay(events_file))
        wait_applied(run, neo4j_driver, EVENTS)
        run.stop_all()
        reference_state["graph"] = graph_state(neo4j_driver, settings.neo4j_database)
        assert applied_events(neo4j_driver, settings.neo4j_database) == EVENTS
    return dict(reference_state["graph"])


# --- the tests -----------------------------------------------------------------------------------


def test_two_workers_share_the_partitions_and_build_the_same_graph(
    make_run: Callable[[], Run],
    neo4j_driver: Any,
    events_file: Path,
    settings: Settings,
    reference_state: dict[str, Any],
) -> None:
    reference = single_worker_graph(reference_state, make_run, neo4j_driver, events_file, settings)

    run = make_run()
    (_, port_a), (_, port_b) = run.start_worker(), run.start_worker()
    run.wait_ready(members=2)
    wait_replayed(run.replay(events_file))
    wait_applied(run, neo4j_driver, EVENTS)

    run.alive(*(proc for proc, _, _ in run.workers))
    consumed = {
        port: metric_total(port, "tastegraph_events_consumed_total") for port in (port_a, port_b)
    }
    run.stop_all()
    assert all(n > 0 for n in consumed.values()), f"a worker got no events: {consumed}"
    assert sum(consumed.values()) >= EVENTS
    assert applied_events(neo4j_driver, settings.neo4j_database) == EVENTS
    assert_same_graph(graph_state(neo4j_driver, settings.neo4j_database), reference)


@pytest.mark.parametrize("how", ["stop", "crash"])
def test_a_worker_leaving_in_the_middle_loses_nothing(
    how: str,
    make_run: Callable[[], Run],
    neo4j_driver: Any,
    events_file: Path,
    settings: Settings,
    reference_state: dict[str, Any],
) -> None:
    reference = single_worker_graph(reference_state, make_run, neo4j_driver, events_file, settings)

    run = make_run()
    (survivor, port_a), (leaver, port_b) = run.start_worker(), run.start_worker()
    run.wait_ready(members=2)
    producer = run.replay(events_file, rate=EVENTS / 20)  # about 20 s of traffic
    database = settings.neo4j_database

    def a_quarter_applied() -> bool:
        run.alive(survivor, leaver)  # a crash here is a bug of its own: fail with the logs
        return applied_events(neo4j_driver, database) >= EVENTS // 4

    wait_for(a_quarter_applied, 180, "a quarter of the events applied while both workers run")
    assert metric_total(port_b, "tastegraph_events_consumed_total") > 0, "B had no partitions"
    if how == "stop":  # SIGTERM: the worker leaves the group at once
        assert run.stop(leaver) == 0, run.logs()
    else:  # SIGKILL: its partitions move when its session times out; what it had written but
        # not committed to Kafka is delivered again to the other worker and must not count twice
        os.killpg(leaver.pid, signal.SIGKILL)
        assert leaver.wait(timeout=30) == -signal.SIGKILL
    survivor_before = metric_total(port_a, "tastegraph_events_consumed_total")
    assert applied_events(neo4j_driver, database) < EVENTS, "the replay ended before the rebalance"

    run.wait_group(1, [survivor], timeout=180)  # the remaining worker owns every partition
    wait_replayed(producer)
    wait_applied(run, neo4j_driver, EVENTS)
    survivor_after = metric_total(port_a, "tastegraph_events_consumed_total")
    run.stop_all()
    assert survivor_after > survivor_before, "the remaining worker took over nothing"
    assert applied_events(neo4j_driver, database) == EVENTS
    assert_same_graph(graph_state(neo4j_driver, database), reference)
