"""`tastegraph generate`: write a generated data set with planted tastes (see tools/datagen.py)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from datetime import datetime
from pathlib import Path

from config.settings import Settings


def _iso_day(value: str) -> float:
    try:
        return datetime.fromisoformat(value + "T00:00:00+00:00").timestamp()
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from e


def configure(parser: argparse.ArgumentParser) -> None:
    from tools.shop import DatasetConfig

    d = DatasetConfig()
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--users", type=int, default=d.users, help=f"users (default {d.users})")
    parser.add_argument("--items", type=int, default=d.items, help=f"items (default {d.items})")
    parser.add_argument("--days", type=int, default=d.days, help=f"days (default {d.days})")
    parser.add_argument("--events", type=int, default=d.events, help=f"events (default {d.events})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed (default {d.seed})")
    parser.add_argument(
        "--start",
        type=_iso_day,
        default=d.start,
        metavar="YYYY-MM-DD",
        help="first day, UTC (default 2026-01-01)",
    )
    parser.add_argument(
        "--text-share",
        type=float,
        default=d.text_share,
        help=f"share of sessions starting with a search query (default {d.text_share})",
    )
    parser.add_argument(
        "--drift-share",
        type=float,
        default=d.drift_share,
        help=f"share of users whose tastes drift (default {d.drift_share})",
    )
    parser.add_argument(
        "--brand-loyalty",
        type=float,
        default=d.brand_loyalty,
        help=f"share of sessions browsing the user's favourite brand (default {d.brand_loyalty})",
    )
    parser.add_argument(
        "--invalid",
        type=int,
        default=0,
        metavar="N",
        help="also write N malformed event records (invalid.jsonl.gz, record format) for fuzzing",
    )
    parser.add_argument(
        "--item-fields",
        action="store_true",
        help="copy title, category and description into every event",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tools.datagen import iter_dataset, write_dataset, write_jsonl_gz
    from tools.fuzz import invalid_records
    from tools.shop import DatasetConfig

    cfg = DatasetConfig(
        users=args.users,
        items=args.items,
        days=args.days,
        events=args.events,
        seed=args.seed,
        start=args.start,
        text_share=args.text_share,
        drift_share=args.drift_share,
        brand_loyalty=args.brand_loyalty,
        item_fields=args.item_fields,
    )
    if cfg.users < 1 or cfg.days < 1 or cfg.events < 0 or cfg.items < 1:
        print(
            "tastegraph generate: --users, --items and --days must be at least 1", file=sys.stderr
        )
        return 2
    t0 = time.monotonic()
    summary = write_dataset(args.out, cfg)
    by_type = ", ".join(f"{k} {v}" for k, v in summary["by_type"].items())
    print(
        f"wrote {summary['events']} events ({by_type}) from {summary['first_ts']} to "
        f"{summary['last_ts']} and {summary['items']} items for {cfg.users} users to "
        f"{args.out} in {time.monotonic() - t0:.1f} s"
    )
    if args.invalid > 0:
        _, events = iter_dataset(dataclasses.replace(cfg, events=min(cfg.events, 5000) or 100))
        sample = list(events)
        n = write_jsonl_gz(
            args.out / "invalid.jsonl.gz",
            invalid_records(sample, args.invalid, settings.event_topics, cfg.seed),
        )
        print(f"wrote {n} malformed event records to {args.out / 'invalid.jsonl.gz'}")
    return 0
