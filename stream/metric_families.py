"""The metric families of a tastegraph worker: names, help texts, labels and buckets.

`families` registers them in a registry; `stream.metrics.Metrics` holds them and has one method per
thing the worker reports. Names follow the Prometheus conventions (``tastegraph_`` prefix, counters
end in ``_total``, times are seconds); every histogram has explicit buckets.
"""

from __future__ import annotations

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


def _name(name: str) -> str:
    return f"{PREFIX}_{name}"


def families(r: CollectorRegistry) -> dict[str, Any]:
    """Every collector of a worker, registered in ``r``, by `stream.metrics.Metrics` field name."""
    return {
        "events_consumed": Counter(
            _name("events_consumed"),
            "Events read from Kafka, by topic and event type.",
            ["topic", "type"],
            registry=r,
        ),
        "invalid_events": Counter(
            _name("invalid_events"),
            "Events rejected by validation (sent to the dead-letter topic), by reason.",
            ["reason"],
            registry=r,
        ),
        "batch_size": Histogram(
            _name("batch_size"),
            "Events per micro-batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        ),
        "batch_seconds": Histogram(
            _name("batch_seconds"),
            "Processing time of one micro-batch, decode to commit.",
            buckets=DURATION_BUCKETS,
            registry=r,
        ),
        "stage_seconds": Histogram(
            _name("batch_stage_seconds"),
            "Time of one stage of a micro-batch: decode, encode, graph_write, refresh, commit.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=r,
        ),
        "freshness_seconds": Histogram(
            _name("event_to_graph_seconds"),
            "Freshness: commit time of the graph write minus the event's own time.",
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        ),
        "consumer_lag": Gauge(
            _name("consumer_lag"),
            "Messages between the consumer's position and the partition's high watermark.",
            ["topic", "partition"],
            registry=r,
        ),
        "events_in_flight": Gauge(
            _name("events_in_flight"),
            "Events read from Kafka whose offsets are not committed yet.",
            registry=r,
        ),
        "encoder_texts": Counter(
            _name("encoder_texts"),
            "Texts embedded by the encoder (cache misses that ran through the model).",
            registry=r,
        ),
        "encoder_seconds": Histogram(
            _name("encoder_encode_seconds"),
            "Time of one encoder call (one batch of texts).",
            buckets=DURATION_BUCKETS,
            registry=r,
        ),
        "encoder_cache_hits": Counter(
            _name("encoder_cache_hits"),
            "Texts whose embedding came from the encoder cache.",
            registry=r,
        ),
        "encoder_cache_misses": Counter(
            _name("encoder_cache_misses"),
            "Texts not in the encoder cache.",
            registry=r,
        ),
        "encoder_batch_tokens": Histogram(
            _name("encoder_batch_tokens"),
            "Tokens in one encoder batch (after truncation, before padding).",
            buckets=TOKEN_BUCKETS,
            registry=r,
        ),
        "neo4j_rows_written": Counter(
            _name("neo4j_rows_written"),
            "Rows written to Neo4j, by kind (e.g. event, interest, item, similar).",
            ["kind"],
            registry=r,
        ),
        "neo4j_write_seconds": Histogram(
            _name("neo4j_write_seconds"),
            "Time of one Neo4j write transaction, retries included.",
            buckets=DURATION_BUCKETS,
            registry=r,
        ),
        "neo4j_write_retries": Counter(
            _name("neo4j_write_retries"),
            "Neo4j writes retried after a transient error (by the worker, or by the driver"
            " inside a transaction: a deadlock, a leader switch).",
            registry=r,
        ),
        "neo4j_write_failures": Counter(
            _name("neo4j_write_failures"),
            "Neo4j writes that gave up (the worker stops consuming), by reason.",
            ["reason"],
            registry=r,
        ),
        "finetune_runs": Counter(
            _name("finetune_runs"),
            "Fine-tuning runs by result (promoted, rejected, failed).",
            ["result"],
            registry=r,
        ),
        "finetune_seconds": Histogram(
            _name("finetune_duration_seconds"),
            "Wall time of one fine-tuning run, evaluation included.",
            buckets=FINETUNE_BUCKETS,
            registry=r,
        ),
        "finetune_last_run": Gauge(
            _name("finetune_last_run_timestamp_seconds"),
            "Unix time at which the last fine-tuning run ended (0: none yet).",
            registry=r,
        ),
        "finetune_evaluation": Gauge(
            _name("finetune_evaluation"),
            "Evaluation figures of the last fine-tuning run, by metric and version role.",
            ["metric", "role"],
            registry=r,
        ),
        "model_version": Info(
            _name("model_version"),
            "The encoder model version now serving (value 1, the version is a label) and "
            "the registry's current version it was asked for (wanted; differs after a failed "
            "load).",
            registry=r,
        ),
        "model_load_failures": Counter(
            _name("model_load_failures"),
            "Model versions that failed to load (the worker keeps its encoder and retries).",
            ["version"],
            registry=r,
        ),
        "build_info": Info(
            _name("build"),
            "tastegraph build: package version and Python version.",
            registry=r,
        ),
    }
