"""Derived data, beside the batches: user embeddings and similarity edges (refresh), and the
re-embedding of what older encoder versions embedded (after a model swap, which happens here).

Never in a batch's critical path: a batch commits strengths, and `DerivedWork` follows within a
refresh interval, on its own thread. The timers of `stream.app` call `refresh`; the model swap
(`stream.model_swap.ModelSwapper`) calls `reembed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor

from config.logs import kv
from config.settings import Settings
from encoder.protocol import TextEncoder
from graph.store import GraphStore
from stream.lifecycle import CurrentEncoder, StopSignal
from stream.metrics import Metrics
from stream.retry import retry_transient

log = logging.getLogger("tastegraph.derived")

REFRESH_CHUNK = 25  # nodes per refresh transaction (short locks beside the batches)


class DerivedWork:
    """Refresh, model swap and re-embedding: the derived data's side of the worker.

    Uses (does not own) the runtime's ``executor`` (the refresh thread), ``encode_executor`` (the
    encoder's thread, shared with the batches: it serves one caller at a time), the encoder now
    serving and the stop signal; a set stop signal ends a refresh between two chunks.
    """

    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        encoder: CurrentEncoder,
        metrics: Metrics,
        stop: StopSignal,
        executor: Executor,
        encode_executor: Executor,
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.metrics = metrics
        self.stop = stop
        self.executor = executor
        self.encode_executor = encode_executor

    async def refresh(self, limit: int = 500, chunk: int = REFRESH_CHUNK) -> int:
        """Recomputes user embeddings and similarity edges of what batches changed.

        Small transactions of ``chunk`` nodes hold their locks briefly, so a batch writing the
        same users never waits long. The dirty flags live in the graph, so a crash loses no
        refresh. Returns how many nodes it refreshed (at most about ``limit``).
        """
        total = 0
        step = max(1, min(chunk, limit))
        loop = asyncio.get_running_loop()
        while total < limit and not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                n = await retry_transient(
                    lambda: loop.run_in_executor(
                        self.executor, self.store.refresh_dirty, self.encoder.version, step
                    ),
                    max_delay=self.settings.write_retry_max_s,
                    stop=self.stop,
                )
            except Exception as e:
                # derived data only: the dirty flags stay and the next run tries again
                if not self.stop.is_set():
                    log.error("refresh failed %s", kv(error=repr(e)[:300]))
                return total
            if n:
                self.metrics.observe_stage("refresh", time.perf_counter() - t0)
            total += int(n)
            if n < step:
                break
        return total

    async def swap_encoder(self, encoder: TextEncoder) -> str:
        """Replaces the encoder between two batches (waits for the running one); returns the
        previous version. Items and users of older versions are re-embedded by `reembed`."""
        return await self.encoder.swap(encoder)

    async def reembed(self, limit: int = 200) -> int:
        """One bounded step of re-embedding what older encoder versions embedded.

        Up to ``limit`` items with a stale version get a current embedding; once none is left, up
        to ``limit`` users of older versions are marked dirty, so `refresh` recomputes them from
        current-version items. Returns how many nodes it touched (0: nothing stale is left).
        """
        encoder = self.encoder.encoder
        version = encoder.version
        loop = asyncio.get_running_loop()
        try:
            stale = await loop.run_in_executor(
                self.executor, self.store.stale_items, version, limit
            )
            if stale:
                vectors = await loop.run_in_executor(
                    self.encode_executor, encoder.encode, [t for _, t in stale]
                )
                embeddings = {item_id: vectors[k] for k, (item_id, _) in enumerate(stale)}
                return int(
                    await loop.run_in_executor(
                        self.executor, self.store.set_item_embeddings, embeddings, version
                    )
                )
            return int(
                await loop.run_in_executor(
                    self.executor, self.store.mark_stale_users_dirty, version, limit
                )
            )
        except Exception as e:
            # the next step tries again; nothing half-written matters (version-tagged nodes)
            log.error("re-embedding failed %s", kv(error=repr(e)[:300]))
            return 0
