"""A linear head on the sentence encoder: fine-tuning a CPU can afford.

The head is a square matrix ``W`` applied to the pooled sentence vector before the final L2
normalisation: ``normalise(W e)``. It is trained on the same co-engagement pairs and symmetric
in-batch-negatives loss as full fine-tuning (:mod:`encoder.contrastive_loss`), over the frozen
encoder's vectors of the catalogue, so a CPU runs thousands of steps in seconds. In-batch negatives
are other pairs' positives, so popular items are over-drawn as negatives; the logQ correction
(Yi et al. 2019, sampled softmax) subtracts log(frequency) of each candidate from its logit so the
loss does not learn to push popularity away. Without it the head lost on Online Retail's held-out
customers; with it it gained (docs/finetuning.md).

A version's head is stored as a sentence-transformers ``Dense`` module (``2_Dense/``: config.json
and model.safetensors holding ``linear.weight``), so the folder still loads there.
:class:`HeadEncoder` applies it on top of any :class:`encoder.protocol.TextEncoder`; its version
is the inner version plus the head's digest, so the graph re-embeds when a head changes. torch is
imported only by :func:`train_head`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAD_DIR = "2_Dense"
_WEIGHTS = "model.safetensors"


def load_head(model_dir: Path | str) -> np.ndarray | None:
    """The head stored in a model folder, or None when it has none."""
    folder = Path(model_dir) / HEAD_DIR
    if not (folder / _WEIGHTS).exists():
        return None
    from safetensors.numpy import load_file

    return np.asarray(load_file(str(folder / _WEIGHTS))["linear.weight"], dtype=np.float32)


def save_head(model_dir: Path | str, w: np.ndarray) -> None:
    """Writes ``w`` as the folder's ``Dense`` module and lists it in modules.json (before
    ``Normalize``) when the folder has one."""
    from safetensors.numpy import save_file

    folder = Path(model_dir) / HEAD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out_dim, in_dim = w.shape
    config = {
        "in_features": int(in_dim),
        "out_features": int(out_dim),
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({"linear.weight": np.ascontiguousarray(w, dtype=np.float32)}, str(folder / _WEIGHTS))
    modules_path = Path(model_dir) / "modules.json"
    if modules_path.exists():
        modules = [m for m in json.loads(modules_path.read_text()) if m.get("path") != HEAD_DIR]
        dense = {"name": "dense", "path": HEAD_DIR, "type": "sentence_transformers.models.Dense"}
        at = next(
            (n for n, m in enumerate(modules) if m.get("type", "").endswith("Normalize")), None
        )
        modules.insert(len(modules) if at is None else at, dense)
        for idx, m in enumerate(modules):
            m["idx"] = idx
        modules_path.write_text(json.dumps(modules, indent=2))


def head_digest(w: np.ndarray) -> str:
    return hashlib.blake2b(
        np.ascontiguousarray(w, dtype=np.float32).tobytes(), digest_size=6
    ).hexdigest()


def apply_head(vectors: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``normalise(v W^T)`` row by row (the vectors may be normalised already: scale cancels)."""
    out = np.asarray(vectors, dtype=np.float32) @ w.T
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32)


class HeadEncoder:
    """``inner``'s vectors through a head. Everything else (cache, statistics, tokenizer) is the
    inner encoder's."""

    def __init__(self, inner: Any, w: np.ndarray) -> None:
        self.inner = inner
        self.head = np.asarray(w, dtype=np.float32)
        self._version = f"{inner.version}+head@{head_digest(self.head)}"

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return int(self.head.shape[0])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return apply_head(self.inner.encode(texts), self.head)

    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        return apply_head(self.inner.encode_uncached(texts), self.head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass(frozen=True)
class HeadConfig:
    steps: int = 1500
    batch_size: int = 1024
    scale: float = 20.0
    lr: float = 1e-3
    reg: float = 0.1  # pull towards the identity (the untuned encoder)
    logq: bool = True
    budget_s: float = 300.0
    seed: int = 0


@dataclass
class HeadStats:
    steps: int = 0
    seconds: float = 0.0
    pairs: int = 0
    first_loss: float | None = None
    last_loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "head",
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "pairs": self.pairs,
            "first_loss": self.first_loss,
            "last_loss": self.last_loss,
        }


