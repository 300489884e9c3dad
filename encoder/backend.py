"""Choosing the inference backend: PyTorch (GPUs, training, the reference) or ONNX Runtime int8
(CPUs). Both give a :class:`encoder.protocol.TextEncoder` with the same version for the same
weights, so the worker takes either."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from encoder.exceptions import EncoderError
from encoder.head import HeadEncoder, load_head
from encoder.loading import DEFAULT_MODEL, load_pretrained, resolve_model, version_of
from encoder.onnx_encoder import (
    CheckpointFiles,
    OnnxRejected,
    indexed_onnx_encoder,
    load_onnx_encoder,
)
from encoder.onnx_export import MIN_MEDIAN_COSINE, MIN_P1_COSINE

log = logging.getLogger("tastegraph.encoder")

BACKENDS = ("auto", "torch", "onnx")


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def choose_backend(backend: str, device: str) -> str:
    """``torch`` or ``onnx`` for a requested ``backend`` on ``device``.

    ``auto``: ONNX Runtime when the device resolves to the CPU and onnxruntime is installed, else
    PyTorch. ``onnx`` runs on the CPU only, so it refuses a CUDA device; with it, device ``auto``
    means the CPU, decided without importing torch (the ONNX path may start without it).
    """
    if backend not in BACKENDS:
        raise EncoderError(f"encoder backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "onnx" and device in ("auto", "cpu"):
        on_cpu = True
    else:
        from encoder.bert import resolve_device

        on_cpu = resolve_device(device).type == "cpu"
    if backend == "onnx":
        if not on_cpu:
            raise EncoderError(f"the onnx backend runs on the CPU; device is {device!r}")
        if not onnxruntime_installed():
            raise EncoderError("the onnx backend needs onnxruntime (pip install onnxruntime)")
        return "onnx"
    if backend == "auto":
        return "onnx" if on_cpu and onnxruntime_installed() else "torch"
    return "torch"


def load_text_encoder(model: str = DEFAULT_MODEL, **options: Any) -> Any:
    """The encoder for ``model`` (:func:`_load_base_encoder`, same options), through the
    model folder's linear head when it has one (:mod:`encoder.head`: a fine-tuned version)."""
    encoder = _load_base_encoder(model, **options)
    head = load_head(resolve_model(model).path)
    return encoder if head is None else HeadEncoder(encoder, head)


def _load_base_encoder(
    model: str = DEFAULT_MODEL,
    *,
    backend: str = "auto",
    device: str = "auto",
    threads: int = 0,
    max_tokens_per_batch: int = 8192,
    max_len: int = 128,
    cache_size: int = 100_000,
    dtype: str = "auto",
    onnx_cache_dir: Path | None = None,
    min_median: float = MIN_MEDIAN_COSINE,
    min_p1: float = MIN_P1_COSINE,
) -> Any:
    """The encoder for ``model`` on the chosen backend (:func:`choose_backend`).

    With ONNX Runtime, a model whose int8 embeddings fail the cosine check against float32
    PyTorch falls back to PyTorch on the CPU (one warning says why); the weights are loaded once
    either way. ``min_median``/``min_p1``: the check's bars (:mod:`encoder.onnx_export`).
    A checkpoint whose int8 file is made and indexed starts on ONNX Runtime without torch or the
    float32 weights (:func:`encoder.onnx_encoder.indexed_onnx_encoder`).
    """
    chosen = choose_backend(backend, device)
    if chosen == "torch":
        from encoder.bert import load_encoder

        return load_encoder(
            model, device, threads, max_tokens_per_batch, max_len, cache_size, dtype=dtype
        )
    files = CheckpointFiles.of(model)
    served = indexed_onnx_encoder(
        files, threads, max_tokens_per_batch, max_len, cache_size,
        cache_dir=onnx_cache_dir, min_median=min_median, min_p1=min_p1,
    )  # fmt: skip
    if served is not None:
        return served
    net, tokenizer, _ = load_pretrained(model)
    version = version_of(net, tokenizer)
    try:
        return load_onnx_encoder(
            model,
            threads,
            max_tokens_per_batch,
            max_len,
            cache_size,
            cache_dir=onnx_cache_dir,
            version=version,
            loaded=(net, tokenizer),
            files=files,
            min_median=min_median,
            min_p1=min_p1,
        )
    except OnnxRejected as e:
        log.warning("%s; falling back to PyTorch on the CPU", e)
    from encoder.bert import BertEncoder

    return BertEncoder(
        net,
        tokenizer,
        version,
        device="cpu",
        threads=threads,
        max_tokens_per_batch=max_tokens_per_batch,
        max_len=max_len,
        cache_size=cache_size,
        dtype=dtype,
    )


def load_encoder_from_settings(settings: Any, model: str | None = None) -> Any:
    """:func:`load_text_encoder` with the fields of a ``config.settings.Settings``; ``model`` (a
    directory or package) replaces ``settings.model``, e.g. a registry version. int8 ONNX files
    are kept under ``<settings.home>/onnx``."""
    return load_text_encoder(
        settings.model if model is None else model,
        backend=settings.encoder_backend,
        device=settings.device,
        threads=settings.encoder_threads,
        max_tokens_per_batch=settings.max_tokens_per_batch,
        max_len=settings.max_len,
        cache_size=settings.encoder_cache_size,
        dtype=settings.encoder_dtype,
        onnx_cache_dir=Path(settings.home) / "onnx",
    )
