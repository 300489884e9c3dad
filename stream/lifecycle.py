"""What the runtime owns and lends to the worker's parts: the stop signal, the thread pools and the
encoder now serving.

`stream.runtime.open_runtime` builds one of each, hands them to the batch path
(`stream.pipeline.BatchProcessor`) and the derived-data work (`stream.derived.DerivedWork`) at
construction, and `Runtime.close` closes them; the parts only use them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from config.logs import kv
from encoder.protocol import TextEncoder

log = logging.getLogger("tastegraph.lifecycle")


class StopSignal:
    """The worker is stopping: no further refresh, re-embedding or fine-tuning rounds start.

    One per worker, owned by the runtime. Set by whoever starts the shutdown (a SIGTERM through
    Faust's worker, the caught-up stop of ``--until-idle``, `Runtime.close`); read by the timers
    and the derived-data work. Thread-safe; once set it stays set.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self, reason: str = "") -> None:
        if not self._event.is_set() and reason:
            log.info("stopping %s", kv(reason=reason))
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:
        return self._event.is_set()


@dataclass(frozen=True)
class WorkerPools:
    """The worker's three threads, one job each.

    ``graph``: the batches' Neo4j calls (the sync driver); ``encode``: the encoder, which serves one
    caller at a time (a batch's encoding runs while its write transaction takes its locks and
    reads, see `graph.store.GraphBatch.pending`; re-embedding shares it); ``refresh``: the derived
    data beside the batches. Made by `WorkerPools.open`, shut down by `close` (the runtime's).
    """

    graph: ThreadPoolExecutor
    encode: ThreadPoolExecutor
    refresh: ThreadPoolExecutor

    @classmethod
    def open(cls) -> WorkerPools:
        return cls(
            ThreadPoolExecutor(1, thread_name_prefix="tastegraph-batch"),
            ThreadPoolExecutor(1, thread_name_prefix="tastegraph-encode"),
            ThreadPoolExecutor(1, thread_name_prefix="tastegraph-refresh"),
        )

    def close(self) -> None:
        """Waits for the running calls, then stops the threads."""
        for pool in (self.graph, self.encode, self.refresh):
            pool.shutdown(wait=True)


class CurrentEncoder:
    """The encoder now serving, replaced only between two batches.

    Every batch holds `in_use` from decode to commit; `swap` waits for it, so a batch is encoded
    and tagged with one version from start to end. Shared by the batch path and the derived-data
    work; the model swap (`stream.model_swap`) is the only caller of `swap`.
    """

    def __init__(self, encoder: TextEncoder) -> None:
        self.encoder = encoder
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str:
        return self.encoder.version

    @asynccontextmanager
    async def in_use(self) -> AsyncIterator[TextEncoder]:
        async with self._lock:
            yield self.encoder

    async def swap(self, encoder: TextEncoder) -> str:
        """Installs ``encoder`` once the running batch is done; returns the previous version."""
        async with self._lock:
            old = self.encoder.version
            self.encoder = encoder
        log.info("encoder swapped %s", kv(old=old, new=encoder.version))
        return old
