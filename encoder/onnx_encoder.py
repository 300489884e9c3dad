"""The CPU encoder on ONNX Runtime: the loaded BERT exported once, quantised to int8, then served.

``load_onnx_encoder(model)`` loads the checkpoint as :func:`encoder.bert.load_encoder` does (same
version), finds or makes its int8 ONNX file (:mod:`encoder.onnx_export`) and gives an
:class:`OnnxEncoder`: the same :class:`encoder.protocol.TextEncoder`, the same length-sorted token
budget batches, masked mean pooling and normalisation, embedding cache and counters as
:class:`encoder.bert.BertEncoder`. A model whose int8 embeddings fail the cosine check against
float32 PyTorch raises :class:`OnnxRejected`; :func:`encoder.backend.load_text_encoder` then falls
back to PyTorch.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from encoder.base import BatchedEncoder
from encoder.cache import EmbeddingCache
from encoder.exceptions import EncoderError
from encoder.loading import DEFAULT_MODEL, load_pretrained, version_of
from encoder.onnx_export import (
    MIN_MEDIAN_COSINE,
    MIN_P1_COSINE,
    OnnxArtefact,
    artefact_dir,
    build_artefact,
    check_quantised,
    check_texts,
    embed_reference,
    read_artefact,
)

log = logging.getLogger("tastegraph.encoder")


class OnnxRejected(EncoderError):
    """The int8 model's embeddings are too far from float32 PyTorch's (see ``check``)."""

    def __init__(self, message: str, artefact: OnnxArtefact) -> None:
        super().__init__(message)
        self.artefact = artefact


def default_cache_dir() -> Path:
    """Where int8 files go when the caller names no directory: ``~/.cache/tastegraph/onnx``."""
    return Path.home() / ".cache" / "tastegraph" / "onnx"


def mean_pool_np(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`encoder.bert.mean_pool` in numpy: masked mean (divisor clamped), L2-normalised."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden.astype(np.float32) * weights).sum(axis=1)
    pooled /= np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.clip(norms, 1e-12, None)


def open_session(path: Path, threads: int = 0, spinning: bool = False) -> Any:
    """An ONNX Runtime CPU session: ``threads`` intra-op threads (0: one per physical core), one
    inter-op thread. ``spinning=False``: idle pool threads sleep instead of busy-waiting for the
    next call, so they leave the cores to the rest of the worker (and to other processes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder(BatchedEncoder):
    """Batched, cached sentence encoder on an ONNX Runtime CPU session. ``encode`` is thread-safe
    (calls are serialised); run it off the asyncio loop like :class:`encoder.bert.BertEncoder`."""

    device = "cpu"
    dtype = "int8"
    backend = "onnx"

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        version: str,
        dim: int,
        *,
        max_positions: int = 512,
        threads: int = 0,
        max_tokens_per_batch: int = 8192,
        max_len: int = 128,
        cache_size: int = 100_000,
        cache: EmbeddingCache | None = None,
    ) -> None:
        super().__init__(
            tokenizer,
            version,
            dim,
            positions=max_positions,
            max_tokens_per_batch=max_tokens_per_batch,
            max_len=max_len,
            cache_size=cache_size,
            cache=cache,
        )
        self._session = session
        self._threads = threads or (os.cpu_count() or 1)

    @property
    def threads(self) -> int:
        return self._threads

    def _embed_batch(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (hidden,) = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return mean_pool_np(hidden, mask)


def load_onnx_encoder(
    model: str = DEFAULT_MODEL,
    threads: int = 0,
    max_tokens_per_batch: int = 8192,
    max_len: int = 128,
    cache_size: int = 100_000,
    *,
    cache_dir: Path | None = None,
    version: str | None = None,
    loaded: tuple[Any, Any] | None = None,
    min_median: float = MIN_MEDIAN_COSINE,
    min_p1: float = MIN_P1_COSINE,
) -> OnnxEncoder:
    """Load ``model`` (a directory or an installed package) as an int8 :class:`OnnxEncoder`.

    The int8 file is made on the first load of a model version (export, quantise, check against
    float32 PyTorch on :func:`encoder.onnx_export.check_texts`: tens of seconds) and read from
    ``cache_dir`` (default :func:`default_cache_dir`) afterwards; one already made in
    :func:`default_cache_dir` is used as it is. ``loaded`` is an already-loaded
    float32 ``(model, tokenizer)`` (e.g. just fine-tuned) instead of loading ``model``.
    Raises :class:`OnnxRejected` when the check fails (median cosine < ``min_median`` or 1st
    percentile < ``min_p1``); the figures are kept, so a rejected version is not re-exported.
    """
    net, tokenizer = loaded if loaded is not None else load_pretrained(model)[:2]
    version = version or version_of(net, tokenizer)
    dim = int(net.config.hidden_size)
    positions = int(getattr(net.config, "max_position_embeddings", 512) or 512)
    directory = artefact_dir(cache_dir or default_cache_dir(), version)
    artefact = read_artefact(directory, min_median, min_p1)
    if artefact is None and cache_dir is not None:
        # the same version made under the default home (the file depends only on the weights):
        # a worker with a fresh TASTEGRAPH_HOME (tests, a second instance) need not export again
        artefact = read_artefact(artefact_dir(default_cache_dir(), version), min_median, min_p1)
    if artefact is None:
        started = time.perf_counter()
        sample = check_texts()

        def run_check(path: Path) -> Any:
            reference = embed_reference(net, tokenizer, sample, max_len)
            candidate = OnnxEncoder(
                open_session(path, threads), tokenizer, version, dim,
                max_positions=positions, threads=threads, max_len=max_len, cache_size=0,
            )  # fmt: skip
            return check_quantised(reference, candidate.encode_uncached(sample), min_median, min_p1)

        artefact = build_artefact(net, directory, run_check, min_median, min_p1)
        log.info(
            "exported %s to int8 ONNX in %.1f s (%s): %s",
            version, time.perf_counter() - started, directory, artefact.check.describe(),
        )  # fmt: skip
    if not artefact.check.passed:
        raise OnnxRejected(f"int8 ONNX model of {version}: {artefact.check.describe()}", artefact)
    return OnnxEncoder(
        open_session(artefact.path, threads),
        tokenizer,
        version,
        dim,
        max_positions=positions,
        threads=threads,
        max_tokens_per_batch=max_tokens_per_batch,
        max_len=max_len,
        cache_size=cache_size,
    )
