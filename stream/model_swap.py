"""Hot swap: the worker picks up a newly promoted (or rolled back) encoder without a restart.

`ModelSwapper.poll()` runs on a timer (``TASTEGRAPH_MODEL_POLL_S``): one ``stat`` of the registry's
current pointer (`encoder.registry.CurrentWatcher`); when it changed, the new version is loaded in
a thread (the stream keeps running on the old one meanwhile) and `DerivedWork.swap_encoder`
installs it between two batches. Then, at ``TASTEGRAPH_REEMBED_LIMIT`` nodes per poll, items
embedded by older versions get a current embedding and users of older versions are marked dirty,
so the regular refresh recomputes them. Similarity is only ever computed between nodes of the same
``embedding_version`` (the refresh and recommendation queries filter on it), so the graph stays
usable throughout. A version that fails to load leaves the worker on the old one; the next poll
tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from config.logs import kv
from encoder.protocol import TextEncoder
from encoder.registry import CurrentWatcher, ModelRegistry
from stream.derived import DerivedWork

log = logging.getLogger("tastegraph.model_swap")

Loader = Callable[[str], TextEncoder]  # model reference (directory or package) -> encoder


def encoder_loader(settings: Any) -> Loader:
    """Loads a model reference with the worker's encoder settings
    (`encoder.backend.load_encoder_from_settings`)."""

    def load(model: str) -> TextEncoder:
        from encoder.backend import load_encoder_from_settings

        return load_encoder_from_settings(settings, model)

    return load


class ModelSwapper:
    """Polls the registry's current version and swaps the worker onto it, then re-embeds.

    Built by the runtime with the worker's `DerivedWork`; its ``poll`` runs on the model-poll
    timer of `stream.app`.
    """

    def __init__(
        self,
        derived: DerivedWork,
        registry: ModelRegistry,
        load: Loader,
        metrics: Any | None = None,
        reembed_limit: int = 200,
    ) -> None:
        self.derived = derived
        self.registry = registry
        self.load = load
        self.metrics = metrics
        self.reembed_limit = reembed_limit
        self.watcher = CurrentWatcher(registry)
        self.version = self.watcher.version  # the registry version the worker runs
        self._retry: str | None = None
        self.reembedding = True  # after start-up too: nodes of older versions may remain

    async def poll(self) -> str | None:
        """Swaps to a new current version if there is one; else one re-embedding step.
        Returns the version swapped to, or None."""
        target = self.watcher.changed() or self._retry
        if target is not None and target != self.version:
            if await self._swap(target):
                return target
            return None
        self._retry = None
        if self.reembedding and not self.derived.stop.is_set():
            touched = await self.derived.reembed(self.reembed_limit)
            if touched == 0:
                self.reembedding = False
                log.info("re-embedding done %s", kv(version=self.derived.encoder.version))
        return None

    async def _swap(self, version: str) -> bool:
        try:
            ref = self.registry.get(version).model_ref
            encoder = await asyncio.to_thread(self.load, ref)
        except Exception as e:
            self._retry = version
            log.error("loading model version failed %s", kv(version=version, error=repr(e)[:300]))
            return False
        self._retry = None
        old = await self.derived.swap_encoder(encoder)
        self.version = version
        self.reembedding = True
        if self.metrics is not None:
            self.metrics.set_model_version(version)
        log.info("model version swapped %s", kv(version=version, old=old, new=encoder.version))
        return True
