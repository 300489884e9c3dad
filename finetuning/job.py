"""One fine-tuning run, trained in a separate process, judged by the gate, recorded in the registry.

`run_finetune(settings, examples_path)` is what `tastegraph finetune --now` and the worker's
periodic agent call (the agent through `run_finetune_async`, which waits in a thread, so the event
loop never stalls). It:

1. takes the registry lock (a second concurrent run returns ``skipped``);
2. reads the examples file, splits off the newest slice for evaluation (held out) and writes the
   two parts into a work folder, so the run sees a fixed snapshot while the stream keeps appending;
3. reserves the next version (``ft-NNNN``, status ``training``) and starts
   ``python -m finetuning.trainer <job.json>``: a fresh interpreter that loads the current
   version, scores it on the held-out slice, trains from it within the time and step budgets,
   scores the candidate the same way, saves it into the version directory, and writes its result;
4. promotes the candidate only when the gate says it is better (the lower bound of the paired
   bootstrap interval of its NDCG@10 gain above ``finetune_margin``, and the current version did
   not change meanwhile); otherwise deletes its weights and keeps the metadata
   as ``rejected``. When the child exits non-zero, is killed, overruns its deadline or writes no
   result, the weights are deleted, the metadata says ``failed`` with the reason and the end of
   the child's log, and the current pointer is not touched.

Where the examples and the registry live follows the settings (`finetuning.stores`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from encoder.example_store import read_examples, write_examples
from encoder.examples import split_examples
from encoder.files import atomic_write_json
from encoder.registry import ModelRegistry
from finetuning.stores import default_examples_path, registry_for

log = logging.getLogger("tastegraph.finetune")

MIN_HELD_OUT = 10
START_GRACE_S = 180.0  # interpreter start, model load and evaluation on top of the training budget


@dataclass
class FinetuneResult:
    result: str  # promoted | rejected | failed | skipped
    version: str | None
    parent_version: str | None
    metrics_before: dict[str, Any] | None = None
    metrics_after: dict[str, Any] | None = None
    gain_ci: dict[str, Any] | None = None
    seconds: float = 0.0
    examples: int = 0
    held_out: int = 0
    reason: str = ""
    train: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_finetune(
    settings: Any,
    examples_path: Path | str | None = None,
    *,
    budget_s: float | None = None,
    steps: int | None = None,
    margin: float | None = None,
    lora: bool | None = None,
    progress: bool = False,
    registry: ModelRegistry | None = None,
    catalog_path: Path | str | None = None,
    keep_rejected: bool = False,
) -> FinetuneResult:
    """Runs one fine-tuning in a child process and records the outcome; never raises for a
    failed child. Arguments left ``None`` come from ``settings`` (``finetune_*`` fields).
    ``keep_rejected``: a rejected candidate keeps its weights (for an offline comparison)."""
    started = time.monotonic()
    registry = registry or registry_for(settings)
    examples_path = Path(examples_path) if examples_path else default_examples_path(settings)
    budget = float(budget_s if budget_s is not None else settings.finetune_budget_s)
    margin = float(margin if margin is not None else settings.finetune_margin)
    with registry.lock(blocking=False) as got:
        if not got:
            return FinetuneResult(
                "skipped", None, None, reason="another fine-tuning run holds the registry lock"
            )
        _fail_interrupted(registry)
        parent = registry.current_version()
        if not examples_path.exists():
            return FinetuneResult("skipped", None, parent, reason=f"no examples at {examples_path}")
        examples = list(read_examples(examples_path))
        max_examples = int(settings.finetune_max_examples)
        examples = examples[-max_examples:]
        train, held = split_examples(
            examples,
            float(settings.finetune_holdout_fraction),
            int(settings.finetune_holdout_max),
            int(settings.finetune_holdout_per_user),
        )
        batch_size = int(settings.finetune_batch_size)
        if len(held) < MIN_HELD_OUT or len(train) < 2:
            return FinetuneResult(
                "skipped",
                None,
                parent,
                examples=len(train),
                held_out=len(held),
                reason=f"too few examples ({len(train)} train, {len(held)} held out; "
                f"need >= 2 and >= {MIN_HELD_OUT})",
            )
        config: dict[str, Any] = {
            "steps": int(steps if steps is not None else settings.finetune_steps),
            "budget_s": budget,
            "batch_size": batch_size,
            "lr": float(settings.finetune_lr),
            "max_len": int(settings.finetune_max_len),
            "lora": bool(lora if lora is not None else int(settings.finetune_lora)),
            "query_mode": str(settings.finetune_query_mode),
            "mode": str(settings.finetune_mode),
            "scale": float(settings.finetune_scale),
            "vote_power": float(settings.finetune_vote_power),
            "gate_resamples": int(settings.finetune_gate_resamples),
            "gate_confidence": float(settings.finetune_gate_confidence),
            "together": bool(int(settings.finetune_together)),
            "train_layers": int(settings.finetune_train_layers),
        }
        if config["lora"] and config["lr"] < 1e-4:
            config["lr"] = 1e-4  # adapters need a larger step than full fine-tuning
        info = registry.create_version(
            parent,
            len(train),
            held_out=len(held),
            held_out_users=len({ex.user_id for ex in held}),
            train_config=config,
            examples_file=str(examples_path),
        )
        version = info.version
        work = registry.root / "work" / version
        work.mkdir(parents=True, exist_ok=True)
        try:
            result = _run_child(
                settings,
                registry,
                version,
                parent,
                train,
                held,
                config,
                work,
                progress,
                catalog_path,
            )
            if result.result == "failed":
                registry.discard(version, "failed", reason=result.reason)
            else:
                result = _judge(registry, result, margin, keep_rejected=keep_rejected)
        except BaseException as e:  # KeyboardInterrupt included: never leave "training" behind
            with contextlib.suppress(Exception):
                registry.discard(version, "failed", reason=f"{type(e).__name__}: {e}")
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result.seconds = time.monotonic() - started
        with contextlib.suppress(Exception):
            registry.update(version, seconds=round(result.seconds, 2), result=result.result)
        log.info(
            "fine-tune result=%s version=%s parent=%s examples=%d seconds=%.1f reason=%s",
            result.result,
            version,
            parent,
            result.examples,
            result.seconds,
            result.reason,
        )
        return result


async def run_finetune_async(settings: Any, examples_path: Path | str | None = None, **kw: Any):
    """`run_finetune` waited on in a thread: the child process does the work, the loop runs on."""
    return await asyncio.to_thread(run_finetune, settings, examples_path, **kw)


def _run_child(
    settings: Any,
    registry: ModelRegistry,
    version: str,
    parent: str,
    train: list[Any],
    held: list[Any],
    config: dict[str, Any],
    work: Path,
    progress: bool,
    catalog_path: Path | str | None,
) -> FinetuneResult:
    write_examples(work / "train.jsonl", train)
    write_examples(work / "held_out.jsonl", held)
    parent_info = registry.get(parent)
    device = str(settings.device)
    job = {
        "version": version,
        "parent_version": parent,
        "parent_ref": parent_info.model_ref,
        "out_dir": str(registry.versions_dir / version),
        "train": str(work / "train.jsonl"),
        "held_out": str(work / "held_out.jsonl"),
        "catalog": str(catalog_path) if catalog_path else None,
        "result": str(work / "result.json"),
        "config": config,
        "device": device,
        "threads": int(settings.encoder_threads),
        "progress": progress,
    }
    atomic_write_json(work / "job.json", job)
    log_path = work / "child.log"
    deadline = float(config["budget_s"]) + START_GRACE_S
    cmd = [sys.executable, "-m", "finetuning.trainer", str(work / "job.json")]
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = FinetuneResult("failed", version, parent, examples=len(train), held_out=len(held))
    with open(log_path, "wb") as logf:
        # the child's stderr goes to the terminal when a person watches (progress bar), else to
        # the run's log file, whose end is kept in the metadata when the run fails
        stderr: Any = None if progress else logf
        proc = subprocess.Popen(cmd, stdout=logf, stderr=stderr, env=env, cwd=os.getcwd())
        try:
            rc = proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            base.reason = f"training process overran its deadline ({deadline:.0f}s) and was killed"
            return base
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    tail = _tail(log_path)
    if rc != 0:
        base.reason = f"training process exited with status {rc}" + (f": {tail}" if tail else "")
        return base
    try:
        with open(work / "result.json", encoding="utf-8") as f:
            out = json.load(f)
    except (OSError, ValueError) as e:
        base.reason = f"training process wrote no readable result ({e})"
        return base
    base.result = "candidate"
    base.metrics_before = out["metrics_before"]
    base.metrics_after = out["metrics_after"]
    base.gain_ci = out.get("gain_ci")
    base.train = out.get("train", {})
    registry.update(
        version,
        status="candidate",
        metrics_before=base.metrics_before,
        metrics_after=base.metrics_after,
        gain_ci=base.gain_ci,
        train=base.train,
        encoder_fingerprint=out.get("fingerprint"),
    )
    return base


def _judge(
    registry: ModelRegistry, result: FinetuneResult, margin: float, *, keep_rejected: bool = False
) -> FinetuneResult:
    from encoder.gate import GainInterval, gate
    from encoder.retrieval import RetrievalMetrics

    assert result.version is not None and result.metrics_before and result.metrics_after
    before = RetrievalMetrics.from_json(result.metrics_before)
    after = RetrievalMetrics.from_json(result.metrics_after)
    interval = GainInterval.from_json(result.gain_ci) if result.gain_ci else None
    decision = gate(before, after, margin, min_examples=MIN_HELD_OUT, interval=interval)
    current = registry.current_version()
    if decision.promote and current != result.parent_version:
        decision = type(decision)(False, f"current version changed to {current} during training")
    if decision.promote and not registry.get(result.version).has_weights:
        decision = type(decision)(False, "candidate has no saved weights")
    if decision.promote:
        registry.promote(result.version)
        result.result = "promoted"
    else:
        keep = keep_rejected and registry.get(result.version).has_weights
        registry.discard(result.version, "rejected", keep_weights=keep, reason=decision.reason)
        result.result = "rejected"
    result.reason = decision.reason
    return result


def _fail_interrupted(registry: ModelRegistry) -> None:
    """Under the lock no run is active: a version still ``training`` belongs to a run whose
    process ended before it could record the outcome (e.g. the worker was killed)."""
    for info in registry.list():
        if info.status in ("training", "candidate") and info.version != registry.current_version():
            registry.discard(info.version, "failed", reason="interrupted: the run's process ended")
            shutil.rmtree(registry.root / "work" / info.version, ignore_errors=True)


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()
