"""The losses of contrastive fine-tuning, over embeddings computed exactly as at inference.

`mnr_loss`: multiple-negatives ranking loss (in-batch negatives): row ``i`` of the queries must
score its own item above the batch's other items. `pair_loss`: its symmetric form for item pairs,
with hard negatives as extra columns. torch is imported lazily by the functions that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from encoder.examples import Example
from encoder.pairs import ItemPair


def embed_texts(model: Any, tokenizer: Any, texts: Sequence[str], max_len: int, device: str) -> Any:
    """``texts`` embedded as at inference (`encoder.bert.mean_pool`), gradients kept."""
    from encoder.bert import mean_pool  # the pooling of inference, so training matches it

    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt"
    )
    enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    out = model(**enc)
    return mean_pool(out.last_hidden_state, enc["attention_mask"])


def embed_mean_contexts(
    model: Any, tokenizer: Any, batch: Sequence[Example], max_len: int, device: str
) -> Any:
    """Each context as the normalised mean of its items' embeddings (``query_mode="mean"``)."""
    import torch

    from encoder.retrieval import context_texts

    texts: list[str] = []
    owner: list[int] = []
    for row, ex in enumerate(batch):
        parts = context_texts(ex) or [ex.context]
        texts.extend(parts)
        owner.extend([row] * len(parts))
    vecs = embed_texts(model, tokenizer, texts, max_len, device)
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


def pair_step_loss(
    model: Any, tokenizer: Any, batch: Sequence[ItemPair], max_len: int, device: str, scale: float
) -> tuple[Any, int]:
    """One forward pass over a batch of item pairs (anchors, positives and hard negatives in a
    single call, so padding and pooling match inference) and its `pair_loss`."""
    negatives = [p.negative_text for p in batch if p.negative_id]
    texts = [p.anchor_text for p in batch] + [p.item_text for p in batch] + negatives
    vecs = embed_texts(model, tokenizer, texts, max_len, device)
    n = len(batch)
    neg = vecs[2 * n :] if negatives else None
    return pair_loss(vecs[:n], vecs[n : 2 * n], scale, neg), n
