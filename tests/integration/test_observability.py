"""The dashboards against a real Prometheus (Debian's package, see scripts/ensure-prometheus.sh).

Each test starts its own Prometheus on a free loopback port, with a temporary configuration that
scrapes a tastegraph metrics endpoint every second and a temporary TSDB directory. Then every PromQL
expression of every dashboard panel goes through Prometheus' HTTP API and must return at least one
series, and every metric name the dashboards use must be in the endpoint's /metrics.

- `test_dashboards_against_prometheus_scraping_the_metrics_endpoint`: the metrics object of this
  process, driven through its whole API, served by `start_metrics_server` (needs only Prometheus).
- `test_worker_replay_scraped_by_prometheus`: a real `tastegraph worker` processes a replay into
  the real Kafka and Neo4j while Prometheus scrapes it.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from stream.metrics import Metrics, start_metrics_server

from .harness import free_port
from .harness import wait_for as poll

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
T = TypeVar("T")


def _load_queries() -> ModuleType:
    path = ROOT / "deploy" / "grafana" / "queries.py"
    spec = importlib.util.spec_from_file_location("tastegraph_dashboard_queries", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


queries = _load_queries()


# --- helpers -------------------------------------------------------------------------------------


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """`harness.wait_for`, through fetch errors (the endpoint may not answer yet)."""
    fetch_errors = (OSError, urllib.error.URLError, ValueError)
    return cast(T, poll(check, timeout, what, interval, ignore=fetch_errors))


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def sample_names(metrics_text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(metrics_text) for s in f.samples}


class Prometheus:
    """A real Prometheus server scraping one target every second, in a temporary directory."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: run scripts/ensure-prometheus.sh")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "tastegraph",
                            "scrape_interval": "1s",
                            "scrape_timeout": "900ms",
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--query.lookback-delta=30s",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for("Prometheus to be ready", self._ready, timeout=60)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited early:\n{self.log_tail()}")
        try:
            http_get(f"{self.url}/-/ready", timeout=2)
            return True
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self, n: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at the current time; the result's series (vector or scalar)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as e:
            raise AssertionError(f"Prometheus rejected {expr!r}: {e.read().decode()}") from e
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        series = self.query(expr)
        return float(series[0]["value"][1]) if series else None

    def target_up(self) -> bool:
        return self.value('up{job="tastegraph"}') == 1.0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        server = Prometheus(tmp_path, target)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def empty_panels(prom: Prometheus) -> list[str]:
    """The panel expressions for which Prometheus returns no series."""
    return [
        f"{q.dashboard} / {q.panel} [{q.ref_id}]: {q.promql}"
        for q in queries.panel_queries()
        if not prom.query(q.promql)
    ]


def check_dashboards(prom: Prometheus, metrics_text: str, timeout: float = 60.0) -> None:
    """Every panel expression returns a series (waiting up to ``timeout`` for the scrapes to
    catch up); every metric name the dashboards use is in ``metrics_text`` (a /metrics page)."""
    deadline = time.monotonic() + timeout
    while (empty := empty_panels(prom)) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert not empty, "panels without any series:\n" + "\n".join(empty)
    missing = queries.all_metric_names() - sample_names(metrics_text)
    assert not missing, f"dashboards use metrics absent from /metrics: {sorted(missing)}"


# --- the metrics endpoint alone ------------------------------------------------------------------


