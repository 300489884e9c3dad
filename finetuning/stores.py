"""Where fine-tuning keeps its data, from the settings: the examples file the worker accumulates
(and the collector that fills it), and the model registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoder.example_store import ExampleStore
from encoder.examples import ExampleBuilder, ExampleCollector
from encoder.registry import ModelRegistry, default_registry_root


def default_examples_path(settings: Any) -> Path:
    return Path(settings.home) / "finetune" / "examples.jsonl"


def registry_for(settings: Any) -> ModelRegistry:
    """The registry under ``settings.home / "models"``, with ``settings.model`` as its base."""
    root = default_registry_root(settings.home)
    return ModelRegistry(root, base_source=str(settings.model))


def example_collector_for(settings: Any, path: Path | str | None = None) -> ExampleCollector:
    """The worker's example collector: the durable store at `default_examples_path` (or ``path``)
    bounded by ``finetune_max_examples``, built by `example_builder_for`."""
    store = ExampleStore(
        int(settings.finetune_max_examples),
        path=Path(path) if path else default_examples_path(settings),
    )
    return ExampleCollector(store, example_builder_for(settings))


def example_builder_for(settings: Any) -> ExampleBuilder:
    """Contexts of ``finetune_context_n`` items, each weighted as the graph weighs a user's
    interest (``weights`` per event type, halved every ``half_life_days``)."""
    weights = settings.weights
    half_life = settings.half_life_days
    return ExampleBuilder(
        int(settings.finetune_context_n),
        type_weights=dict(weights) if weights else None,
        half_life_s=float(half_life) * 86400.0 if half_life else None,
    )
