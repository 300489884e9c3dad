"""Encoding off the asyncio loop: one dedicated thread, so heartbeats and commits go on."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import numpy as np

from encoder.protocol import TextEncoder


class AsyncEncoder:
    """Wraps a :class:`TextEncoder`; ``await encode(texts)`` runs it in a single-thread executor.

    One thread, because torch already uses every core for one batch and the encoder serialises
    calls anyway; a second thread would only contend. torch and the Rust tokenizer release the GIL
    while they compute, so the loop keeps running.
    """

    def __init__(self, encoder: TextEncoder, executor: ThreadPoolExecutor | None = None) -> None:
        self.encoder = encoder
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tastegraph-encoder"
        )

    @property
    def version(self) -> str:
        return self.encoder.version

    @property
    def dim(self) -> int:
        return self.encoder.dim

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encoder.encode, list(texts))

    def close(self) -> None:
        """Stop the executor's thread (after the call in progress) if this object made it."""
        if self._own_executor:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncEncoder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)


async def encode_off_loop(encoder: TextEncoder, texts: Sequence[str]) -> np.ndarray:
    """One-off: run ``encoder.encode(texts)`` in the loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, encoder.encode, list(texts))
