"""Which version a checkpoint's files are, remembered beside the int8 ONNX artefacts, so that the
ONNX encoder starts without torch.

A model's version (:func:`encoder.loading.version_of`) is a digest of its float32 tensors: working
it out means importing torch and transformers and loading the weights, several hundred MB of a
worker's memory that ONNX Runtime does not need. So when the ONNX encoder has loaded a checkpoint
the torch way, it records ``<cache_dir>/checkpoints/<key>.json``: the version and the few facts
the encoder needs (width, positions, the tokenizer's length limit and pad id), under a **key of the
checkpoint's files**: :func:`checkpoint_key`, a SHA-256 over the resolved directory, the versions
of torch, transformers and tokenizers, and the SHA-256 of each of its model files (config, weights,
tokenizer files: :data:`MODEL_FILE_PATTERNS`). A later load whose key matches takes the version
from there; any change to a weights, config or tokenizer file changes the key, and a missing or
unreadable entry means the torch way again, so the index never gives a wrong version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from encoder.files import atomic_write_json

log = logging.getLogger("tastegraph.encoder")

INDEX_DIR = "checkpoints"
# the files a checkpoint's version can depend on: config, weights (one file or shards and their
# index), tokenizer (fast or slow, WordPiece, BPE or SentencePiece)
MODEL_FILE_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.bin.index.json",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "*.model",
)
KEYED_LIBRARIES = ("torch", "transformers", "tokenizers")


@dataclass(frozen=True, slots=True)
class CheckpointEntry:
    """What the ONNX encoder needs of a checkpoint besides the int8 file and the tokenizer."""

    version: str
    dim: int  # hidden size
    positions: int  # max_position_embeddings
    model_max_length: int  # the tokenizer's
    pad_token_id: int


def model_files(directory: Path) -> list[Path]:
    """The checkpoint's files that its version can depend on (:data:`MODEL_FILE_PATTERNS`), by
    name; hidden files (half-written temporaries) left out."""
    found = {p for pattern in MODEL_FILE_PATTERNS for p in Path(directory).glob(pattern)}
    return sorted((p for p in found if p.is_file() and not p.name.startswith(".")), key=str)


def _library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)  # read from the metadata, not imported
    except importlib.metadata.PackageNotFoundError:
        return ""


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def checkpoint_key(directory: Path) -> str:
    """The SHA-256 (hex) naming the checkpoint in ``directory`` as it is on disk now."""
    directory = Path(directory).resolve()
    described = {
        "directory": str(directory),
        "libraries": {name: _library_version(name) for name in KEYED_LIBRARIES},
        "files": {p.name: _file_sha256(p) for p in model_files(directory)},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def entry_path(cache_dir: Path, key: str) -> Path:
    if not re.fullmatch(r"[0-9a-f]{64}", key):
        raise ValueError(f"not a checkpoint key: {key!r}")
    return Path(cache_dir) / INDEX_DIR / f"{key}.json"


def read_entry(cache_dir: Path, key: str) -> CheckpointEntry | None:
    """The entry recorded under ``key`` in ``cache_dir``, or None (missing, unreadable, or not
    recorded under this key)."""
    try:
        raw = json.loads(entry_path(cache_dir, key).read_text())
        if raw.get("key") != key:
            return None
        e = raw["entry"]
        return CheckpointEntry(
            str(e["version"]), int(e["dim"]), int(e["positions"]),
            int(e["model_max_length"]), int(e["pad_token_id"]),
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record_entry(cache_dir: Path, key: str, entry: CheckpointEntry, directory: Path) -> None:
    """Writes ``entry`` under ``key`` (atomically); the checkpoint's directory and files are
    written beside it for whoever reads the file."""
    files = [p.name for p in model_files(directory)]
    data = {"key": key, "entry": asdict(entry), "directory": str(directory), "files": files}
    try:
        atomic_write_json(entry_path(cache_dir, key), data)
    except OSError as e:  # a read-only cache: the next start takes the torch way again
        log.warning("cannot record checkpoint %s of %s: %s", key[:12], entry.version, e)
