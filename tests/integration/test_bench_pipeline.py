"""`tastegraph bench pipeline` end to end on the real Kafka and Neo4j, with a small N.

The figures themselves are machine-dependent (docs/performance.md quotes measured ones); this
the command runs every phase, reports what the issue asks for, and leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from config.settings import Settings
from tools.worker_process import worker_env

pytestmark = pytest.mark.integration


def test_bench_pipeline_reports_every_figure_and_cleans_up(
    settings: Settings, neo4j_driver: Any
) -> None:
    args = ["bench", "pipeline", "--events", "600", "--naive-events", "8", "--live-seconds", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("events", "events_per_s", "naive_events_per_s", "speedup", "freshness_p50_s"):
        assert key in result
    assert result["events"] == 600 and result["embedded_share"] == 0.9
    assert result["events_per_s"] > 0 and result["naive_events_per_s"] > 0
    # micro-batches beat one encoder call and one transaction per event even at this size
    assert result["speedup"] > 1
    assert 0 < result["freshness_p50_s"] <= result["freshness_p99_s"]
    assert result["peak_rss_mb"] > 100  # the worker's (it loads the encoder), not the bench's
    stages = result["stage_ms_per_batch"]
    assert all(
        stages[s] is not None and stages[s] >= 0 for s in ("decode", "encode", "graph_write")
    )
    # the run's nodes are gone (ids carry the run's prefix)
    records, _, _ = neo4j_driver.execute_query(
        "MATCH (n) WHERE n.user_id STARTS WITH $p OR n.item_id STARTS WITH $p RETURN count(n) AS n",
        p=result["run"],
        database_=settings.neo4j_database,
    )
    assert records[0]["n"] == 0
