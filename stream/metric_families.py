"""The metric families of a tastegraph worker: names, help texts, labels and buckets.

`FAMILIES` declares them, one row each; `families` registers them in a registry;
`stream.metrics.Metrics` holds them and has one method per thing the worker reports. Names follow
the Prometheus conventions (``tastegraph_`` prefix, counters end in ``_total``, times are seconds);
every histogram has explicit buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "tastegraph"

#: the stages of one micro-batch, in order
STAGES: tuple[str, ...] = ("decode", "encode", "graph_write", "refresh", "commit")
#: results of a fine-tuning run (``skipped``: another run held the lock)
FINETUNE_RESULTS: tuple[str, ...] = ("promoted", "rejected", "failed", "skipped")
#: reasons a Neo4j write gives up; any other string is accepted too
WRITE_FAILURE_REASONS: tuple[str, ...] = (
    "unavailable",
    "transient_exhausted",
    "client_error",
    "other",
)

#: events in one micro-batch (TASTEGRAPH_MAX_BATCH defaults to 2000)
BATCH_SIZE_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000,
)  # fmt: skip
#: wall time of a batch or of one of its stages: 1 ms to 1 min
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: event-to-graph delay: 10 ms when live, up to days when an old recording is replayed
FRESHNESS_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0,
    4 * 3600.0, 86400.0, 7 * 86400.0,
)  # fmt: skip
#: tokens in one encoder batch (TASTEGRAPH_MAX_TOKENS_PER_BATCH defaults to 8192)
TOKEN_BUCKETS: tuple[float, ...] = (
    16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768,
)  # fmt: skip
#: a fine-tuning run: 10 s to 2 h (TASTEGRAPH_FINETUNE_BUDGET_S defaults to 300)
FINETUNE_BUCKETS: tuple[float, ...] = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


@dataclass(frozen=True)
class Family:
    """One metric family: the `stream.metrics.Metrics` field that holds it, its Prometheus kind,
    name (without the ``tastegraph_`` prefix), help text, labels and, for a histogram, buckets."""

    field: str
    kind: type[Counter] | type[Gauge] | type[Histogram] | type[Info]
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    def build(self, r: CollectorRegistry) -> Any:
        """The collector, registered in ``r``."""
        options: dict[str, Any] = {"registry": r}
        if self.buckets is not None:
            options["buckets"] = self.buckets
        return self.kind(f"{PREFIX}_{self.name}", self.help, self.labels, **options)


#: every family of a worker, in the order they are registered
FAMILIES: tuple[Family, ...] = (
    Family(
        "events_consumed", Counter, "events_consumed",
        "Events read from Kafka, by topic and event type.",
        ("topic", "type"),
    ),
    Family(
        "invalid_events", Counter, "invalid_events",
        "Events rejected by validation (sent to the dead-letter topic), by reason.",
        ("reason",),
    ),
    Family(
        "batch_size", Histogram, "batch_size",
        "Events per micro-batch.",
        buckets=BATCH_SIZE_BUCKETS,
    ),
    Family(
        "batch_seconds", Histogram, "batch_seconds",
        "Processing time of one micro-batch, decode to commit.",
        buckets=DURATION_BUCKETS,
    ),
    Family(
        "stage_seconds", Histogram, "batch_stage_seconds",
        "Time of one stage of a micro-batch: decode, encode, graph_write, refresh, commit.",
        ("stage",),
        DURATION_BUCKETS,
    ),
    Family(
        "freshness_seconds", Histogram, "event_to_graph_seconds",
        "Freshness: commit time of the graph write minus the event's own time.",
        buckets=FRESHNESS_BUCKETS,
    ),
    Family(
        "consumer_lag", Gauge, "consumer_lag",
        "Messages between the consumer's position and the partition's high watermark.",
        ("topic", "partition"),
    ),
    Family(
        "events_in_flight", Gauge, "events_in_flight",
        "Events read from Kafka whose offsets are not committed yet.",
    ),
    Family(
        "encoder_texts", Counter, "encoder_texts",
        "Texts embedded by the encoder (cache misses that ran through the model).",
    ),
    Family(
        "encoder_seconds", Histogram, "encoder_encode_seconds",
        "Time of one encoder call (one batch of texts).",
        buckets=DURATION_BUCKETS,
    ),
    Family(
        "encoder_cache_hits", Counter, "encoder_cache_hits",
        "Texts whose embedding came from the encoder cache.",
    ),
    Family(
        "encoder_cache_misses", Counter, "encoder_cache_misses",
        "Texts not in the encoder cache.",
    ),
    Family(
        "encoder_batch_tokens", Histogram, "encoder_batch_tokens",
        "Tokens in one encoder batch (after truncation, before padding).",
        buckets=TOKEN_BUCKETS,
    ),
    Family(
        "neo4j_rows_written", Counter, "neo4j_rows_written",
        "Rows written to Neo4j, by kind (e.g. event, interest, item, similar).",
        ("kind",),
    ),
    Family(
        "neo4j_write_seconds", Histogram, "neo4j_write_seconds",
        "Time of one Neo4j write transaction, retries included.",
        buckets=DURATION_BUCKETS,
    ),
    Family(
        "neo4j_write_retries", Counter, "neo4j_write_retries",
        "Neo4j writes retried after a transient error (by the worker, or by the driver"
        " inside a transaction: a deadlock, a leader switch).",
    ),
    Family(
        "neo4j_write_failures", Counter, "neo4j_write_failures",
        "Neo4j writes that gave up (the worker stops consuming), by reason.",
        ("reason",),
    ),
    Family(
        "finetune_runs", Counter, "finetune_runs",
        "Fine-tuning runs by result (promoted, rejected, failed).",
        ("result",),
    ),
    Family(
        "finetune_seconds", Histogram, "finetune_duration_seconds",
        "Wall time of one fine-tuning run, evaluation included.",
        buckets=FINETUNE_BUCKETS,
    ),
    Family(
        "finetune_last_run", Gauge, "finetune_last_run_timestamp_seconds",
        "Unix time at which the last fine-tuning run ended (0: none yet).",
    ),
    Family(
        "finetune_evaluation", Gauge, "finetune_evaluation",
        "Evaluation figures of the last fine-tuning run, by metric and version role.",
        ("metric", "role"),
    ),
    Family(
        "model_version", Info, "model_version",
        "The encoder model version now serving (value 1, the version is a label) and "
        "the registry's current version it was asked for (wanted; differs after a failed "
        "load).",
    ),
    Family(
        "model_load_failures", Counter, "model_load_failures",
        "Model versions that failed to load (the worker keeps its encoder and retries).",
        ("version",),
    ),
    Family(
        "build_info", Info, "build",
        "tastegraph build: package version and Python version.",
    ),
)  # fmt: skip


def families(r: CollectorRegistry) -> dict[str, Any]:
    """Every collector of a worker, registered in ``r``, by `stream.metrics.Metrics` field name."""
    return {family.field: family.build(r) for family in FAMILIES}
