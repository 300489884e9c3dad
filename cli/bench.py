"""`tastegraph bench encoder|pipeline`: throughput benchmarks.

``encoder`` encodes the same generated product texts naive (one per forward call) and optimised
(token-budget batches) in one run and prints one JSON object (see encoder/bench.py).
``pipeline`` is tools/pipeline_bench.py's ``run(args, settings)``.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import importlib.util
from typing import Any

import orjson

from config.exceptions import ConfigError, TastegraphError
from config.settings import Settings


def _seq_lens(raw: str) -> list[int]:
    try:
        values = [int(p) for p in raw.split(",") if p.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{raw!r}: expected lengths like 32,64,128") from e
    if not values or any(not 2 <= v <= 512 for v in values):
        raise argparse.ArgumentTypeError(f"{raw!r}: lengths must be between 2 and 512")
    return values


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    enc = sub.add_parser(
        "encoder",
        help="naive (one text per forward) against batched encoding of the same texts",
        description="Encode N generated product texts naive and optimised in one run.",
    )
    enc.add_argument("--texts", type=int, default=1000, metavar="N", help="texts (default 1000)")
    enc.add_argument("--json", action="store_true", help="print one JSON object on one line")
    enc.add_argument(
        "--model",
        help="model directory or package (default TASTEGRAPH_MODEL); "
        "'bert-base-random': bert-base-sized, random weights, throughput only",
    )
    enc.add_argument("--device", help="auto, cpu, cuda or cuda:N (default TASTEGRAPH_DEVICE)")
    enc.add_argument("--threads", type=int, help="CPU threads (default TASTEGRAPH_ENCODER_THREADS)")
    enc.add_argument(
        "--max-tokens-per-batch",
        type=int,
        metavar="T",
        help="token budget per forward call (default TASTEGRAPH_MAX_TOKENS_PER_BATCH)",
    )
    enc.add_argument("--max-len", type=int, help="truncation length (default TASTEGRAPH_MAX_LEN)")
    enc.add_argument(
        "--seq-len",
        type=_seq_lens,
        default=[],
        metavar="L[,L...]",
        help="texts all truncated to exactly L tokens (e.g. 32,64,128) instead of varied lengths",
    )
    enc.add_argument(
        "--rounds", type=int, default=3, help="interleaved naive/optimised rounds (default 3)"
    )
    enc.add_argument(
        "--skip-naive", action="store_true", help="throughput only (no naive pass, no speedup)"
    )
    enc.add_argument(
        "--peak-tflops", type=float, help="FLOP ceiling for flop_ceiling_share (GPU default: known)"
    )
    enc.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="weights' dtype (auto: bfloat16 on a GPU or a CPU with native bf16, else float32)",
    )
    enc.add_argument("--seed", type=int, default=0, help="text generator seed")
    enc.add_argument(
        "--texts-file",
        metavar="JSONL",
        help="a catalogue (JSON lines, .gz allowed, with title/category/description): its first N "
        "distinct item texts instead of generated ones",
    )
    enc.add_argument(
        "--no-onnx",
        action="store_true",
        help="leave out the int8 ONNX Runtime encoder (timed beside torch on a CPU by default)",
    )
    pipe = sub.add_parser(
        "pipeline",
        help="end-to-end stream throughput (tools/pipeline_bench.py)",
        description="End-to-end pipeline benchmark.",
    )
    from tools.pipeline_bench import configure as configure_pipeline

    configure_pipeline(pipe)


def _catalogue_texts(path: str, n: int) -> list[str]:
    """The first ``n`` distinct non-empty item texts of a JSON-lines catalogue (gzip or plain)."""
    from graph.model import item_text

    opener = gzip.open if path.endswith(".gz") else open
    texts: dict[str, None] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                row = orjson.loads(line)
                text = item_text(row.get("title"), row.get("category"), row.get("description"))
                if text:
                    texts[text] = None
                if len(texts) >= n:
                    break
    except (OSError, ValueError) as e:
        raise ConfigError(f"--texts-file {path}: {e}") from e
    if not texts:
        raise ConfigError(f"--texts-file {path}: no item texts")
    return list(texts)


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(report).decode())
        return
    width = max(map(len, report))
    for key, value in report.items():
        shown = orjson.dumps(value).decode() if isinstance(value, list | dict) else value
        print(f"{key:<{width}}  {shown}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.bench == "pipeline":
        try:
            module = importlib.import_module("tools.pipeline_bench")
        except ModuleNotFoundError as e:
            if e.name != "tools.pipeline_bench":
                raise
            raise TastegraphError("the pipeline benchmark is not available in this build") from e
        return int(module.run(args, settings) or 0)

    from encoder.bench import run_encoder_bench
    from encoder.exceptions import EncoderError

    if args.texts < 1:
        raise ConfigError("--texts must be at least 1")
    sample = _catalogue_texts(args.texts_file, args.texts) if args.texts_file else None
    try:
        report = run_encoder_bench(
            model=args.model or settings.model,
            device=args.device or settings.device,
            texts=len(sample) if sample is not None else args.texts,
            threads=settings.encoder_threads if args.threads is None else args.threads,
            max_tokens_per_batch=args.max_tokens_per_batch or settings.max_tokens_per_batch,
            max_len=args.max_len or settings.max_len,
            seq_lens=args.seq_len,
            rounds=args.rounds,
            skip_naive=args.skip_naive,
            peak_tflops=args.peak_tflops,
            seed=args.seed,
            dtype=args.dtype,
            onnx=not args.no_onnx and importlib.util.find_spec("onnxruntime") is not None,
            onnx_cache_dir=settings.home / "onnx",
            sample=sample,
        )
    except EncoderError as e:
        raise TastegraphError(str(e)) from e
    _print(report, args.json)
    return 0
