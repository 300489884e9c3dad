"""Contrastive fine-tuning of the sentence encoder on co-engagement pairs.

Objective: multiple-negatives ranking loss (in-batch negatives). For a batch of B pairs the
queries ``q_i`` and chosen items ``d_j`` are embedded exactly as at inference (mean pooling over
the attention mask, L2 normalisation), and the loss is the cross-entropy of ``scale * q_i . d_j``
over ``j`` with target ``i``: each query must pick its own item among the B items of the batch.
Batches never hold the same item twice (that would be a false negative).

What a query is follows ``query_mode``, the same as the gate's: with ``vote`` (the default) the
pairs are item to item (`encoder.pairs`: a history item -> the item bought next or in the same
basket), each with a hard negative of the positive's category where categories exist, and the loss
is symmetric (the items must also pick their anchors), since a vote uses ``cos(i, j)`` both ways;
with ``text``/``mean`` a query is the example's whole context.

Full fine-tuning updates every weight; with ``lora=True`` a LoRA adapter (peft) on the attention
projections is trained instead and merged into the weights before the model is returned, so a saved
version is always a plain Hugging Face model directory. Training stops at ``steps`` or when the time
budget is spent, whichever comes first. torch is imported lazily by the functions that need it.
The losses are in `encoder.contrastive_loss`, the batches in `encoder.train_batches`; the trained
model is scored and saved with `encoder.trained_model`.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from encoder.contrastive_loss import embed_mean_contexts, embed_texts, mnr_loss, pair_step_loss
from encoder.examples import Example
from encoder.pairs import ItemPair, co_engagement_pairs, with_hard_negatives
from encoder.train_batches import distinct_item_batches, distinct_pair_batches

log = logging.getLogger("tastegraph.finetune")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    budget_s: float = 300.0
    batch_size: int = 32
    lr: float = 3e-5
    max_len: int = 64
    scale: float = 20.0
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_targets: tuple[str, ...] = ("query", "key", "value")
    seed: int = 0
    device: str = "cpu"
    query_mode: str = "vote"  # vote: item-to-item pairs; text/mean: whole contexts
    together: bool = True  # vote: also pair the items of one basket
    train_layers: int = 0  # > 0: only the top N transformer layers train (embeddings frozen)


@dataclass
class TrainStats:
    steps: int = 0
    seconds: float = 0.0
    pairs_seen: int = 0
    first_loss: float | None = None
    last_loss: float | None = None
    stopped_by: str = "steps"  # steps | budget | no-data
    pairs: int = 0  # training pairs available (vote: item pairs; else: examples)
    hard_negatives: int = 0  # of them, pairs with a same-category negative
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    progress: bool | None = None,
    on_step: Callable[[int, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    texts: Mapping[str, str] | None = None,
    categories: Mapping[str, str] | None = None,
) -> tuple[Any, TrainStats]:
    """Fine-tunes ``model`` (a Hugging Face encoder) on ``examples``; returns (model, stats).

    With ``query_mode="vote"`` the examples become item pairs (`encoder.pairs`); ``texts`` (item
    id -> text, the catalogue) overrides the examples' texts and supplies the hard negatives of
    ``categories`` (item id -> category; none: in-batch negatives only).

    The returned model is in eval mode; with LoRA it is the base model with the adapter merged.
    ``progress``: a tqdm bar on stderr (default: when stderr is a terminal). ``on_step(step, loss)``
    runs after every optimiser step (the fault-injection hook of the tests uses it).
    """
    import torch

    stats = TrainStats(device=config.device)
    start = clock()
    rng = random.Random(config.seed)
    pairs: list[ItemPair] = []
    if config.query_mode == "vote":
        pairs = co_engagement_pairs(examples, texts=texts, together=config.together)
        if categories:
            pairs = with_hard_negatives(pairs, categories, texts or {}, rng)
        stats.pairs = len(pairs)
        stats.hard_negatives = sum(1 for p in pairs if p.negative_id)
        distinct = min(len({p.item_id for p in pairs}), len({p.anchor_id for p in pairs}))
        n_train = len(pairs)
    else:
        distinct = min(len({ex.item_id for ex in examples}), len({ex.context for ex in examples}))
        n_train = stats.pairs = len(examples)
    if config.steps <= 0 or n_train < 2 or distinct < 2:
        stats.stopped_by = "steps" if config.steps <= 0 else "no-data"
        model.eval()
        return model, stats
    torch.manual_seed(config.seed)
    device = config.device
    model.to(device)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_targets),
            bias="none",
        )
        model = get_peft_model(model, peft_config)
    elif config.train_layers > 0:
        freeze_below(model, config.train_layers)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, int(config.steps * config.warmup_fraction))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (config.steps - step) / max(1, config.steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    batch_size = min(config.batch_size, distinct)
    pair_batches = distinct_pair_batches(pairs, batch_size, rng) if pairs else None
    batches = None if pairs else distinct_item_batches(examples, batch_size, rng)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, desc="fine-tune", unit="step", file=sys.stderr)
    step_time = 0.0
    try:
        for step in range(config.steps):
            elapsed = clock() - start
            if step > 0 and elapsed + step_time > config.budget_s:
                stats.stopped_by = "budget"
                break
            t0 = clock()
            if pair_batches is not None:
                loss, n_batch = pair_step_loss(
                    model, tokenizer, next(pair_batches), config.max_len, device, config.scale
                )
            else:
                batch = next(batches)  # type: ignore[arg-type]
                n_batch = len(batch)
                if config.query_mode == "mean":
                    q = embed_mean_contexts(model, tokenizer, batch, config.max_len, device)
                else:
                    ctx = [ex.context for ex in batch]
                    q = embed_texts(model, tokenizer, ctx, config.max_len, device)
                items = [ex.item_text for ex in batch]
                d = embed_texts(model, tokenizer, items, config.max_len, device)
                loss = mnr_loss(q, d, config.scale)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimiser.step()
            scheduler.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {step}")
            stats.steps = step + 1
            stats.pairs_seen += n_batch
            if stats.first_loss is None:
                stats.first_loss = value
            stats.last_loss = value
            dt = clock() - t0
            step_time = dt if step == 0 else 0.8 * step_time + 0.2 * dt
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
            if on_step is not None:
                on_step(step + 1, value)
    finally:
        if bar is not None:
            bar.close()
    if config.lora:
        model = model.merge_and_unload()
    elif config.train_layers > 0:
        for p in model.parameters():  # as it came: every weight trainable again
            p.requires_grad_(True)
    model.eval()
    stats.seconds = clock() - start
    log.info(
        "trained steps=%d seconds=%.1f loss=%s->%s stopped_by=%s",
        stats.steps,
        stats.seconds,
        stats.first_loss,
        stats.last_loss,
        stats.stopped_by,
    )
    return model, stats


def freeze_below(model: Any, top_layers: int) -> int:
    """Freezes the embeddings and every transformer layer but the top ``top_layers`` of a BERT-like
    model (``model.encoder.layer``); returns how many layers stay trainable. On a CPU this roughly
    halves a step: no gradient flows into the lower layers, and the optimiser skips the word
    embedding matrix, half of MiniLM's weights."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        return -1
    keep = min(top_layers, len(layers))
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[len(layers) - keep :]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return keep
