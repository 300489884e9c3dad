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
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from encoder.examples import Example
from encoder.pairs import ItemPair, co_engagement_pairs, with_hard_negatives
from encoder.protocol import TextEncoder

log = logging.getLogger("tastegraph.finetune")

T = TypeVar("T")

# sentence-transformers files copied next to the weights, so a version also loads there
_ST_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
)


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


def _embed(model: Any, tokenizer: Any, texts: Sequence[str], max_len: int, device: str) -> Any:
    from encoder.bert import mean_pool  # the pooling of inference, so training matches it

    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
    )
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    out = model(**enc)
    return mean_pool(out.last_hidden_state, enc["attention_mask"])


def _embed_mean_contexts(
    model: Any, tokenizer: Any, batch: Sequence[Example], max_len: int, device: str
) -> Any:
    """Each context as the normalised mean of its items' embeddings (``query_mode="mean"``)."""
    import torch

    from encoder.gate import context_texts

    texts: list[str] = []
    owner: list[int] = []
    for row, ex in enumerate(batch):
        parts = context_texts(ex) or [ex.context]
        texts.extend(parts)
        owner.extend([row] * len(parts))
    vecs = _embed(model, tokenizer, texts, max_len, device)
    rows = torch.tensor(owner, device=vecs.device)
    sums = torch.zeros(len(batch), vecs.shape[1], device=vecs.device, dtype=vecs.dtype)
    sums = sums.index_add(0, rows, vecs)
    return torch.nn.functional.normalize(sums, dim=-1)


def mnr_loss(q: Any, d: Any, scale: float) -> Any:
    """Multiple-negatives ranking loss: row ``i`` of ``q`` must score ``d[i]`` above the rest."""
    import torch

    scores = scale * (q @ d.T)
    labels = torch.arange(q.shape[0], device=q.device)
    return torch.nn.functional.cross_entropy(scores, labels)


def pair_loss(q: Any, d: Any, scale: float, negatives: Any | None = None) -> Any:
    """Symmetric multiple-negatives loss for item pairs: anchor ``q[i]`` must pick ``d[i]`` among
    the batch's items and the hard ``negatives`` (extra columns), and ``d[i]`` must pick
    ``q[i]`` among the batch's anchors."""
    import torch

    candidates = d if negatives is None or len(negatives) == 0 else torch.cat([d, negatives])
    labels = torch.arange(q.shape[0], device=q.device)
    forward = torch.nn.functional.cross_entropy(scale * (q @ candidates.T), labels)
    backward = torch.nn.functional.cross_entropy(scale * (d @ q.T), labels)
    return (forward + backward) / 2


def distinct_batches(
    elements: Sequence[T],
    batch_size: int,
    rng: random.Random,
    keys: Callable[[T], Iterable[str]],
) -> Iterator[list[T]]:
    """Endless shuffled batches in which no key (``keys(element)``) appears twice.

    Elements that clash with a batch wait for a later one of the same epoch; reshuffled each epoch.
    """
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 (in-batch negatives)")
    order = list(elements)
    while True:
        rng.shuffle(order)
        remaining = order
        yielded = False
        while len(remaining) >= 2:
            leftovers: list[T] = []
            batch: list[T] = []
            seen: set[str] = set()
            progressed = False
            for el in remaining:
                ks = tuple(keys(el))
                if any(k in seen for k in ks) or len(set(ks)) < len(ks):
                    leftovers.append(el)
                    continue
                batch.append(el)
                seen.update(ks)
                if len(batch) == batch_size:
                    yield batch
                    progressed = True
                    batch, seen = [], set()
            if len(batch) >= 2:
                yield batch
                progressed = True
            if not progressed:
                break
            yielded = True
            remaining = leftovers
        if not yielded:
            raise ValueError("fewer than 2 elements with distinct keys")


def distinct_item_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random
) -> Iterator[list[Example]]:
    """Endless shuffled batches in which no item and no context appears twice.

    A repeated item would be its own negative; a repeated context (the lines of one basket share
    it) would be asked to pick two different items at once, which pulls every score together.
    """
    return distinct_batches(
        examples, batch_size, rng, lambda ex: ("i:" + ex.item_id, "c:" + ex.context)
    )


def distinct_pair_batches(
    pairs: Sequence[ItemPair], batch_size: int, rng: random.Random
) -> Iterator[list[ItemPair]]:
    """Endless shuffled batches of item pairs in which no item appears twice, on either side or
    as a negative: an anchor that is another row's positive would be a false negative at cosine 1,
    and an anchor asked twice would have to pick two items at once."""
    return distinct_batches(pairs, batch_size, rng, ItemPair.ids)


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
                loss, n_batch = _pair_step_loss(model, tokenizer, next(pair_batches), config)
            else:
                batch = next(batches)  # type: ignore[arg-type]
                n_batch = len(batch)
                if config.query_mode == "mean":
                    q = _embed_mean_contexts(model, tokenizer, batch, config.max_len, device)
                else:
                    ctx = [ex.context for ex in batch]
                    q = _embed(model, tokenizer, ctx, config.max_len, device)
                items = [ex.item_text for ex in batch]
                d = _embed(model, tokenizer, items, config.max_len, device)
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


def _pair_step_loss(
    model: Any, tokenizer: Any, batch: Sequence[ItemPair], config: TrainConfig
) -> tuple[Any, int]:
    """One forward pass over a batch of item pairs (anchors, positives and hard negatives in a
    single call, so padding and pooling match inference) and its `pair_loss`."""
    negatives = [p.negative_text for p in batch if p.negative_id]
    texts = [p.anchor_text for p in batch] + [p.item_text for p in batch] + negatives
    vecs = _embed(model, tokenizer, texts, config.max_len, config.device)
    n = len(batch)
    neg = vecs[2 * n :] if negatives else None
    return pair_loss(vecs[:n], vecs[n : 2 * n], config.scale, neg), n


def eval_encoder(
    model: Any, tokenizer: Any, version: str, *, max_len: int = 128, device: str = "cpu"
) -> TextEncoder:
    """The inference encoder (`encoder.bert.BertEncoder`) over an in-memory model, in float32 and
    without a cache, so a candidate is scored exactly as the worker would embed with it, before
    it is saved, and the model can still be trained afterwards."""
    import torch

    from encoder.bert import BertEncoder

    return BertEncoder.from_loaded(
        model,
        tokenizer,
        version,
        device=device,
        max_len=max_len,
        cache_size=0,
        dtype=torch.float32,
    )


def save_model(model: Any, tokenizer: Any, dest: Path | str, source_dir: Path | str | None) -> None:
    """Writes ``model`` and ``tokenizer`` to ``dest`` as a plain Hugging Face directory.

    The sentence-transformers files of ``source_dir`` (pooling config, modules.json) are copied too,
    so the directory also loads with ``SentenceTransformer(dest)``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    tokenizer.save_pretrained(str(dest))
    if source_dir is not None:
        src = Path(source_dir)
        for name in _ST_FILES:
            p = src / name
            if p.is_dir():
                shutil.copytree(p, dest / name, dirs_exist_ok=True)
            elif p.is_file():
                shutil.copy2(p, dest / name)
