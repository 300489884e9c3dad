"""The training process of one fine-tuning run: ``python -m finetuning.trainer <job.json>``.

Started by `finetuning.job.run_finetune`, in a fresh interpreter where everything heavy happens: it
loads the current version, scores it on the held-out slice, trains from it within the time and
step budgets, scores the candidate the same way, saves it into the version directory, and writes
its result (``job["result"]``) for the parent to judge. It exits when the run that started it is
gone (orphaned).

Test hook: it reads ``TASTEGRAPH_FINETUNE_FAULT`` (``crash_at_step:N``, ``crash_before_save``,
``crash_after_save``) and then dies with ``os._exit(70)``, like a process killed mid-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from encoder.example_store import read_examples
from encoder.files import atomic_write_json

FAULT_ENV = "TASTEGRAPH_FINETUNE_FAULT"


def _fault() -> tuple[str, int]:
    raw = os.environ.get(FAULT_ENV, "")
    name, _, arg = raw.partition(":")
    return name, int(arg) if arg.isdigit() else 0


def _die() -> None:
    sys.stderr.flush()
    os._exit(70)


def child_main(job_path: str) -> int:
    """Entry point of the training process: everything heavy happens here."""
    from config.logs import setup_logging

    setup_logging(os.environ.get("TASTEGRAPH_LOG_LEVEL", "INFO"))
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    fault, fault_arg = _fault()
    parent_pid = os.getppid()
    import torch

    from encoder.examples import catalog_of
    from encoder.gate import paired_bootstrap
    from encoder.head import HeadEncoder, head_digest, load_head, save_head, train_catalog_head
    from encoder.loading import fingerprint, load_pretrained
    from encoder.retrieval import retrieval_scores
    from encoder.trained_model import eval_encoder, save_model

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    device = job.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.monotonic()
    model, tokenizer, location = load_pretrained(job["parent_ref"])
    train_ex = list(read_examples(job["train"]))
    held = list(read_examples(job["held_out"]))
    categories: dict[str, str] = {}
    if job.get("catalog"):
        with open(job["catalog"], encoding="utf-8") as f:
            catalog = {str(k): str(v) for k, v in json.load(f).items()}
        cat_path = Path(job["catalog"]).with_name("categories.json")
        if cat_path.exists():
            categories = {str(k): str(v) for k, v in json.loads(cat_path.read_text()).items()}
    else:
        catalog = catalog_of([*train_ex, *held])
    cfg = job["config"]
    eval_len = int(cfg["max_len"])
    query_mode = str(cfg.get("query_mode", "vote"))
    power = float(cfg.get("vote_power", 3.0))

    parent_head = load_head(location.path)

    def score(net: Any, version: str, head: Any = None) -> Any:
        """``net``'s retrieval scores on the held-out slice, embedded as the worker would."""
        encoder: Any = eval_encoder(net, tokenizer, version, max_len=eval_len, device=device)
        if head is not None:
            encoder = HeadEncoder(encoder, head)
        return retrieval_scores(encoder, held, catalog, query_mode=query_mode, power=power)

    def on_step(step: int, loss: float) -> None:
        if fault == "crash_at_step" and step >= fault_arg:
            _die()
        if os.getppid() != parent_pid:  # orphaned: the run that started us is gone
            _die()

    if str(cfg.get("mode", "full")) == "head":  # scored with vote queries (catalogue texts)
        base = eval_encoder(
            model, tokenizer, job["parent_version"], max_len=eval_len, device=device
        )
        trained = train_catalog_head(
            base, train_ex, catalog, float(cfg["budget_s"]), parent_head, on_step
        )
        before = retrieval_scores(
            trained.lookup(parent_head), held, catalog, query_mode="vote", power=power
        )
        after = retrieval_scores(
            trained.lookup(trained.head), held, catalog, query_mode="vote", power=power
        )
        head, stats = trained.head, trained.stats
    else:
        before = score(model, job["parent_version"], parent_head)
        eval_s = time.monotonic() - t0
        # the candidate's evaluation costs about as much again; leave room for it and saving
        train_budget = max(1.0, float(cfg["budget_s"]) - 2.0 * eval_s)
        model, stats = _train_full(
            model, tokenizer, train_ex, cfg, train_budget, device, query_mode, job, on_step,
            catalog, categories,
        )  # fmt: skip
        after = score(model, job["version"])
        head = None
    gain_ci = paired_bootstrap(
        before.users,
        before.ndcg,
        after.ndcg,
        resamples=int(cfg.get("gate_resamples", 2000)),
        confidence=float(cfg.get("gate_confidence", 0.95)),
    )
    if os.getppid() != parent_pid:
        _die()
    if fault == "crash_before_save":
        # a torn write: part of a weights file, then death
        Path(job["out_dir"], "model.safetensors").write_bytes(b"\0" * 1024)
        _die()
    model.to("cpu")
    save_model(model, tokenizer, job["out_dir"], location.path)
    if head is not None:
        save_head(job["out_dir"], head)
    if fault == "crash_after_save":
        _die()
    atomic_write_json(
        Path(job["result"]),
        {
            "metrics_before": before.metrics().to_json(),
            "metrics_after": after.metrics().to_json(),
            "gain_ci": gain_ci.to_json(),
            "train": stats.to_json(),
            "fingerprint": fingerprint(model, tokenizer)
            + ("" if head is None else f"+head@{head_digest(head)}"),
            "seconds": time.monotonic() - t0,
        },
    )
    return 0


def _train_full(
    model: Any,
    tokenizer: Any,
    train_ex: list[Any],
    cfg: dict[str, Any],
    budget_s: float,
    device: str,
    query_mode: str,
    job: dict[str, Any],
    on_step: Any,
    catalog: dict[str, str],
    categories: dict[str, str],
) -> tuple[Any, Any]:
    """Full (or LoRA, or top-layers) fine-tuning of the encoder's weights."""
    from encoder.finetune import TrainConfig, train

    config = TrainConfig(
        steps=int(cfg["steps"]),
        budget_s=budget_s,
        batch_size=int(cfg["batch_size"]),
        lr=float(cfg["lr"]),
        max_len=int(cfg["max_len"]),
        lora=bool(cfg["lora"]),
        device=device,
        query_mode=query_mode,
        scale=float(cfg.get("scale", 20.0)),
        together=bool(cfg.get("together", True)),
        train_layers=int(cfg.get("train_layers", 0)),
    )
    return train(
        model,
        tokenizer,
        train_ex,
        config,
        progress=job.get("progress"),
        on_step=on_step,
        texts=catalog,
        categories=categories,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m finetuning.trainer JOB.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(child_main(sys.argv[1]))