def drive_every_metric(m: Metrics, step: int) -> None:
    """One round of what a worker, its encoder, its writer and its fine-tuning agent report."""
    for topic, etype in (("clicks", "click"), ("browses", "browse"), ("purchases", "purchase")):
        m.event_consumed(topic, etype, 10 + step)
        for partition in range(2):
            m.set_lag(topic, partition, 100 - step)
    m.invalid("not_json")
    m.set_in_flight(20)
    m.observe_batch(30, 0.12)
    for stage, seconds in (
        ("decode", 0.002),
        ("encode", 0.06),
        ("graph_write", 0.04),
        ("refresh", 0.01),
        ("commit", 0.003),
    ):
        m.observe_stage(stage, seconds)
    m.observe_committed([m.wall_clock() - 0.3, m.wall_clock() - 5400.0])
    m.encoder_stats(texts=12, seconds=0.05, tokens=700, cache_hits=18, cache_misses=12)
    m.rows_written("event", 30)
    m.rows_written("interest", 12)
    m.observe_write(0.04)
    m.write_retry()
    if step == 0:
        m.finetune_run(
            "promoted",
            95.0,
            evaluation={
                "current": {"hr_at_10": 0.41, "ndcg_at_10": 0.22},
                "candidate": {"hr_at_10": 0.45, "ndcg_at_10": 0.25},
            },
        )
        m.set_model_version("ft-0001")


def test_dashboards_against_prometheus_scraping_the_metrics_endpoint(
    prometheus_factory: Callable[[str], Prometheus],
) -> None:
    metrics = Metrics.create(CollectorRegistry())
    with start_metrics_server(metrics, "127.0.0.1", 0) as server:
        prom = prometheus_factory(f"127.0.0.1:{server.port}")
        wait_for("Prometheus to scrape the endpoint", prom.target_up, timeout=60)
        step = 0

        def ready() -> bool:
            nonlocal step
            drive_every_metric(metrics, step)  # keeps the counters moving between scrapes
            step += 1
            return step >= 3 and not empty_panels(prom)

        wait_for("every dashboard panel to have a series", ready, timeout=90, interval=1.0)
        text = http_get(server.url)
        check_dashboards(prom, text)
        # the figures went through unchanged
        assert prom.value('tastegraph_finetune_runs_total{result="promoted"}') == 1.0
        assert prom.value('tastegraph_model_version_info{version="ft-0001"}') == 1.0
        assert prom.value('sum(tastegraph_batch_stage_seconds_count{stage="refresh"})')


# --- a real worker -------------------------------------------------------------------------------


# taken from the sample: enough for several batches and fine-tuning examples, quick on a CPU
REPLAY_USERS = 10
REPLAY_EVENTS = 1000
DEFAULT_TOPICS = ("clicks", "browses", "purchases", "items")


def tastegraph_cli() -> str:
    exe = VENV_BIN / "tastegraph"
    return str(exe) if exe.exists() else "tastegraph"


