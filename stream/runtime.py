"""Wires the parts a worker needs from the settings, and closes them: `open_runtime` / `Runtime`.

Built once at the entry point (`cli.worker`), before the Faust agents are attached (`stream.app`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from encoder.examples import ExampleCollector
from encoder.protocol import TextEncoder
from graph.store import GraphStore, InterestParams
from stream.derived import DerivedWork
from stream.lifecycle import CurrentEncoder, StopSignal, WorkerPools
from stream.metrics import Metrics, start_metrics_server
from stream.model_swap import ModelSwapper, encoder_loader
from stream.pipeline import BatchProcessor, DeadLetterSink

log = logging.getLogger("tastegraph.runtime")


@dataclass
class Runtime:
    """One worker's parts. It owns (and `close` closes, in order) the stop signal, the thread
    pools, the example collector's store, the Neo4j driver and the metrics server; the batch path
    (``processor``), the derived-data work (``derived``) and the model swap (``swapper``) use them.
    The dead-letter sink belongs to the Faust app, which closes its producer itself."""

    settings: Settings
    encoder: CurrentEncoder
    driver: Any
    store: GraphStore
    metrics: Metrics
    stop: StopSignal
    pools: WorkerPools
    processor: BatchProcessor
    derived: DerivedWork
    swapper: ModelSwapper
    examples: ExampleCollector | None = None
    metrics_server: Any = None  # what start_metrics_server returned

    def close(self) -> None:
        self.stop.set()  # no further refresh rounds
        self.pools.close()
        if self.examples is not None:
            self.examples.store.close()
        self.driver.close()
        log.info("driver closed")
        self.swapper.close()
        if self.metrics_server is not None:
            self.metrics_server.close()


def interest_params(settings: Settings) -> InterestParams:
    return InterestParams(
        half_life_s=settings.half_life_s,
        weights=dict(settings.weights),
        similar_k=settings.similar_k,
        similar_threshold=settings.similar_threshold,
        similar_search=settings.similar_search,
        text_weight=settings.text_weight,
        trend_days=settings.trend_days,
    )


def open_driver(settings: Settings) -> Any:
    import neo4j

    return neo4j.GraphDatabase.driver(
        settings.neo4j_url,
        auth=(settings.neo4j_user, settings.neo4j_password.get_secret_value()),
        notifications_min_severity="OFF",
    )


def open_store(settings: Settings) -> tuple[Any, GraphStore]:
    """A driver and a ``GraphStore`` for the configured Neo4j (close the driver when done)."""
    driver = open_driver(settings)
    return driver, GraphStore(driver, settings.neo4j_database, interest_params(settings))


def open_encoder(settings: Settings) -> TextEncoder:
    from encoder.backend import load_encoder_from_settings

    return load_encoder_from_settings(settings)


async def _no_dead_letters(values: Sequence[bytes]) -> None:
    raise RuntimeError("dead-letter sink not wired")


def open_runtime(
    settings: Settings,
    dead_letter: DeadLetterSink = _no_dead_letters,
    serve_metrics: bool = True,
    encoder: TextEncoder | None = None,
) -> Runtime:
    """Loads the encoder (the registry's current version, else ``settings.model``), opens the
    driver and ensures the schema, starts the metrics server, and builds the worker's parts
    around ``dead_letter`` (the Faust app's dead-letter topic; tools that never process batches
    leave the default, which refuses)."""
    from encoder.registry import BASE_VERSION
    from finetuning.stores import example_collector_for, registry_for

    # a wrong password or no Neo4j is said at once, not after loading the model
    driver = open_driver(settings)
    try:
        driver.verify_connectivity()
    except Exception:
        driver.close()
        raise
    # the registry's current version (a promoted fine-tune) wins over settings.model
    registry = registry_for(settings)
    current = registry.current()
    serving: str | None = current.version
    load_error = ""
    if encoder is None and current.version != BASE_VERSION:
        try:
            encoder = encoder_loader(settings)(current.model_ref)
        except Exception as e:
            # serve TASTEGRAPH_MODEL meanwhile; the swapper logs, counts, reports and retries
            serving, load_error = None, repr(e)[:300]
    encoder = encoder or open_encoder(settings)
    metrics = Metrics.create()
    # the driver's own retries of a transaction (a deadlock, a leader switch) count with ours
    store = GraphStore(
        driver,
        settings.neo4j_database,
        interest_params(settings),
        on_retry=lambda operation: metrics.write_retry(),
    )
    store.ensure_schema(encoder.dim)
    if serving not in (None, BASE_VERSION) and current.metadata.get("metrics_after"):
        metrics.set_evaluation("current", current.metadata["metrics_after"])
    server = None
    if serve_metrics:
        server = start_metrics_server(metrics, settings.metrics_host, settings.metrics_port)
    # examples are collected only when the worker fine-tunes (TASTEGRAPH_FINETUNE_ENABLED)
    examples = example_collector_for(settings) if settings.finetune_enabled else None
    current_encoder = CurrentEncoder(encoder)
    stop = StopSignal()
    pools = WorkerPools.open()
    processor = BatchProcessor(
        settings,
        store,
        current_encoder,
        dead_letter,
        metrics,
        executor=pools.graph,
        encode_executor=pools.encode,
        examples=examples,
    )
    derived = DerivedWork(
        settings,
        store,
        current_encoder,
        metrics,
        stop,
        executor=pools.refresh,
        encode_executor=pools.encode,
    )
    swapper = ModelSwapper(
        derived,
        registry,
        encoder_loader(settings),
        metrics,
        settings.reembed_limit,
        load_error=load_error,
    )
    return Runtime(
        settings=settings,
        encoder=current_encoder,
        driver=driver,
        store=store,
        metrics=metrics,
        stop=stop,
        pools=pools,
        processor=processor,
        derived=derived,
        swapper=swapper,
        examples=examples,
        metrics_server=server,
    )
