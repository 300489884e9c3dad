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

from config.exceptions import ConfigError
from config.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", action="store_true", required=True, help="run one fine-tuning now")
    parser.add_argument("--examples", type=Path, help="examples JSONL (default: the worker's file)")
    parser.add_argument("--events", type=Path, help="build examples from this events JSONL(.gz)")
    parser.add_argument("--items", type=Path, help="items JSONL(.gz) giving the events' item texts")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument(
        "--until",
        metavar="DATE",
        help="with --events: only events before DATE (YYYY-MM-DD[THH:MM], UTC; exclusive)",
    )
    cut.add_argument(
        "--before-test-days",
        type=int,
        metavar="N",
        help="with --events: only events before the test period of `tastegraph evaluate "
        "--test-days N` on the same file (its last N calendar days), so an evaluation of the "
        "fine-tuned version does not see its test data in training",
    )
    parser.add_argument(
        "--budget-s", type=float, help="time budget, seconds (env ..._FINETUNE_BUDGET_S)"
    )
    parser.add_argument("--steps", type=int, help="step budget (env TASTEGRAPH_FINETUNE_STEPS)")
    parser.add_argument(
        "--margin",
        type=float,
        help="the NDCG@10 gain's lower confidence bound must be above this "
        "(env TASTEGRAPH_FINETUNE_MARGIN)",
    )
    parser.add_argument("--lora", action="store_true", default=None, help="train a LoRA adapter")
    parser.add_argument(
        "--keep-rejected",
        action="store_true",
        help="keep a rejected candidate's weights (never promoted; for `evaluate --model`)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    import orjson

    from finetuning.job import run_finetune
    from finetuning.stores import default_examples_path

    examples_path: Path | None = args.examples
    catalog_path = None
    if (args.until or args.before_test_days) and args.events is None:
        raise ConfigError("--until and --before-test-days need --events")
    if args.events is not None:
        if args.items is None:
            raise ConfigError("--events needs --items (the item texts)")
        examples_path, catalog_path = _build_from_events(
            args.events,
            args.items,
            settings,
            until=_parse_until(args.until) if args.until else None,
            before_test_days=args.before_test_days,
        )
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
        keep_rejected=args.keep_rejected,
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
                f"({m.get('queries') or m['examples']} queries of {m.get('users', '?')} users, "
                f"{m['catalog']} items)"
            )
    if result.gain_ci:
        ci = result.gain_ci
        print(
            f"gain:    NDCG@10 {ci['gain']:+.4f}, {ci['confidence']:.0%} CI "
            f"[{ci['lower']:+.4f}, {ci['upper']:+.4f}] (paired bootstrap over {ci['users']} users)"
        )
    if result.train:
        print(
            f"train:   {result.train.get('steps')} steps, {result.train.get('seconds', 0):.0f}s, "
            f"stopped by {result.train.get('stopped_by')}"
        )
    print(f"seconds: {result.seconds:.1f}")
    if result.reason:
        print(f"reason:  {result.reason}")


def _parse_until(value: str) -> float:
    try:
        return _ts(value)
    except ValueError as e:
        raise ConfigError(f"--until {value!r}: not a date (YYYY-MM-DD[THH:MM])") from e


def evaluation_test_start(rows: list[tuple[str, str, str, float]], test_days: int) -> float:
    """Epoch seconds of 00:00 UTC on the first day of `tastegraph evaluate --test-days N`'s test
    period over these events: the last ``test_days`` calendar days, the last event's day included
    (``evaluation.protocol.split_days``)."""
    from datetime import UTC, datetime, timedelta

    if test_days < 1:
        raise ConfigError("--before-test-days must be at least 1")
    if not rows:
        raise ConfigError("no events")
    last = datetime.fromtimestamp(max(r[3] for r in rows), tz=UTC).date()
    first = last - timedelta(days=test_days - 1)
    return datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()


def events_before(
    rows: list[tuple[str, str, str, float]],
    until: float | None = None,
    before_test_days: int | None = None,
) -> tuple[list[tuple[str, str, str, float]], float | None]:
    """The events strictly before ``until`` (epoch seconds) or before the evaluation's test period
    of ``before_test_days`` days; returns them and the cut-off used (``None``: no cut)."""
    if before_test_days is not None:
        until = evaluation_test_start(rows, before_test_days)
    if until is None:
        return rows, None
    return [r for r in rows if r[3] < until], until


def _build_from_events(
    events: Path,
    items: Path,
    settings: Settings,
    *,
    until: float | None = None,
    before_test_days: int | None = None,
) -> tuple[Path, Path]:
    """Writes examples and the item catalogue built from an events file under the home folder.

    With ``until``/``before_test_days`` only earlier events make examples; the catalogue is still
    every item of ``items`` (texts, not behaviour)."""
    import json
    import sys
    from datetime import UTC, datetime

    from encoder.example_store import ExampleStore, write_examples
    from encoder.examples import build_examples
    from finetuning.stores import example_builder_for

    texts = read_item_texts(items)
    categories = read_item_categories(items)
    rows, cut = events_before(read_events(events), until, before_test_days)
    name = f"{events.name.split('.')[0]}-ctx{settings.finetune_context_n}"
    if cut is not None:
        stamp = datetime.fromtimestamp(cut, tz=UTC).strftime("%Y%m%dT%H%M")
        name += f"-until-{stamp}"
        when = datetime.fromtimestamp(cut, tz=UTC).isoformat()
        print(f"using {len(rows)} events before {when}", file=sys.stderr)
    out_dir = settings.home / "finetune" / "built" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    examples_path = out_dir / "examples.jsonl"
    catalog_path = out_dir / "catalog.json"
    builder = example_builder_for(settings)
    store = ExampleStore(settings.finetune_max_examples)
    store.add_many(build_examples(rows, texts, builder))
    n = write_examples(examples_path, store)
    catalog_path.write_text(json.dumps(texts))
    # next to the catalogue, where the training process looks for its hard negatives
    (out_dir / "categories.json").write_text(json.dumps(categories))
    print(f"built {n} examples (newest kept) from {events} into {examples_path}", file=sys.stderr)
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


def read_item_categories(path: Path) -> dict[str, str]:
    """Item id -> category from an items JSONL(.gz) file (items without one are left out)."""
    import json

    out: dict[str, str] = {}
    with _open_text(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if d.get("category"):
                    out[str(d["item_id"])] = str(d["category"])
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
