"""The metrics object against a fresh registry, its HTTP endpoint, and the dashboards' PromQL."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from config.exceptions import ConfigError
from stream.metrics import (
    BATCH_SIZE_BUCKETS,
    DURATION_BUCKETS,
    FINETUNE_BUCKETS,
    FINETUNE_RESULTS,
    FRESHNESS_BUCKETS,
    STAGES,
    TOKEN_BUCKETS,
    WRITE_FAILURE_REASONS,
    Metrics,
    start_metrics_server,
)

ROOT = Path(__file__).resolve().parents[2]


def load_queries() -> ModuleType:
    """deploy/grafana/queries.py, loaded by path (it is a script, not a package module)."""
    path = ROOT / "deploy" / "grafana" / "queries.py"
    spec = importlib.util.spec_from_file_location("tastegraph_dashboard_queries", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the class
    spec.loader.exec_module(module)
    return module


queries = load_queries()


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FakeClock, wall: FakeClock) -> Metrics:
    return Metrics.create(registry, version="9.9.9", clock=clock, wall_clock=wall)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    assert got is not None, f"no sample {name}{labels}"
    return got


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can expose, also for labelled metrics without children yet."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
        "summary": ("_sum", "_count", ""),
    }
    names = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(s.name for s in family.samples)
    return names


# --- naming --------------------------------------------------------------------------------------


def test_names_follow_prometheus_conventions(metrics: Metrics) -> None:
    counts = {"tastegraph_batch_size", "tastegraph_encoder_batch_tokens"}
    for family in metrics.registry.collect():
        if family.name.startswith(("process_", "python_")):
            continue
        assert family.name.startswith("tastegraph_"), family.name
        assert "_ms" not in family.name and "millis" not in family.name
        if family.type == "counter":
            assert all(
                s.name in (family.name + "_total", family.name + "_created") for s in family.samples
            )
        if family.type == "histogram" and family.name not in counts:
            assert family.name.endswith("_seconds"), family.name


def test_histograms_have_explicit_buckets(metrics: Metrics) -> None:
    expected = {
        "tastegraph_batch_size": BATCH_SIZE_BUCKETS,
        "tastegraph_batch_seconds": DURATION_BUCKETS,
        "tastegraph_batch_stage_seconds": DURATION_BUCKETS,
        "tastegraph_event_to_graph_seconds": FRESHNESS_BUCKETS,
        "tastegraph_encoder_encode_seconds": DURATION_BUCKETS,
        "tastegraph_encoder_batch_tokens": TOKEN_BUCKETS,
        "tastegraph_neo4j_write_seconds": DURATION_BUCKETS,
        "tastegraph_finetune_duration_seconds": FINETUNE_BUCKETS,
    }
    seen = {}
    for family in metrics.registry.collect():
        if family.type == "histogram":
            bounds = sorted(
                {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
            )
            seen[family.name] = tuple(bounds[:-1])
            assert bounds[-1] == float("inf")
    assert seen == {name: tuple(map(float, b)) for name, b in expected.items()}
    # freshness: 10 ms when live up to days when an old recording is replayed
    assert FRESHNESS_BUCKETS[0] == 0.01 and FRESHNESS_BUCKETS[-1] >= 86400.0
    assert DURATION_BUCKETS[0] <= 0.001


def test_fresh_registry_per_create() -> None:
    a, b = Metrics.create(), Metrics.create()
    assert a.registry is not b.registry
    if sys.platform == "linux":  # the default registry also carries the process metrics
        assert b.registry.get_sample_value("process_cpu_seconds_total") is not None


def test_build_info_and_model_version(metrics: Metrics, registry: CollectorRegistry) -> None:
    python = registry.get_sample_value(
        "tastegraph_build_info",
        {"version": "9.9.9", "python": next(iter(_python_labels(registry)))},
    )
    assert python == 1.0
    info = "tastegraph_model_version_info"
    assert value(registry, info, version="unknown", wanted="unknown") == 1.0
    metrics.set_model_version("base-2")
    assert value(registry, info, version="base-2", wanted="base-2") == 1.0
    assert registry.get_sample_value(info, {"version": "unknown", "wanted": "unknown"}) is None
    # the wanted version failed to load: the worker says what it really runs, and counts
    metrics.set_model_version("base-2", wanted="ft-0003")
    metrics.model_load_failed("ft-0003")
    assert value(registry, info, version="base-2", wanted="ft-0003") == 1.0
    assert value(registry, "tastegraph_model_load_failures_total", version="ft-0003") == 1.0


def _python_labels(registry: CollectorRegistry) -> set[str]:
    return {
        s.labels["python"]
        for f in registry.collect()
        for s in f.samples
        if s.name == "tastegraph_build_info"
    }


# --- consuming ---------------------------------------------------------------------------------


def test_events_consumed_by_topic_and_type(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.event_consumed("clicks", "click")
    metrics.event_consumed("clicks", "click", 4)
    metrics.event_consumed("purchases", "purchase", 2)
    name = "tastegraph_events_consumed_total"
    assert value(registry, name, topic="clicks", type="click") == 5
    assert value(registry, name, topic="purchases", type="purchase") == 2


def test_invalid_by_reason(metrics: Metrics, registry: CollectorRegistry) -> None:
    from stream.validation import REASONS

    name = "tastegraph_invalid_events_total"
    for reason in REASONS:  # every validation reason has its series from the start
        assert value(registry, name, reason=reason) == 0
    metrics.invalid("not_json")
    metrics.invalid("missing_field", 3)
    metrics.invalid("something_new")
    assert value(registry, name, reason="not_json") == 1
    assert value(registry, name, reason="missing_field") == 3
    assert value(registry, name, reason="something_new") == 1
    own = Metrics.create(CollectorRegistry(), invalid_reasons=["a"])
    assert own.registry.get_sample_value(name, {"reason": "a"}) == 0
    assert own.registry.get_sample_value(name, {"reason": "not_json"}) is None


def test_lag_per_partition_and_forget(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.set_lag("clicks", 0, 120)
    metrics.set_lag("clicks", 1, -3)  # a stale high watermark never shows negative lag
    metrics.set_lag("clicks", 0, 7)
    assert value(registry, "tastegraph_consumer_lag", topic="clicks", partition="0") == 7
    assert value(registry, "tastegraph_consumer_lag", topic="clicks", partition="1") == 0
    metrics.forget_partition("clicks", 1)
    metrics.forget_partition("clicks", 9)  # unknown: no error
    assert (
        registry.get_sample_value("tastegraph_consumer_lag", {"topic": "clicks", "partition": "1"})
        is None
    )


def test_in_flight(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.set_in_flight(250)
    assert value(registry, "tastegraph_events_in_flight") == 250
    metrics.set_in_flight(0)
    assert value(registry, "tastegraph_events_in_flight") == 0


# --- batches and stages --------------------------------------------------------------------------


def test_observe_batch(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe_batch(100, 0.2)
    metrics.observe_batch(2000, 1.5)
    assert value(registry, "tastegraph_batch_size_count") == 2
    assert value(registry, "tastegraph_batch_size_sum") == 2100
    assert value(registry, "tastegraph_batch_size_bucket", le="100.0") == 1
    assert value(registry, "tastegraph_batch_size_bucket", le="2000.0") == 2
    assert value(registry, "tastegraph_batch_seconds_sum") == pytest.approx(1.7)
    assert value(registry, "tastegraph_batch_seconds_bucket", le="0.25") == 1


def test_stages_exist_before_any_batch(registry: CollectorRegistry, metrics: Metrics) -> None:
    assert STAGES == ("decode", "encode", "graph_write", "refresh", "commit")
    for stage in STAGES:
        assert value(registry, "tastegraph_batch_stage_seconds_count", stage=stage) == 0


def test_stage_timer_uses_the_injected_clock(
    metrics: Metrics, registry: CollectorRegistry, clock: FakeClock
) -> None:
    with metrics.stage("encode"):
        clock.t += 0.75
    with pytest.raises(RuntimeError), metrics.stage("graph_write"):
        clock.t += 2.0
        raise RuntimeError("write failed")
    metrics.observe_stage("commit", 0.004)
    name = "tastegraph_batch_stage_seconds"
    assert value(registry, f"{name}_sum", stage="encode") == pytest.approx(0.75)
    assert value(registry, f"{name}_sum", stage="graph_write") == pytest.approx(2.0)
    assert value(registry, f"{name}_bucket", stage="commit", le="0.005") == 1


# --- freshness ---------------------------------------------------------------------------------


def test_freshness_histogram(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe_freshness([0.005, 0.3, 7200.0, -2.0, float("nan")])
    name = "tastegraph_event_to_graph_seconds"
    assert value(registry, f"{name}_count") == 4  # NaN skipped
    assert value(registry, f"{name}_bucket", le="0.01") == 2  # 5 ms and the clamped skew
    assert value(registry, f"{name}_bucket", le="0.5") == 3
    assert value(registry, f"{name}_bucket", le="3600.0") == 3
    assert value(registry, f"{name}_bucket", le="14400.0") == 4
    assert value(registry, f"{name}_sum") == pytest.approx(7200.305)


def test_observe_committed_uses_wall_clock(
    metrics: Metrics, registry: CollectorRegistry, wall: FakeClock
) -> None:
    metrics.observe_committed([wall.t - 0.02, wall.t - 90.0])
    metrics.observe_committed([100.0], now=100.5)
    name = "tastegraph_event_to_graph_seconds"
    assert value(registry, f"{name}_count") == 3
    assert value(registry, f"{name}_sum") == pytest.approx(90.52)
    assert value(registry, f"{name}_bucket", le="0.025") == 1


# --- encoder -----------------------------------------------------------------------------------


def test_encoder_stats(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.encoder_stats(texts=64, seconds=0.12, tokens=3000, cache_hits=200, cache_misses=64)
    metrics.encoder_stats(texts=0, seconds=0.0, cache_hits=50)  # all from the cache: no call
    assert value(registry, "tastegraph_encoder_texts_total") == 64
    assert value(registry, "tastegraph_encoder_encode_seconds_count") == 1
    assert value(registry, "tastegraph_encoder_encode_seconds_sum") == pytest.approx(0.12)
    assert value(registry, "tastegraph_encoder_batch_tokens_bucket", le="4096.0") == 1
    assert value(registry, "tastegraph_encoder_batch_tokens_bucket", le="2048.0") == 0
    assert value(registry, "tastegraph_encoder_cache_hits_total") == 250
    assert value(registry, "tastegraph_encoder_cache_misses_total") == 64


def test_observe_encoder_reports_deltas_of_cumulative_stats(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    from encoder.stats import EncoderStats

    stats = EncoderStats()
    stats.add(texts_encoded=10, encode_seconds=0.5, tokens=300, cache_hits=4, cache_misses=10)
    metrics.observe_encoder(stats)
    stats.add(texts_encoded=2, encode_seconds=0.1, tokens=40, cache_hits=30, cache_misses=2)
    metrics.observe_encoder(stats)
    metrics.observe_encoder(stats)  # nothing new: no encoder call observed
    assert value(registry, "tastegraph_encoder_texts_total") == 12
    assert value(registry, "tastegraph_encoder_encode_seconds_count") == 2
    assert value(registry, "tastegraph_encoder_encode_seconds_sum") == pytest.approx(0.6)
    assert value(registry, "tastegraph_encoder_batch_tokens_bucket", le="64.0") == 1
    assert value(registry, "tastegraph_encoder_cache_hits_total") == 34
    assert value(registry, "tastegraph_encoder_cache_misses_total") == 12
    fresh = EncoderStats()  # a new encoder (promoted version) starts from zero again
    fresh.add(texts_encoded=3, encode_seconds=0.2, tokens=90, cache_misses=3)
    metrics.observe_encoder(fresh)
    assert value(registry, "tastegraph_encoder_texts_total") == 15


# --- Neo4j -------------------------------------------------------------------------------------


def test_neo4j_writes(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.rows_written("event", 500)
    metrics.rows_written("interest", 120)
    metrics.rows_written("event", 10)
    metrics.observe_write(0.08)
    metrics.write_retry()
    metrics.write_retry(2)
    metrics.write_failure("unavailable")
    metrics.write_failure("constraint")  # an unlisted reason is fine
    assert value(registry, "tastegraph_neo4j_rows_written_total", kind="event") == 510
    assert value(registry, "tastegraph_neo4j_rows_written_total", kind="interest") == 120
    assert value(registry, "tastegraph_neo4j_write_seconds_bucket", le="0.1") == 1
    assert value(registry, "tastegraph_neo4j_write_retries_total") == 3
    name = "tastegraph_neo4j_write_failures_total"
    assert value(registry, name, reason="unavailable") == 1
    assert value(registry, name, reason="constraint") == 1
    assert value(registry, name, reason="other") == 0


def test_failure_reasons_exist_at_zero(registry: CollectorRegistry, metrics: Metrics) -> None:
    for reason in WRITE_FAILURE_REASONS:
        assert value(registry, "tastegraph_neo4j_write_failures_total", reason=reason) == 0


# --- fine-tuning -------------------------------------------------------------------------------


def test_finetune_run(metrics: Metrics, registry: CollectorRegistry, wall: FakeClock) -> None:
    for result in FINETUNE_RESULTS:
        assert value(registry, "tastegraph_finetune_runs_total", result=result) == 0
    assert value(registry, "tastegraph_finetune_last_run_timestamp_seconds") == 0
    metrics.finetune_run(
        "promoted",
        240.0,
        evaluation={"current": {"ndcg@10": 0.30}, "candidate": {"ndcg@10": 0.32}},
    )
    metrics.finetune_run("rejected", 35.0)
    assert value(registry, "tastegraph_finetune_runs_total", result="promoted") == 1
    assert value(registry, "tastegraph_finetune_runs_total", result="rejected") == 1
    assert value(registry, "tastegraph_finetune_duration_seconds_count") == 2
    assert value(registry, "tastegraph_finetune_duration_seconds_bucket", le="60.0") == 1
    assert value(registry, "tastegraph_finetune_last_run_timestamp_seconds") == wall.t
    name = "tastegraph_finetune_evaluation"
    assert value(registry, name, metric="ndcg@10", role="candidate") == pytest.approx(0.32)
    assert value(registry, name, metric="ndcg@10", role="current") == pytest.approx(0.30)
    metrics.finetune_run("skipped", 0.0)  # counted, but not a run that took time
    assert value(registry, "tastegraph_finetune_runs_total", result="skipped") == 1
    assert value(registry, "tastegraph_finetune_duration_seconds_count") == 2


def test_evaluation_figures_from_result_records(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    before = {"hr_at_10": 0.4, "ndcg_at_10": 0.25, "examples": 120, "k": 10, "note": "x"}
    metrics.set_evaluation("current", before)
    name = "tastegraph_finetune_evaluation"
    assert value(registry, name, metric="hr_at_10", role="current") == pytest.approx(0.4)
    assert value(registry, name, metric="examples", role="current") == 120
    assert registry.get_sample_value(name, {"metric": "note", "role": "current"}) is None


# --- the endpoint ------------------------------------------------------------------------------


def test_metrics_server_serves_the_registry(metrics: Metrics) -> None:
    metrics.event_consumed("clicks", "click", 3)
    with start_metrics_server(metrics, "127.0.0.1", 0) as server:
        assert server.port > 0
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in families["tastegraph_events_consumed"].samples
    }
    assert samples[("tastegraph_events_consumed_total", (("topic", "clicks"), ("type", "click")))]
    assert {"tastegraph_build", "tastegraph_build_info"} & set(families)


def test_metrics_server_port_in_use(metrics: Metrics) -> None:
    with (
        start_metrics_server(metrics, "127.0.0.1", 0) as first,
        pytest.raises(ConfigError, match="TASTEGRAPH_METRICS_PORT"),
    ):
        start_metrics_server(metrics, "127.0.0.1", first.port)


# --- dashboards ----------------------------------------------------------------------------------


def test_every_dashboard_has_queries() -> None:
    files = queries.dashboard_files()
    assert {p.stem for p in files} >= {
        "tastegraph-pipeline",
        "tastegraph-encoder",
        "tastegraph-neo4j",
        "tastegraph-finetune",
    }
    by_board: dict[str, int] = {}
    for q in queries.panel_queries():
        by_board[q.dashboard] = by_board.get(q.dashboard, 0) + 1
        assert "$" not in q.promql, q  # every Grafana variable is substituted
    assert all(by_board.get(p.stem, 0) >= 5 for p in files), by_board


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{stage=~"x|y"}[$__rate_interval]))) '
        "/ on(job) group_left(version) b_info + sum without (instance) (c_total offset 5m) "
        "and ignoring(role) time() - d"
    )
    assert queries.metric_names(expr) == {"a_bucket", "b_info", "c_total", "d"}


def test_dashboards_use_only_metrics_the_worker_exposes(metrics: Metrics) -> None:
    exposed = exposed_names(metrics.registry)
    used = queries.all_metric_names()
    assert used, "no metric names found in the dashboards"
    assert used <= exposed, f"dashboards use unknown metrics: {sorted(used - exposed)}"
    # and the pipeline overview covers what the issue asks for
    pipeline = set().union(
        *(
            queries.metric_names(q.expr)
            for q in queries.panel_queries()
            if q.dashboard == "tastegraph-pipeline"
        )
    )
    assert {
        "tastegraph_events_consumed_total",
        "tastegraph_consumer_lag",
        "tastegraph_event_to_graph_seconds_bucket",
        "tastegraph_invalid_events_total",
        "tastegraph_neo4j_write_failures_total",
    } <= pipeline


def test_every_panel_has_a_datasource_and_unique_ids() -> None:
    import json

    for path in queries.dashboard_files():
        board = json.loads(path.read_text())
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "tastegraph-prometheus", panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_prometheus_accepts_every_dashboard_expression(tmp_path: Path) -> None:
    """promtool parses every expression (as recording rules) and the scrape configuration."""
    rules = tmp_path / "dashboards.rules.yml"
    rules.write_text(queries.rules_file())
    done = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(queries.panel_queries())} rules found" in done.stdout
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    done = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def sample_labels(collector: MetricWrapperBase) -> set[str]:
    """The labels an Info metric's value carries (e.g. ``version``)."""
    return {k for f in collector.collect() for s in f.samples for k in s.labels}


def test_docs_table_lists_every_metric(metrics: Metrics) -> None:
    """docs/metrics.md has one row per metric, with its type and labels."""
    import re

    text = (ROOT / "docs" / "metrics.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`tastegraph_"):
            labels = set(re.findall(r"`(\w+)`", cells[2]))
            rows[cells[0].strip("`")] = (cells[1].split()[0], labels)
    expected = {}
    for field in dataclasses.fields(metrics):
        collector = getattr(metrics, field.name)
        if isinstance(collector, MetricWrapperBase):
            kind = str(collector._type)
            name = collector._name + {"counter": "_total", "info": "_info"}.get(kind, "")
            labels = (set(collector._labelnames) | sample_labels(collector)) - {"le"}
            expected[name] = ({"info": "gauge"}.get(kind, kind), labels)
    assert rows == expected