def run_cli(
    args: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [tastegraph_cli(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"tastegraph {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def read_lines(path: Path) -> list[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return [line for line in f.read().splitlines() if line.strip()]


def event_user(line: bytes) -> str | None:
    """The user of a plain event or of a recorded event record; None for anything else."""
    record = json.loads(line)
    if "type" in record:
        return str(record.get("user_id"))
    if "value" in record and record.get("topic") in DEFAULT_TOPICS[:3]:
        value = record["value"]
        value = json.loads(value) if isinstance(value, str) else value
        return str(value.get("user_id")) if isinstance(value, dict) else ""
    return None


def replay_sample(tmp_path: Path, env: dict[str, str]) -> tuple[list[Path], int]:
    """What the worker gets: every event of the first REPLAY_USERS users of the demo sample (or
    of the recording, or of a generated set), at most REPLAY_EVENTS, plus the items. Returns the
    files to replay and the number of events in them."""
    demo = ROOT / "deploy" / "demo"
    if (demo / "events.jsonl.gz").exists():
        source, items = demo / "events.jsonl.gz", [demo / "items.jsonl.gz"]
    elif (ROOT / "tests" / "data" / "recording.jsonl").exists():
        source, items = ROOT / "tests" / "data" / "recording.jsonl", []
    else:
        generated = tmp_path / "generated"
        size = ["--users", "40", "--items", "80", "--events", str(REPLAY_EVENTS)]
        run_cli(["generate", "--out", str(generated), *size], env, timeout=300)
        source, items = generated / "events.jsonl.gz", [generated / "items.jsonl.gz"]
    users: set[str] = set()
    lines, events = [], 0
    for line in read_lines(source):
        user = event_user(line)
        if user is not None:
            if user not in users and len(users) >= REPLAY_USERS:
                continue
            if events >= REPLAY_EVENTS:
                break
            users.add(user)
            events += 1
        lines.append(line)
    sample = tmp_path / "replay.jsonl"
    sample.write_bytes(b"\n".join(lines) + b"\n")
    assert events > 0, f"no events in {source}"
    return [*(p for p in items if p.exists()), sample], events


@pytest.fixture
def worker_env(tmp_path: Path, settings: Any) -> dict[str, str]:
    """Unique topics and consumer group, the services of the environment, a free metrics port, its
    own home (model registry, fine-tuning examples) and fine-tuning knobs small enough for a
    run to end within the test."""
    run = f"obs{uuid.uuid4().hex[:10]}"
    env = dict(os.environ)
    env.update(
        {
            # the services stay those of the environment; the password moves out of their home
            "TASTEGRAPH_HOME": str(tmp_path / "home"),
            "NEO4J_PASSWORD": settings.neo4j_password.get_secret_value(),
            "TASTEGRAPH_LOCAL_KAFKA_PORT": str(settings.local_kafka_port),
            "TASTEGRAPH_LOCAL_NEO4J_PORT": str(settings.local_neo4j_port),
            "TASTEGRAPH_APP_ID": run,
            "TASTEGRAPH_TOPIC_CLICKS": f"{run}-clicks",
            "TASTEGRAPH_TOPIC_BROWSES": f"{run}-browses",
            "TASTEGRAPH_TOPIC_PURCHASES": f"{run}-purchases",
            "TASTEGRAPH_TOPIC_ITEMS": f"{run}-items",
            "TASTEGRAPH_TOPIC_DEAD_LETTER": f"{run}-dead-letter",
            "TASTEGRAPH_METRICS_HOST": "127.0.0.1",
            "TASTEGRAPH_METRICS_PORT": str(free_port()),
            "TASTEGRAPH_MAX_BATCH": "64",
            "TASTEGRAPH_MAX_WAIT_S": "0.1",
            "TASTEGRAPH_LOG_LEVEL": "INFO",
            "TASTEGRAPH_FINETUNE_ENABLED": "1",
            "TASTEGRAPH_FINETUNE_INTERVAL_S": "5",
            "TASTEGRAPH_FINETUNE_MIN_EXAMPLES": "10",
            "TASTEGRAPH_FINETUNE_STEPS": "2",
            "TASTEGRAPH_FINETUNE_BATCH_SIZE": "8",
            "TASTEGRAPH_FINETUNE_BUDGET_S": "60",
            "TASTEGRAPH_FINETUNE_HOLDOUT_FRACTION": "0.3",
        }
    )
    return env


@pytest.fixture
def worker(
    worker_env: dict[str, str], clean_graph: Any, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`tastegraph worker` on an empty graph (so every event is new and rows get written)."""
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [tastegraph_cli(), "worker"],
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def produce_raw(servers: str, topic: str, values: list[bytes]) -> None:
    """Sends raw bytes (not through tastegraph) so that the worker sees invalid events too."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=servers)
        await producer.start()
        try:
            for v in values:
                await producer.send_and_wait(topic, v)
        finally:
            await producer.stop()

    asyncio.run(send())


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of a /metrics page by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(http_get(url))
        for s in f.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


@pytest.mark.slow
def test_worker_replay_scraped_by_prometheus(
    worker_env: dict[str, str],
    worker: subprocess.Popen[bytes],
    prometheus_factory: Callable[[str], Prometheus],
    tmp_path: Path,
) -> None:
    from config.settings import Settings

    settings = Settings.from_env(worker_env)
    metrics_url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    prom = prometheus_factory(f"127.0.0.1:{settings.metrics_port}")

    def worker_serving() -> bool:
        if worker.poll() is not None:
            log = (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"the worker exited ({worker.returncode}):\n{log}")
        try:
            return "tastegraph_build_info" in http_get(metrics_url, timeout=2)
        except (OSError, urllib.error.URLError):
            return False

    files, events = replay_sample(tmp_path, worker_env)
    wait_for("the worker's /metrics", worker_serving, timeout=300, interval=1.0)
    wait_for("Prometheus to scrape the worker", prom.target_up, timeout=60)

    remap = [
        f"--topic={old}={new}"
        for old, new in zip(
            DEFAULT_TOPICS, (*settings.event_topics, settings.topic_items), strict=True
        )
    ]
    *items, sample = files
    if items:
        # the catalogue first, as in production: fine-tuning examples need the items' texts
        run_cli(["replay", "--no-progress", *remap, *map(str, items)], worker_env, timeout=600)
        n_items = sum(len(read_lines(p)) for p in items)

        def catalogue_done() -> bool:
            worker_serving()
            s = scrape(metrics_url)
            lags = [
                v
                for (n, labels), v in s.items()
                if n == "tastegraph_consumer_lag" and dict(labels)["topic"] == settings.topic_items
            ]
            return total(s, "tastegraph_batch_size_sum") >= n_items and bool(lags) and not any(lags)

        wait_for("the worker to process the catalogue", catalogue_done, timeout=300, interval=1.0)
    run_cli(["replay", "--no-progress", *remap, str(sample)], worker_env, timeout=600)
    invalid = [b"{not json", b'{"event_id": "x"}', b"[]"]
    produce_raw(settings.kafka_servers, settings.topic_clicks, invalid)

    def replay_done() -> bool:
        worker_serving()  # fails at once if the worker died
        s = scrape(metrics_url)
        lags = [v for (n, _), v in s.items() if n == "tastegraph_consumer_lag"]
        return (
            total(s, "tastegraph_events_consumed_total")
            + total(s, "tastegraph_invalid_events_total")
            >= events + len(invalid)
            and total(s, "tastegraph_invalid_events_total") >= len(invalid)
            and total(s, "tastegraph_events_in_flight") == 0
            and bool(lags)
            and not any(lags)
        )

    wait_for("the worker to process the replay", replay_done, timeout=600, interval=1.0)

    def finetuned() -> bool:
        worker_serving()
        s = scrape(metrics_url)
        runs = sum(
            v
            for (n, labels), v in s.items()
            if n == "tastegraph_finetune_runs_total" and dict(labels)["result"] != "skipped"
        )
        return runs >= 1

    # the fine-tuning dashboard needs a run: the worker's periodic agent (knobs above) does one
    wait_for("the worker to report a fine-tuning run", finetuned, timeout=300, interval=1.0)
    final = scrape(metrics_url)
    consumed = total(final, "tastegraph_events_consumed_total")
    wait_for(
        "Prometheus to scrape the final figures",
        lambda: prom.value("sum(tastegraph_events_consumed_total)") == consumed,
        timeout=60,
    )
    check_dashboards(prom, http_get(metrics_url))

    # the pipeline's figures moved, as Prometheus sees them
    assert consumed >= events * 0.9, (consumed, events)  # the sample is valid data
    assert (prom.value("sum(tastegraph_invalid_events_total)") or 0) >= len(invalid)
    assert prom.value("sum(tastegraph_event_to_graph_seconds_count)") == consumed
    assert (prom.value("sum(tastegraph_neo4j_rows_written_total)") or 0) > 0
    assert (prom.value("sum(tastegraph_batch_size_count)") or 0) >= 2
    assert (prom.value("sum(tastegraph_encoder_texts_total)") or 0) > 0
    assert (prom.value('sum(tastegraph_batch_stage_seconds_count{stage="encode"})') or 0) > 0
    topics = {s["metric"]["topic"] for s in prom.query("tastegraph_events_consumed_total")}
    assert topics and topics <= set(settings.event_topics), topics
    assert prom.query(f'tastegraph_consumer_lag{{topic="{settings.topic_clicks}"}}')
