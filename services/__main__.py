"""`python -m services up|down|status [--quiet]`: the same as `tastegraph services ...`.

Useful where the full CLI cannot start (e.g. while another command module is broken).
"""

from __future__ import annotations

import argparse
import sys

from config.exceptions import TastegraphError
from config.logs import setup_logging
from config.settings import Settings
from services import command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services")
    command.configure(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level)
        return command.run(args, settings)
    except TastegraphError as e:
        print(f"tastegraph: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
