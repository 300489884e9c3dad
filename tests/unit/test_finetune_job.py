"""The out-of-process fine-tuning job: promotion, rejection, crashes, the lock, the commands.

A tiny randomly initialised BERT (2 layers, hidden 32, the MiniLM tokenizer) stands in for the real
model so that each run, a real child process, takes seconds; the trainer and the gate are the real
ones. The improvement on the real MiniLM is shown in test_finetune.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from encoder.example_store import write_examples
from encoder.registry import BASE_VERSION, ModelRegistry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Any) -> Path:
    pytest.importorskip("torch")
    from encoder.trained_model import save_model

    model, tokenizer, src = tiny_bert(128)
    out = tmp_path_factory.mktemp("tiny") / "model"
    save_model(model, tokenizer, out, src)
    return out


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_finetune import planted_examples

    examples, _ = planted_examples()
    path = tmp_path_factory.mktemp("ex") / "examples.jsonl"
    write_examples(path, examples)
    return path


def settings_for(home: Path, model: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "home": home,
        "model": str(model),
        "finetune_max_len": 32,
        "finetune_batch_size": 32,
        "finetune_lr": 2e-3,
        "finetune_steps": 40,
        "finetune_budget_s": 120.0,
        "finetune_margin": 0.0,
        "encoder_threads": 1,
    }
    return Settings.from_env({}, **{**base, **kw})


def test_a_better_candidate_is_promoted_and_loadable(
    tmp_path: Path, tiny_model: Path, examples_file: Path
) -> None:
    from encoder.loading import load_pretrained
    from finetuning.job import run_finetune
    from finetuning.stores import registry_for

    settings = settings_for(tmp_path, tiny_model)
    result = run_finetune(settings, examples_file)
    assert result.result == "promoted", result
    assert result.metrics_before and result.metrics_after
    assert result.metrics_after["ndcg_at_10"] >= result.metrics_before["ndcg_at_10"] + 0.01
    assert result.examples > 900 and result.held_out > 100
    registry = registry_for(settings)
    assert registry.current_version() == result.version == "ft-0001"
    meta = registry.get("ft-0001").metadata
    assert meta["status"] == "promoted" and meta["parent_version"] == BASE_VERSION
    assert meta["examples"] == result.examples and meta["train"]["steps"] > 0
    # the gate's evidence is in the run record: a paired bootstrap over the held-out users
    ci = meta["gain_ci"]
    assert ci == result.gain_ci and ci["lower"] > 0.0 and ci["users"] > 10
    assert ci["lower"] <= ci["gain"] <= ci["upper"]
    model, _, location = load_pretrained(registry.current().model_ref)
    assert location.path == (tmp_path / "models" / "versions" / "ft-0001").resolve()
    assert model.config.hidden_size == 32
    assert not (tmp_path / "models" / "work" / "ft-0001").exists()


def test_a_candidate_that_is_not_better_leaves_current_unchanged(
    tmp_path: Path, tiny_model: Path, examples_file: Path
) -> None:
    from finetuning.job import run_finetune
    from finetuning.stores import registry_for

    settings = settings_for(tmp_path, tiny_model)
    pointer = registry_for(settings).pointer_path
    result = run_finetune(settings, examples_file, steps=0)  # the candidate equals the current
    assert result.result == "rejected", result
    assert result.metrics_before == result.metrics_after
    assert "lower bound not above" in result.reason
    assert result.gain_ci is not None and result.gain_ci["upper"] == 0.0  # the same model
    registry = registry_for(settings)
    assert registry.current_version() == BASE_VERSION and not pointer.exists()
    info = registry.get(result.version or "")
    assert info.status == "rejected" and not info.has_weights
    assert info.metadata["metrics_after"] == result.metrics_after


@pytest.mark.parametrize("fault", ["crash_at_step:2", "crash_before_save"])
def test_a_crashed_training_process_leaves_current_and_is_recorded_failed(
    tmp_path: Path,
    tiny_model: Path,
    examples_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    from finetuning.job import run_finetune
    from finetuning.stores import registry_for
    from finetuning.trainer import FAULT_ENV

    settings = settings_for(tmp_path, tiny_model)
    registry = registry_for(settings)
    # a promoted version is current before the crash
    v1 = registry.create_version(BASE_VERSION, 1)
    from encoder.loading import load_pretrained
    from encoder.trained_model import save_model

    model, tokenizer, loc = load_pretrained(str(tiny_model))
    save_model(model, tokenizer, v1.path, loc.path)
    registry.update(v1.version, status="candidate")
    registry.promote(v1.version)
    pointer_before = registry.pointer_path.read_bytes()

    monkeypatch.setenv(FAULT_ENV, fault)
    result = run_finetune(settings, examples_file, steps=5)
    assert result.result == "failed", result
    assert "status 70" in result.reason
    assert registry.current_version() == v1.version
    assert registry.pointer_path.read_bytes() == pointer_before
    info = registry.get(result.version or "")
    assert info.status == "failed" and not info.has_weights
    assert info.metadata["parent_version"] == v1.version
    assert "status 70" in info.metadata["reason"]


def test_a_second_concurrent_run_is_skipped(
    tmp_path: Path, tiny_model: Path, examples_file: Path
) -> None:
    from finetuning.job import run_finetune
    from finetuning.stores import registry_for

    settings = settings_for(tmp_path, tiny_model)
    registry = registry_for(settings)
    with registry.lock() as got:
        assert got
        result = run_finetune(settings, examples_file)
    assert result.result == "skipped" and "lock" in result.reason
    assert [v.version for v in registry.list()] == [BASE_VERSION]


def test_too_few_examples_are_skipped(tmp_path: Path, tiny_model: Path) -> None:
    from encoder.examples import Example
    from finetuning.job import run_finetune

    path = tmp_path / "few.jsonl"
    write_examples(path, [Example("u", "a", f"i{i}", "b", float(i)) for i in range(20)])
    result = run_finetune(settings_for(tmp_path, tiny_model), path)
    assert result.result == "skipped" and "too few" in result.reason


def test_commands_finetune_and_models(
    tmp_path: Path,
    tiny_model: Path,
    examples_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cli.main import main

    monkeypatch.setenv("TASTEGRAPH_HOME", str(tmp_path))
    monkeypatch.setenv("TASTEGRAPH_MODEL", str(tiny_model))
    monkeypatch.setenv("TASTEGRAPH_FINETUNE_MAX_LEN", "32")
    argv = ["finetune", "--now", "--examples", str(examples_file), "--steps", "0", "--json"]
    assert main(argv) == 1  # rejected: an untrained candidate is not better
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["result"] == "rejected" and out["version"] == "ft-0001"

    assert main(["models", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["version"], r["status"], r["current"]) for r in rows] == [
        (BASE_VERSION, "promoted", True),
        ("ft-0001", "rejected", False),
    ]
    assert main(["models", "current"]) == 0
    assert capsys.readouterr().out.startswith(BASE_VERSION)
    assert main(["models", "rollback", "ft-0001"]) == 2  # no weights: refused, nothing changes
    assert ModelRegistry(tmp_path / "models").current_version() == BASE_VERSION
    assert main(["models", "list"]) == 0
    assert "ft-0001" in capsys.readouterr().out


def test_the_event_loop_keeps_ticking_while_a_run_trains(
    tmp_path: Path, tiny_model: Path, examples_file: Path
) -> None:
    import asyncio
    import time

    from finetuning.job import run_finetune_async

    settings = settings_for(tmp_path, tiny_model)

    async def scenario() -> tuple[Any, float, int]:
        task = asyncio.create_task(run_finetune_async(settings, examples_file, steps=10))
        worst, ticks = 0.0, 0
        while not task.done():
            t0 = time.monotonic()
            await asyncio.sleep(0.02)
            worst = max(worst, time.monotonic() - t0 - 0.02)
            ticks += 1
        return task.result(), worst, ticks

    result, worst_lag, ticks = asyncio.run(scenario())
    assert result.result in ("promoted", "rejected"), result
    assert result.train["steps"] == 10
    assert ticks > 50
    assert worst_lag < 0.5  # the training runs in another process; the loop only waits


def test_a_run_left_training_by_a_dead_process_is_recorded_failed(
    tmp_path: Path, tiny_model: Path
) -> None:
    from encoder.examples import Example
    from finetuning.job import run_finetune
    from finetuning.stores import registry_for

    settings = settings_for(tmp_path, tiny_model)
    registry = registry_for(settings)
    stale = registry.create_version(BASE_VERSION, 10).version  # its run died before the gate
    path = tmp_path / "few.jsonl"
    write_examples(path, [Example("u", "a", f"i{i}", "b", float(i)) for i in range(5)])
    run_finetune(settings, path)  # skipped (too few), but it cleans up first
    info = registry.get(stale)
    assert info.status == "failed" and "interrupted" in info.metadata["reason"]
    assert registry.current_version() == BASE_VERSION


def test_a_head_run_is_promoted_saved_as_a_dense_module_and_served_through_it(
    tmp_path: Path, tiny_model: Path, examples_file: Path
) -> None:
    """`TASTEGRAPH_FINETUNE_MODE=head`: a linear head on the frozen encoder (encoder/head.py),
    judged by the same gate, saved in the version's folder and applied by the loader."""
    import numpy as np

    from encoder.backend import load_text_encoder
    from encoder.head import HEAD_DIR, HeadEncoder, apply_head, load_head
    from finetuning.job import run_finetune
    from finetuning.stores import registry_for

    settings = settings_for(tmp_path, tiny_model, finetune_mode="head")
    result = run_finetune(settings, examples_file)
    assert result.result == "promoted", result
    assert result.metrics_after["ndcg_at_10"] > result.metrics_before["ndcg_at_10"]
    registry = registry_for(settings)
    meta = registry.get(result.version).metadata
    assert meta["train"]["mode"] == "head" and meta["train"]["steps"] > 0
    folder = Path(registry.current().model_ref)
    head = load_head(folder)
    assert head is not None and (folder / HEAD_DIR / "config.json").exists()
    assert not np.allclose(head, np.eye(head.shape[0]))
    served = load_text_encoder(str(folder), backend="torch", threads=1)
    base = load_text_encoder(str(tiny_model), backend="torch", threads=1)
    assert isinstance(served, HeadEncoder) and served.version != base.version
    assert served.version.startswith(base.version + "+head@")
    texts = ["a red mug", "garden chair"]
    assert np.allclose(served.encode(texts), apply_head(base.encode(texts), head), atol=1e-5)
