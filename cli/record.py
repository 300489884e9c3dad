"""`tastegraph record`: copy topic records into a JSON-lines file (see tools/recording.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from config.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="file to write (.gz compresses; - for stdout)"
    )
    parser.add_argument("topics", nargs="+", metavar="TOPIC", help="topics to record")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the earliest offsets (default: only records that arrive from now on)",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS without a new record (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--until-end",
        action="store_true",
        help="stop once every partition reaches the end offset it had at the start",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal
    import sys

    from tools.recording import RecordSummary, record

    async def main() -> RecordSummary:
        # Ctrl-C or SIGTERM ends the recording cleanly: the last fetch is written, then a summary
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await record(
                settings,
                args.topics,
                args.out,
                from_beginning=args.from_beginning,
                until_idle_s=args.until_idle,
                until_end=args.until_end,
                stop=stop,
            )
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    summary = asyncio.run(main())
    print(summary.line(), file=sys.stderr if str(args.out) == "-" else sys.stdout)
    return 0
