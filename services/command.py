"""`up | down | status [--quiet]`: the arguments and the action behind `tastegraph services` and
`python -m services` (both call :func:`configure` and :func:`run`)."""

from __future__ import annotations

import argparse

from config.settings import Settings
from services.control import down, status, up


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser(
        "up",
        help="start Kafka and Neo4j (downloads them the first time) and wait until both answer",
    )
    sub.add_parser("down", help="stop the Kafka and Neo4j that `up` started")
    status_parser = sub.add_parser("status", help="say what runs where")
    status_parser.add_argument(
        "--quiet",
        action="store_true",
        help="print nothing; exit 0 when both run, 1 otherwise",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "up":
        for state in up(settings):
            print(state.line())
        if settings.use_local_services:
            print(f"neo4j password: {settings.home / 'neo4j-password'} (user neo4j)")
        return 0
    if args.action == "down":
        for state in down(settings):
            print(state.line())
        return 0
    states = status(settings)
    if not args.quiet:
        for state in states:
            print(state.line())
        if settings.use_local_services:
            print(f"state, logs: {settings.home / 'services'}")
    return 0 if all(s.running for s in states) else 1
