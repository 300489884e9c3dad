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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoder.base import BatchedEncoder
from encoder.cache import EmbeddingCache
from encoder.checkpoint_index import CheckpointEntry, checkpoint_key, read_entry, record_entry
from encoder.exceptions import EncoderError
from encoder.loading import DEFAULT_MODEL, load_pretrained, resolve_model, version_of
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
from encoder.standalone_tokenizer import StandaloneTokenizer, same_token_ids

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


@dataclass(frozen=True, slots=True)
class CheckpointFiles:
    """A checkpoint directory and its :func:`encoder.checkpoint_index.checkpoint_key`, taken
    before its weights were loaded."""

    path: Path
    key: str

    @classmethod
    def of(cls, model: str) -> CheckpointFiles:
        path = resolve_model(model).path
        return cls(path, checkpoint_key(path))


def _cache_roots(cache_dir: Path | None) -> list[Path]:
    """Where artefacts are looked for, in order: ``cache_dir``, then :func:`default_cache_dir`
    (the file depends only on the weights: a worker with a fresh TASTEGRAPH_HOME, tests or a
    second instance, need not export again)."""
    return [cache_dir, default_cache_dir()] if cache_dir is not None else [default_cache_dir()]


def _find_artefact(
    cache_dir: Path | None, version: str, min_median: float, min_p1: float
) -> OnnxArtefact | None:
    for root in _cache_roots(cache_dir):
        artefact = read_artefact(artefact_dir(root, version), min_median, min_p1)
        if artefact is not None:
            return artefact
    return None


def indexed_onnx_encoder(
    files: CheckpointFiles,
    threads: int = 0,
    max_tokens_per_batch: int = 8192,
    max_len: int = 128,
    cache_size: int = 100_000,
    *,
    cache_dir: Path | None = None,
    min_median: float = MIN_MEDIAN_COSINE,
    min_p1: float = MIN_P1_COSINE,
) -> OnnxEncoder | None:
    """The :class:`OnnxEncoder` of ``files`` without torch or the float32 weights, or None.

    Served when the index (:mod:`encoder.checkpoint_index`) knows ``files.key`` and the int8 file
    of that version is there and passes its check; None otherwise (the caller loads the weights).
    """
    entry = next(
        (e for root in _cache_roots(cache_dir) if (e := read_entry(root, files.key)) is not None),
        None,
    )
    if entry is None:
        return None
    artefact = _find_artefact(cache_dir, entry.version, min_median, min_p1)
    if artefact is None or not artefact.check.passed:
        return None
    tokenizer = StandaloneTokenizer.from_checkpoint(
        files.path, entry.model_max_length, entry.pad_token_id
    )
    if tokenizer is None:
        return None
    log.debug("%s: version %s from the checkpoint index", files.path, entry.version)
    return OnnxEncoder(
        open_session(artefact.path, threads), tokenizer, entry.version, entry.dim,
        max_positions=entry.positions, threads=threads, max_tokens_per_batch=max_tokens_per_batch,
        max_len=max_len, cache_size=cache_size,
    )  # fmt: skip


def _remember(
    files: CheckpointFiles, artefact: OnnxArtefact, entry: CheckpointEntry, tokenizer: Any
) -> None:
    """Records ``entry`` under ``files.key`` beside ``artefact`` when the files are unchanged
    since the key was taken and :class:`StandaloneTokenizer` tokenises the check sample as
    ``tokenizer`` does."""
    root = artefact.path.parent.parent.parent  # <root>/<version>/<recipe>/model.onnx
    standalone = StandaloneTokenizer.from_checkpoint(
        files.path, entry.model_max_length, entry.pad_token_id
    )
    if standalone is None or not same_token_ids(tokenizer, standalone, check_texts()):
        log.info("%s: the tokenizer needs transformers; not indexed", files.path)
        return
    if checkpoint_key(files.path) != files.key:
        log.info("%s changed while it was loaded; not indexed", files.path)
        return
    record_entry(root, files.key, entry, files.path)


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
    files: CheckpointFiles | None = None,
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

    Without ``loaded``, a checkpoint the index knows (:func:`indexed_onnx_encoder`) starts without
    torch, and one loaded here is indexed for the next start. ``files``: the checkpoint that
    ``loaded`` was read from, to index it (leave it out for weights not read from disk as they
    are, e.g. just fine-tuned).
    """
    if loaded is None and version is None:
        files = CheckpointFiles.of(model)
        served = indexed_onnx_encoder(
            files, threads, max_tokens_per_batch, max_len, cache_size,
            cache_dir=cache_dir, min_median=min_median, min_p1=min_p1,
        )  # fmt: skip
        if served is not None:
            return served
    net, tokenizer = loaded if loaded is not None else load_pretrained(model)[:2]
    version = version or version_of(net, tokenizer)
    dim = int(net.config.hidden_size)
    positions = int(getattr(net.config, "max_position_embeddings", 512) or 512)
    artefact = _find_artefact(cache_dir, version, min_median, min_p1)
    if artefact is None:
        started = time.perf_counter()
        sample = check_texts()
        directory = artefact_dir(cache_dir or default_cache_dir(), version)

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
    if files is not None:
        limit = int(getattr(tokenizer, "model_max_length", 0) or 0)
        entry = CheckpointEntry(version, dim, positions, limit, int(tokenizer.pad_token_id or 0))
        _remember(files, artefact, entry, tokenizer)
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
