"""Wires the parts a worker needs from the settings: encoder, Neo4j store, metrics, processor."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from encoder.protocol import TextEncoder
from graph.store import GraphStore, InterestParams
from stream.pipeline import BatchProcessor

log = logging.getLogger("tastegraph.runtime")


@dataclass
class Runtime:
    settings: Settings
    encoder: TextEncoder
    driver: Any
    store: GraphStore
    metrics: Any
    processor: BatchProcessor
    swapper: Any = None  # stream.model_swap.ModelSwapper: hot swap of promoted versions
    metrics_server: Any = None  # what start_metrics_server returned (closed on close())

    def close(self) -> None:
        self.processor.stopping = True  # no further refresh rounds
        self.processor.executor.shutdown(wait=True)
        self.processor.encode_executor.shutdown(wait=True)
        self.processor.refresh_executor.shutdown(wait=True)
        if self.processor.examples is not None:
            self.processor.examples.store.close()
        self.driver.close()
        log.info("driver closed")
        if self.metrics_server is not None:
            self.metrics_server.close()


def interest_params(settings: Settings) -> InterestParams:
    return InterestParams(
        half_life_s=settings.half_life_s,
        weights=dict(settings.weights),
        similar_k=settings.similar_k,
        similar_threshold=settings.similar_threshold,
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
    settings: Settings, serve_metrics: bool = True, encoder: TextEncoder | None = None
) -> Runtime:
    from encoder.registry import BASE_VERSION
    from finetuning.job import example_collector_for, registry_for
    from stream.metrics import Metrics, start_metrics_server
    from stream.model_swap import ModelSwapper, encoder_loader

    # the registry's current version (a promoted fine-tune) wins over settings.model
    registry = registry_for(settings)
    current = registry.current()
    version_name = None
    if encoder is None and current.version != BASE_VERSION:
        try:
            encoder = encoder_loader(settings)(current.model_ref)
            version_name = current.version
        except Exception as e:
            log.error(
                "cannot load current model version %s, using %s: %r",
                current.version,
                settings.model,
                e,
            )
    encoder = encoder or open_encoder(settings)
    driver = open_driver(settings)
    store = GraphStore(driver, settings.neo4j_database, interest_params(settings))
    store.ensure_schema(encoder.dim)
    metrics = Metrics.create()
    metrics.set_model_version(version_name or encoder.version)
    if version_name and current.metadata.get("metrics_after"):
        metrics.set_evaluation("current", current.metadata["metrics_after"])
    server = None
    if serve_metrics:
        server = start_metrics_server(metrics, settings.metrics_host, settings.metrics_port)
    # examples are collected only when the worker fine-tunes (TASTEGRAPH_FINETUNE_ENABLED)
    examples = example_collector_for(settings) if settings.finetune_enabled else None
    processor = BatchProcessor(
        settings, store, encoder, _no_dead_letters, metrics, examples=examples
    )
    swapper = ModelSwapper(
        processor, registry, encoder_loader(settings), metrics, settings.reembed_limit
    )
    return Runtime(settings, encoder, driver, store, metrics, processor, swapper, server)
