"""`tastegraph config`: the effective configuration by environment variable, secrets masked.

The output is a valid environment (``NAME  value`` lines, or ``--json``), so it can be compared
between workers or pasted into a bug report; ``--changed`` shows only what differs from the
defaults, which is what a deployment actually configures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from config.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--changed", action="store_true", help="only the variables that differ from the defaults"
    )


def defaults() -> dict[str, str]:
    """The defaults, by variable, as `Settings.masked` writes them (the home without the env)."""
    return Settings(home=Path.home() / ".cache" / "tastegraph").masked()


def run(args: argparse.Namespace, settings: Settings) -> int:
    values = settings.masked()
    if args.changed:
        default = defaults()
        values = {k: v for k, v in values.items() if v != default.get(k)}
    if args.json:
        print(orjson.dumps(values, option=orjson.OPT_SORT_KEYS).decode())
    elif values:
        width = max(map(len, values))
        for name in sorted(values):
            print(f"{name:<{width}}  {values[name]}")
    return 0
