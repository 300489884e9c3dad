"""Prometheus metrics of a tastegraph worker: one `Metrics` object against an injected registry.

Build it once at the entry point and pass it down; serve it with `stream.metrics_server`::

    from stream.metrics import Metrics, start_metrics_server

    metrics = Metrics.create()                      # fresh registry (+ process/platform collectors)
    server = start_metrics_server(metrics, settings.metrics_host, settings.metrics_port)
    ...
    server.close()

Tests pass their own ``CollectorRegistry`` (and a fixed ``clock``/``wall_clock``).

The API the worker calls (cheap, never raising for a well-typed call; thread-safe except
``observe_encoder``, which keeps the last counters it saw: call it from one place):

============================================  ======================================================
``event_consumed(topic, type, n=1)``          ``n`` events of ``type`` read from ``topic``
``invalid(reason, n=1)``                      ``n`` events rejected (``InvalidEvent.reason``)
``observe_batch(size, seconds)``              one micro-batch: events in it, wall time end to end
``observe_stage(stage, seconds)``             time of one stage of a batch (see ``STAGES``)
``stage(stage)``                              context manager timing a stage with ``clock``
``observe_freshness(delays_seconds)``         event-to-graph delays (commit time − event time)
``observe_committed(event_times, now=None)``  same, computed from event times and ``wall_clock``
``encoder_stats(texts, seconds, tokens=0,     one encoder call: texts encoded, time, tokens in the
cache_hits=0, cache_misses=0)``               batch, cache hits and misses
``observe_encoder(stats)``                    the same from the encoder's cumulative
                                              ``EncoderStats`` (call once per batch: deltas)
``rows_written(kind, n)``                     ``n`` rows of ``kind`` written to Neo4j
``observe_write(seconds)``                    time of one Neo4j write transaction
``write_retry(n=1)``                          a transient Neo4j error was retried
``write_failure(reason)``                     a write gave up (see ``WRITE_FAILURE_REASONS``)
``set_lag(topic, partition, lag)``            consumer lag (messages) of one partition
``forget_partition(topic, partition)``        drop the lag series of a revoked partition
``set_in_flight(n)``                          events read but not yet committed
``finetune_run(result, seconds,               one fine-tuning run (``promoted``, ``rejected``,
evaluation=None)``                            ``failed``, ``skipped``) and its figures by role
``set_evaluation(role, figures)``             evaluation figures of a model version role
``set_model_version(version, wanted=None)``   the encoder version now serving (and the registry's
                                              current version, when the two differ)
``model_load_failed(version)``                a model version failed to load (it is retried)
============================================  ======================================================

Names follow the Prometheus conventions (``tastegraph_`` prefix, counters end in ``_total``, times
are seconds); every histogram has explicit buckets. Label values that form a small known set
(stages, fine-tuning results, validation and write-failure reasons) are created at start so that
their series exist, at 0, before anything happened; ``docs/metrics.md`` has the table of
all metrics.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from stream.metric_families import (
    BATCH_SIZE_BUCKETS,
    DURATION_BUCKETS,
    FINETUNE_BUCKETS,
    FINETUNE_RESULTS,
    FRESHNESS_BUCKETS,
    PREFIX,
    STAGES,
    TOKEN_BUCKETS,
    WRITE_FAILURE_REASONS,
    families,
)

if TYPE_CHECKING:
    from stream.metrics_server import MetricsServer


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tastegraph")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, eq=False)
class Metrics:
    """All metrics of one process, made by `Metrics.create`; the fields are the raw collectors."""

    registry: CollectorRegistry
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    events_consumed: Counter
    invalid_events: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    stage_seconds: Histogram
    freshness_seconds: Histogram
    consumer_lag: Gauge
    events_in_flight: Gauge
    encoder_texts: Counter
    encoder_seconds: Histogram
    encoder_cache_hits: Counter
    encoder_cache_misses: Counter
    encoder_batch_tokens: Histogram
    neo4j_rows_written: Counter
    neo4j_write_seconds: Histogram
    neo4j_write_retries: Counter
    neo4j_write_failures: Counter
    finetune_runs: Counter
    finetune_seconds: Histogram
    finetune_last_run: Gauge
    finetune_evaluation: Gauge
    model_version: Info
    model_load_failures: Counter
    build_info: Info
    _encoder_seen: dict[str, float] = field(default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry | None = None,
        *,
        version: str | None = None,
        invalid_reasons: Iterable[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
    ) -> Metrics:
        """Registers every metric in ``registry``.

        Without a registry, a fresh one with the process and platform collectors is made (so two
        calls never collide, unlike the global ``prometheus_client.REGISTRY``). ``clock`` times
        stages; ``wall_clock`` is the commit time for freshness. ``invalid_reasons`` (default: the
        validation's ``REASONS``) get their series at 0 from the start.
        """
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        r = registry
        m = cls(registry=r, clock=clock, wall_clock=wall_clock, **families(r))
        m.build_info.info(
            {
                "version": version or _package_version(),
                "python": platform.python_version(),
            }
        )
        for stage in STAGES:
            m.stage_seconds.labels(stage=stage)
        for result in FINETUNE_RESULTS:
            m.finetune_runs.labels(result=result)
        for reason in WRITE_FAILURE_REASONS:
            m.neo4j_write_failures.labels(reason=reason)
        if invalid_reasons is None:
            from stream.validation import REASONS

            invalid_reasons = REASONS
        for reason in invalid_reasons:
            m.invalid_events.labels(reason=reason)
        m.model_version.info({"version": "unknown", "wanted": "unknown"})
        return m

    # --- consuming ------------------------------------------------------------------------------

    def event_consumed(self, topic: str, type: str, n: int = 1) -> None:
        self.events_consumed.labels(topic=topic, type=type).inc(n)

    def invalid(self, reason: str, n: int = 1) -> None:
        self.invalid_events.labels(reason=reason).inc(n)

    def set_lag(self, topic: str, partition: int, lag: int | float) -> None:
        self.consumer_lag.labels(topic=topic, partition=str(partition)).set(max(0.0, float(lag)))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Removes the lag series of a partition no longer assigned to this worker."""
        with suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def set_in_flight(self, n: int) -> None:
        self.events_in_flight.set(n)

    # --- batches --------------------------------------------------------------------------------

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(seconds)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Times the body with ``clock`` as one observation of ``stage`` (also when it raises)."""
        start = self.clock()
        try:
            yield
        finally:
            self.observe_stage(stage, self.clock() - start)

    def observe_freshness(self, delays_seconds: Iterable[float]) -> None:
        """One observation per event; negative delays (clock skew) count as 0, NaN is skipped."""
        hist = self.freshness_seconds
        for d in delays_seconds:
            if not math.isnan(d):
                hist.observe(d if d > 0.0 else 0.0)

    def observe_committed(self, event_times: Sequence[float], now: float | None = None) -> None:
        """Freshness of events whose graph write just committed: ``now`` (default: wall clock)
        minus each event time (epoch seconds)."""
        t = self.wall_clock() if now is None else now
        self.observe_freshness(t - ts for ts in event_times)

    # --- encoder --------------------------------------------------------------------------------

    def encoder_stats(
        self,
        texts: int,
        seconds: float,
        tokens: int = 0,
        cache_hits: int = 0,
        cache_misses: int = 0,
    ) -> None:
        """One encoder call: ``texts`` run through the model in ``seconds`` (``tokens`` in the
        batch), after ``cache_hits`` texts were served from the cache and ``cache_misses`` not."""
        if texts:
            self.encoder_texts.inc(texts)
            self.encoder_seconds.observe(seconds)
            if tokens:
                self.encoder_batch_tokens.observe(tokens)
        if cache_hits:
            self.encoder_cache_hits.inc(cache_hits)
        if cache_misses:
            self.encoder_cache_misses.inc(cache_misses)

    def observe_encoder(self, stats: object) -> None:
        """Reports what an encoder did since the last call, from its cumulative counters
        (``encoder.stats.EncoderStats`` or anything with ``texts_encoded``, ``encode_seconds``,
        ``tokens``, ``cache_hits``, ``cache_misses``; a ``snapshot()`` is used when present).
        The first call reports everything counted so far."""
        snapshot = getattr(stats, "snapshot", None)
        current = snapshot() if callable(snapshot) else stats
        names = ("texts_encoded", "encode_seconds", "tokens", "cache_hits", "cache_misses")
        now = {n: float(getattr(current, n, 0) or 0) for n in names}
        seen = self._encoder_seen
        # a counter that went down means a new encoder (e.g. a promoted version): start over
        delta = {n: now[n] - seen.get(n, 0.0) for n in names}
        if any(d < 0 for d in delta.values()):
            delta = now
        seen.update(now)
        self.encoder_stats(
            texts=int(delta["texts_encoded"]),
            seconds=delta["encode_seconds"],
            tokens=int(delta["tokens"]),
            cache_hits=int(delta["cache_hits"]),
            cache_misses=int(delta["cache_misses"]),
        )

    # --- Neo4j ----------------------------------------------------------------------------------

    def rows_written(self, kind: str, n: int) -> None:
        self.neo4j_rows_written.labels(kind=kind).inc(n)

    def observe_write(self, seconds: float) -> None:
        self.neo4j_write_seconds.observe(seconds)

    def write_retry(self, n: int = 1) -> None:
        self.neo4j_write_retries.inc(n)

    def write_failure(self, reason: str) -> None:
        self.neo4j_write_failures.labels(reason=reason).inc()

    # --- fine-tuning ----------------------------------------------------------------------------

    def finetune_run(
        self,
        result: str,
        seconds: float,
        evaluation: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        """One fine-tuning run ended with ``result`` (see ``FINETUNE_RESULTS``) after ``seconds``.

        ``evaluation`` maps a version role (``current``: the version trained from, ``candidate``:
        the new one) to its figures, e.g. ``{"current": result.metrics_before, "candidate":
        result.metrics_after}``; non-numeric entries are left out. A ``skipped`` run (another
        one held the lock) is only counted.
        """
        self.finetune_runs.labels(result=result).inc()
        if result == "skipped":
            return
        self.finetune_seconds.observe(seconds)
        self.finetune_last_run.set(self.wall_clock())
        for role, figures in (evaluation or {}).items():
            self.set_evaluation(role, figures)

    def set_evaluation(self, role: str, figures: Mapping[str, object]) -> None:
        """Evaluation figures of a version role, e.g. the current version's at start-up."""
        for metric, value in figures.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.finetune_evaluation.labels(metric=metric, role=role).set(value)

    def set_model_version(self, version: str, wanted: str | None = None) -> None:
        """``version`` serves; ``wanted`` (default: the same) is what the registry asks for."""
        self.model_version.info({"version": version, "wanted": wanted or version})

    def model_load_failed(self, version: str) -> None:
        self.model_load_failures.labels(version=version).inc()


def start_metrics_server(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Serves ``metrics`` at ``http://host:port/metrics`` (see `stream.metrics_server`)."""
    from stream.metrics_server import start_metrics_server as start

    return start(metrics, host, port)


__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DURATION_BUCKETS",
    "FINETUNE_BUCKETS",
    "FINETUNE_RESULTS",
    "FRESHNESS_BUCKETS",
    "PREFIX",
    "STAGES",
    "TOKEN_BUCKETS",
    "WRITE_FAILURE_REASONS",
    "Metrics",
    "start_metrics_server",
]
