"""`tastegraph config`: the effective configuration by environment variable, secrets masked."""

from __future__ import annotations

import argparse

import orjson

from stream.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace, settings: Settings) -> int:
    values = settings.masked()
    if args.json:
        print(orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode())
    else:
        width = max(map(len, values))
        for name in sorted(values):
            print(f"{name:<{width}}  {values[name]}")
    return 0
