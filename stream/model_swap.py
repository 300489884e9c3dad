"""Hot swap: the worker picks up a newly promoted (or rolled back) encoder without a restart.

`ModelSwapper.poll()` runs on a timer (``TASTEGRAPH_MODEL_POLL_S``): one ``stat`` of the registry's
current pointer (`encoder.serving.CurrentWatcher`); when it changed, the new version is loaded in
a thread (the stream keeps running on the old one meanwhile) and `DerivedWork.swap_encoder`
installs it between two batches. Then, at ``TASTEGRAPH_REEMBED_LIMIT`` nodes per poll, items
embedded by older versions get a current embedding and users of older versions are marked dirty,
so the regular refresh recomputes them. Similarity is only ever computed between nodes of the same
``embedding_version`` (the refresh and recommendation queries filter on it), so the graph stays
usable throughout.

A version that fails to load (at start-up or on a swap) leaves the worker on the encoder it has:
the failure is logged, counted (``tastegraph_model_load_failures_total``) and reported in the
registry (`encoder.serving.report_serving`: `tastegraph models current` shows what each worker
really serves), and the load is retried after 1, 2, 4, ... polls (at most ``MAX_BACKOFF_POLLS``).
Meanwhile nothing is re-embedded: re-embedding moves the graph onto the encoder that serves, and
that is only done with the version the registry asks for, never with a fallback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from config.logs import kv
from encoder.protocol import TextEncoder
from encoder.registry import ModelRegistry
from encoder.serving import CurrentWatcher, ServingReport, report_serving, withdraw_serving
from stream.derived import DerivedWork

log = logging.getLogger("tastegraph.model_swap")

Loader = Callable[[str], TextEncoder]  # model reference (directory or package) -> encoder
MAX_BACKOFF_POLLS = 120  # a failing version is tried at least every 120 polls (10 min at 5 s)


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
        *,
        load_error: str = "",
        worker: str | None = None,
    ) -> None:
        """The worker starts on the registry's current version, or, with ``load_error`` (that
        version failed to load at start-up), on a model outside the registry (its fallback)."""
        self.derived = derived
        self.registry = registry
        self.load = load
        self.metrics = metrics
        self.reembed_limit = reembed_limit
        self.watcher = CurrentWatcher(registry)
        self.wanted = self.watcher.version  # the registry's current version
        self.version: str | None = None if load_error else self.wanted  # what serves
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.failures = 0
        self.error = ""
        self._wait_polls = 0
        # after start-up too: nodes of older versions may remain; never onto a fallback
        self.reembedding = self.version == self.wanted
        if load_error:
            self._failed(self.wanted, load_error)
        else:
            self._report()

    @property
    def serving_wanted(self) -> bool:
        return self.version == self.wanted

    async def poll(self) -> str | None:
        """Swaps to the current version if the worker does not serve it (a new one, or one that
        failed to load and whose back-off is over); else one re-embedding step. Returns the
        version swapped to, or None."""
        changed = self.watcher.changed()
        if changed is not None:
            self.wanted, self.failures, self.error, self._wait_polls = changed, 0, "", 0
        if not self.serving_wanted:
            if self._wait_polls > 0:
                self._wait_polls -= 1
                return None
            return self.wanted if await self._swap(self.wanted) else None
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
            self._failed(version, repr(e)[:300])
            return False
        old = await self.derived.swap_encoder(encoder)
        self.version = version
        self.failures, self.error, self._wait_polls = 0, "", 0
        self.reembedding = True
        self._report()
        log.info("model version swapped %s", kv(version=version, old=old, new=encoder.version))
        return True

    def _failed(self, version: str, error: str) -> None:
        """Logs, counts and reports a failed load; the next try waits 2**(failures-1) - 1 polls."""
        self.failures += 1
        self.error = error
        self._wait_polls = min(MAX_BACKOFF_POLLS, 2 ** (self.failures - 1) - 1)
        if self.metrics is not None:
            self.metrics.model_load_failed(version)
        log.error(
            "loading model version failed, keeping the current encoder %s",
            kv(
                version=version,
                serving=self.version or self.derived.encoder.version,
                failures=self.failures,
                retry_in_polls=self._wait_polls + 1,
                error=error,
            ),
        )
        self._report()

    def close(self) -> None:
        """The worker stops: its serving report goes (`tastegraph models current` lists the
        running workers, and a crashed one's last report, with its time)."""
        try:
            withdraw_serving(self.registry, self.worker)
        except OSError as e:
            log.warning("cannot remove the serving report %s", kv(error=repr(e)[:200]))

    def _report(self) -> None:
        """The serving metric and the registry's serving report tell what really serves."""
        serving = self.version or self.derived.encoder.version
        if self.metrics is not None:
            self.metrics.set_model_version(serving, wanted=self.wanted)
        report = ServingReport(self.worker, self.wanted, self.version, self.error, self.failures)
        try:
            report_serving(self.registry, report)
        except OSError as e:  # a read-only registry: the metric and the log still tell
            log.warning("cannot write the serving report %s", kv(error=repr(e)[:200]))