def train_head(
    vectors: np.ndarray,
    pairs: np.ndarray,
    config: HeadConfig,
    start: np.ndarray | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[np.ndarray, HeadStats]:
    """Trains a head on ``vectors`` (the frozen encoder's catalogue, one row per item) and
    ``pairs`` (rows of (anchor row, positive row)). ``start``: the parent's head (default: the
    identity). Stops at ``config.steps`` or when ``config.budget_s`` is spent."""
    import torch

    torch.manual_seed(config.seed)
    stats = HeadStats(pairs=len(pairs))
    dim = vectors.shape[1]
    x = torch.tensor(np.asarray(vectors, dtype=np.float32))
    eye = torch.eye(dim)
    w = torch.nn.Parameter(
        torch.tensor(np.asarray(start, dtype=np.float32)) if start is not None else eye.clone()
    )
    if len(pairs) == 0:
        return w.detach().numpy(), stats
    counts = np.bincount(pairs[:, 1], minlength=len(vectors)).astype(np.float64)
    log_q = torch.tensor(np.log(np.maximum(counts, 1.0) / counts.sum()), dtype=torch.float32)
    opt = torch.optim.Adam([w], lr=config.lr)
    rng = np.random.default_rng(config.seed)
    size = min(config.batch_size, len(pairs))
    t0 = time.monotonic()
    for step in range(config.steps):
        b = pairs[rng.integers(0, len(pairs), size)]
        a = torch.nn.functional.normalize(x[b[:, 0]] @ w.T, dim=1)
        p = torch.nn.functional.normalize(x[b[:, 1]] @ w.T, dim=1)
        logits = config.scale * a @ p.T
        if config.logq:
            logits = logits - log_q[b[:, 1]][None, :]
        # the same positive twice in a batch, or an anchor's own item, is not a negative
        clash = torch.tensor(b[:, 1][None, :] == b[:, 1][:, None]) & ~torch.eye(
            size, dtype=torch.bool
        )
        clash |= torch.tensor(b[:, 1][None, :] == b[:, 0][:, None])
        logits = logits.masked_fill(clash, -1e4)
        target = torch.arange(size)
        loss = (
            torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)
        ) / 2 + config.reg * ((w - eye) ** 2).sum() / dim
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.item())
        stats.first_loss = value if stats.first_loss is None else stats.first_loss
        stats.last_loss = value
        stats.steps = step + 1
        if on_step is not None:
            on_step(step, value)
        if time.monotonic() - t0 > config.budget_s:
            break
    stats.seconds = time.monotonic() - t0
    return w.detach().numpy(), stats


class _CatalogueVectors:
    """An encoder over precomputed catalogue vectors: the gate embeds catalogue texts only."""

    def __init__(self, version: str, by_text: dict[str, int], vectors: np.ndarray) -> None:
        self.version, self.dim = version, int(vectors.shape[1])
        self._by_text, self._vectors = by_text, vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._by_text[t] for t in texts]]


@dataclass
class CatalogueHead:
    """A head trained over a catalogue (:func:`train_catalog_head`)."""

    head: np.ndarray
    stats: HeadStats
    version: str
    by_text: dict[str, int]
    vectors: np.ndarray  # the frozen encoder's, one row per catalogue text

    def lookup(self, w: np.ndarray | None) -> Any:
        """The catalogue's vectors through ``w`` (None: the frozen encoder's), as an encoder."""
        vectors = self.vectors if w is None else apply_head(self.vectors, w)
        return _CatalogueVectors(self.version, self.by_text, vectors)


def train_catalog_head(
    encoder: Any,
    examples: Sequence[Any],
    catalog: dict[str, str],
    budget_s: float,
    start: np.ndarray | None = None,
    on_step: Callable[[int, float], None] | None = None,
    config: HeadConfig | None = None,
) -> CatalogueHead:
    """Embeds the catalogue (item id -> text) once with the frozen ``encoder`` and trains a head on
    the co-engagement pairs of ``examples`` (:func:`encoder.pairs.co_engagement_pairs`) within
    ``budget_s`` seconds in all."""
    from encoder.pairs import co_engagement_pairs

    t0 = time.monotonic()
    texts = sorted(set(catalog.values()))
    by_text = {t: n for n, t in enumerate(texts)}
    vectors = np.asarray(encoder.encode(texts), dtype=np.float32)
    rows = [
        (by_text[catalog[p.anchor_id]], by_text[catalog[p.item_id]])
        for p in co_engagement_pairs(examples, texts=catalog)
        if p.anchor_id in catalog and p.item_id in catalog
    ]
    pairs = np.asarray([r for r in rows if r[0] != r[1]], dtype=np.int64).reshape(-1, 2)
    # leave about as long again as the embedding took for the two scorings after training
    left = max(1.0, budget_s - 2.0 * (time.monotonic() - t0))
    cfg = config or HeadConfig()
    cfg = HeadConfig(**{**cfg.__dict__, "budget_s": min(cfg.budget_s, left)})
    w, stats = train_head(vectors, pairs, cfg, start=start, on_step=on_step)
    return CatalogueHead(w, stats, str(encoder.version), by_text, vectors)
