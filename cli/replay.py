"""`tastegraph replay`: produce a recorded-topic file, a plain events file or an items file back to
Kafka (see tools/recording.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config.settings import Settings


def _mapping(value: str) -> tuple[str, str]:
    old, sep, new = value.partition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW, got {value!r}")
    return old, new


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="JSON-lines files (.gz accepted): recorded records go back to their topic; plain "
        "events to the topic of their type (TASTEGRAPH_TOPIC_CLICKS, _BROWSES, _PURCHASES); "
        "items to TASTEGRAPH_TOPIC_ITEMS",
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="EVENTS_PER_S",
        help="produce at most this many records per second (default: as fast as possible)",
    )
    parser.add_argument(
        "--topic",
        dest="topic_map",
        type=_mapping,
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="produce records bound for topic OLD to NEW instead (repeatable)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (none when stderr is not a terminal; the summary still prints)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from tools.recording import replay

    summary = asyncio.run(
        replay(
            settings,
            args.files,
            rate=args.rate,
            topic_map=dict(args.topic_map),
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    )
    print(summary.line())
    return 0
