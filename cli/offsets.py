"""`tastegraph offsets show | reset`: the worker's consumer group (TASTEGRAPH_APP_ID) offsets.

`reset` moves where the workers resume: to the earliest record Kafka holds, to the end, or to the
first record at or after a time. It needs every worker stopped, and asks (or needs ``--yes``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

import orjson

from cli.confirm import confirmed
from cli.times import parse_time
from config.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="the group's committed offset, start, end and lag")
    reset = sub.add_parser(
        "reset", help="move where the workers resume (every worker stopped; asks or --yes)"
    )
    for p in (show, reset):
        p.add_argument(
            "--topic",
            action="append",
            metavar="TOPIC",
            help="only this topic (repeatable; default: the event topics and the items topic, "
            "TASTEGRAPH_TOPIC_*)",
        )
        p.add_argument("--json", action="store_true", help="print one JSON document")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the earliest record Kafka holds")
    to.add_argument("--to-latest", action="store_true", help="the end: skip what is not read yet")
    to.add_argument(
        "--to-datetime",
        type=parse_time,
        metavar="TIME",
        help="the first record at or after TIME (epoch seconds or ISO-8601, naive means UTC; "
        "record timestamps are the producers')",
    )
    reset.add_argument("--yes", action="store_true", help="do not ask")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tools.offsets import EARLIEST, LATEST, describe_offsets, reset_offsets, run_blocking

    topics = args.topic or [*settings.event_topics, settings.topic_items]
    if args.action == "show":
        rows = [
            {
                "topic": o.topic,
                "partition": o.partition,
                "committed": o.committed,
                "start": o.start,
                "end": o.end,
                "lag": o.lag,
            }
            for o in run_blocking(describe_offsets(settings, topics))
        ]
        _print(rows, args.json)
        return 0
    to = EARLIEST if args.to_earliest else LATEST if args.to_latest else args.to_datetime
    plan = run_blocking(reset_offsets(settings, topics, to, apply=False))
    rows = [
        {"topic": o.topic, "partition": o.partition, "committed": o.committed, "new": new}
        for o, new in plan
    ]
    question = f"move consumer group {settings.app_id!r} as above?"
    if not args.json:
        _print(rows, False)
    if not confirmed(question, args.yes):
        print("tastegraph: nothing changed (pass --yes to apply)", file=sys.stderr)
        return 1
    run_blocking(reset_offsets(settings, topics, to, apply=True))
    if args.json:
        _print(rows, True)
    else:
        print(f"consumer group {settings.app_id!r} moved")
    return 0


def _print(rows: Sequence[Mapping[str, object]], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        print("(no partitions)")
        return
    columns = list(rows[0])
    cells = [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
