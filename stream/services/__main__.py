"""`python -m stream.services up|down|status [--quiet]`: the same as `tastegraph services ...`.

Useful where the full CLI cannot start (e.g. while another command module is broken).
"""

from __future__ import annotations

import argparse
import sys

from stream.commands import services as command
from stream.exceptions import TastegraphError
from stream.logs import setup_logging
from stream.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.services")
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
