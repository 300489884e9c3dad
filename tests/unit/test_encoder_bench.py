"""`tastegraph bench encoder|pipeline`: the command runs end to end on the CPU with a small N."""

from __future__ import annotations

import argparse
import json
import sys
import types
from typing import Any

import pytest

from cli import bench
from config.settings import Settings
from encoder.bench import flops_per_token, product_texts


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    return parser.parse_args(argv)


def test_product_texts_are_distinct_and_varied() -> None:
    texts = product_texts(400, seed=1)
    assert len(set(texts)) == 400
    words = sorted(len(t.split()) for t in texts)
    assert words[0] < 15 and words[-1] > 100  # bare titles and descriptions past max_len
    assert product_texts(5, seed=1) == texts[:5]


def test_flop_model_matches_the_usual_figures() -> None:
    minilm = types.SimpleNamespace(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)
    base = types.SimpleNamespace(hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
    assert flops_per_token(minilm, 128) / 1e6 == pytest.approx(22.4, abs=0.5)
    assert flops_per_token(base, 128) / 1e6 == pytest.approx(175, abs=2)


@pytest.mark.slow
def test_bench_encoder_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["encoder", "--texts", "12", "--json", "--device", "cpu", "--rounds", "2", "--no-onnx"]
    assert bench.run(_parse(argv), Settings()) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("device", "model", "texts", "naive_texts_per_s", "texts_per_s", "speedup"):
        assert report[key] is not None, key
    assert report["device"] == "cpu" and report["texts"] == 12 and report["peak_rss_mb"] > 0
    assert report["max_tokens_per_batch"] == 8192 and report["threads"] >= 1
    assert report["min_cosine_naive_vs_optimised"] > 0.999
    assert report["random_weights"] is False


@pytest.mark.slow
def test_bench_random_bert_base_at_fixed_lengths(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["encoder", "--model", "bert-base-random", "--texts", "3", "--seq-len", "8,16"]
    args = _parse([*argv, "--json", "--device", "cpu", "--rounds", "1"])
    assert bench.run(args, Settings()) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["random_weights"] is True and "random weights" in report["note"]
    assert [r["seq_len"] for r in report["runs"]] == [8, 16]
    for run in report["runs"]:
        assert run["mean_tokens_per_text"] == run["seq_len"]
        assert run["truncated_texts"] == 3
        assert run["mflop_per_token"] > 170  # bert-base sized


def test_bench_pipeline_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(args: argparse.Namespace, settings: Settings) -> int:
        seen.update(events=args.events, json=args.json)
        return 0

    module = types.ModuleType("tools.pipeline_bench")
    module.run = fake_run  # type: ignore[attr-defined]

    def fake_configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--events", type=int)
        parser.add_argument("--json", action="store_true")

    module.configure = fake_configure  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tools.pipeline_bench", module)
    assert bench.run(_parse(["pipeline", "--events", "50", "--json"]), Settings()) == 0
    assert seen == {"events": 50, "json": True}


def test_bench_rejects_bad_lengths() -> None:
    with pytest.raises(SystemExit):
        _parse(["encoder", "--seq-len", "1000"])
