"""The linear head (encoder/head.py): storage, application and training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoder.head import (
    HEAD_DIR,
    HeadConfig,
    HeadEncoder,
    apply_head,
    load_head,
    save_head,
    train_head,
)
from encoder.protocol import HashingEncoder


def test_a_head_round_trips_as_a_dense_module_listed_before_normalize(tmp_path: Path) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {
            "idx": 2,
            "name": "2",
            "path": "2_Normalize",
            "type": "sentence_transformers.models.Normalize",
        },
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert load_head(tmp_path) is None
    w = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    save_head(tmp_path, w)
    assert np.array_equal(load_head(tmp_path), w)
    listed = json.loads((tmp_path / "modules.json").read_text())
    assert [m["path"] for m in listed] == ["", "1_Pooling", HEAD_DIR, "2_Normalize"]
    assert [m["idx"] for m in listed] == [0, 1, 2, 3]
    config = json.loads((tmp_path / HEAD_DIR / "config.json").read_text())
    assert config["in_features"] == config["out_features"] == 8 and config["bias"] is False


def test_the_head_encoder_applies_the_head_and_names_it_in_its_version() -> None:
    inner = HashingEncoder(dim=8)
    identity = HeadEncoder(inner, np.eye(8, dtype=np.float32))
    texts = ["red mug", "blue mug", "garden chair"]
    assert np.allclose(identity.encode(texts), inner.encode(texts))
    w = np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32)
    head = HeadEncoder(inner, w)
    assert head.version.startswith("hashing-v1+head@") and head.version != identity.version
    out = head.encode(texts)
    assert np.allclose(out, apply_head(inner.encode(texts), w))
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_training_pulls_each_anchor_towards_its_partner() -> None:
    """Items paired at random (a taste the text does not show): after training, an anchor's
    partner ranks higher among all items than before."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    n, dim = 40, 16
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    partner = np.roll(np.arange(n), 1)
    pairs = np.stack([np.arange(n), partner], axis=1)
    pairs = np.concatenate([pairs, pairs[:, ::-1]])

    def mean_rank(v: np.ndarray) -> float:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return float(np.mean([(sims[i] > sims[i, partner[i]]).sum() for i in range(n)]))

    config = HeadConfig(steps=300, batch_size=16, scale=10.0, lr=1e-2, reg=0.01)
    w, stats = train_head(vectors, pairs, config)
    assert stats.steps == 300 and stats.last_loss is not None
    assert mean_rank(apply_head(vectors, w)) < mean_rank(vectors) - 3
