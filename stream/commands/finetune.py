"""`tastegraph finetune --now`: one fine-tuning run of the encoder, gated and recorded.

The examples come from ``--examples FILE`` (JSON lines of `encoder.examples.Example`), by default
the file the worker accumulates (``$TASTEGRAPH_HOME/finetune/examples.jsonl``); or they are built
on the spot from an events file and an items file (``--events``/``--items``, the format of
``../shared/data/online_retail_ii_y1``). Training runs in a separate process; its progress bar
shows on a terminal. Exit status: 0 promoted, 1 rejected or skipped, 3 failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stream.exceptions import ConfigError
from stream.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", action="store_true", required=True, help="run one fine-tuning now")
    parser.add_argument("--examples", type=Path, help="examples JSONL (default: the worker's file)")
    parser.add_argument("--events", type=Path, help="build examples from this events JSONL(.gz)")
    parser.add_argument("--items", type=Path, help="items JSONL(.gz) giving the events' item texts")
    parser.add_argument(
        "--budget-s", type=float, help="time budget, seconds (env ..._FINETUNE_BUDGET_S)"
    )
    parser.add_argument("--steps", type=int, help="step budget (env TASTEGRAPH_FINETUNE_STEPS)")
    parser.add_argument("--margin", type=float, help="NDCG@10 gain needed to promote")
    parser.add_argument("--lora", action="store_true", default=None, help="train a LoRA adapter")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    import orjson

    from stream.finetune_job import default_examples_path, run_finetune

    examples_path: Path | None = args.examples
    catalog_path = None
    if args.events is not None:
        if args.items is None:
            raise ConfigError("--events needs --items (the item texts)")
        examples_path, catalog_path = _build_from_events(args.events, args.items, settings)
    elif examples_path is None:
        examples_path = default_examples_path(settings)
    if not examples_path.exists():
        raise ConfigError(f"no examples file at {examples_path}")
    result = run_finetune(
        settings,
        examples_path,
        budget_s=args.budget_s,
        steps=args.steps,
        margin=args.margin,
        lora=args.lora,
        progress=not args.no_progress and sys.stderr.isatty(),
        catalog_path=catalog_path,
    )
    if args.json:
        print(orjson.dumps(result.to_json()).decode())
    else:
        _print(result)
    return {"promoted": 0, "rejected": 1, "skipped": 1}.get(result.result, 3)


def _print(result: Any) -> None:
    print(f"result:  {result.result}")
    print(f"version: {result.version} (parent {result.parent_version})")
    print(f"examples: {result.examples} train, {result.held_out} held out")
    for label, m in (("before", result.metrics_before), ("after", result.metrics_after)):
        if m:
            print(
                f"{label:<7} HR@10 {m['hr_at_10']:.4f}  NDCG@10 {m['ndcg_at_10']:.4f}  "
                f"({m['examples']} examples, {m['catalog']} items)"
            )
    if result.train:
        print(
            f"train:   {result.train.get('steps')} steps, {result.train.get('seconds', 0):.0f}s, "
            f"stopped by {result.train.get('stopped_by')}"
        )
    print(f"seconds: {result.seconds:.1f}")
    if result.reason:
        print(f"reason:  {result.reason}")


def _build_from_events(events: Path, items: Path, settings: Settings) -> tuple[Path, Path]:
    """Writes examples and the item catalogue built from an events file under the home folder."""
    import json

    from encoder.examples import ExampleBuilder, ExampleStore, build_examples, write_examples

    texts = read_item_texts(items)
    out_dir = settings.home / "finetune" / "built" / events.name.split(".")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    examples_path = out_dir / "examples.jsonl"
    catalog_path = out_dir / "catalog.json"
    builder = ExampleBuilder(settings.finetune_context_n)
    store = ExampleStore(settings.finetune_max_examples)
    store.add_many(build_examples(read_events(events), texts, builder))
    n = write_examples(examples_path, store)
    catalog_path.write_text(json.dumps(texts))
    print(f"built {n} examples (newest kept) from {events} into {examples_path}", flush=True)
    return examples_path, catalog_path


def _open_text(path: Path) -> Any:
    import gzip

    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _ts(value: Any) -> float:
    """Epoch seconds from a number or an ISO-8601 string (naive: taken as UTC)."""
    from datetime import UTC, datetime

    if isinstance(value, int | float):
        return float(value)
    dt = datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_item_texts(path: Path) -> dict[str, str]:
    """Item id -> embedded text (`graph.model.item_text`) from an items JSONL(.gz) file."""
    import json

    from graph.model import item_text

    out: dict[str, str] = {}
    with _open_text(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                text = item_text(d.get("title"), d.get("category"), d.get("description"))
                if text:
                    out[str(d["item_id"])] = text
    return out


def read_events(path: Path) -> Any:
    """``(user_id, item_id, type, ts)`` from an events JSONL(.gz) file, sorted by ``ts``."""
    import json

    rows = []
    with _open_text(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                rows.append((str(d["user_id"]), str(d["item_id"]), str(d["type"]), _ts(d["ts"])))
    rows.sort(key=lambda r: r[3])  # stable: same-time lines keep their file order
    return rows
