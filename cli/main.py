"""The `tastegraph` command line. Each command lives in its own module, imported only when used.

A command module exposes ``configure(parser)`` and ``run(args, settings) -> int``.
Every flag that changes behaviour also has an environment variable (see `tastegraph config`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from config.exceptions import TastegraphError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("cli.services", "start, stop or show the local Kafka and Neo4j"),
    "worker": ("cli.worker", "run the stream worker (Faust app)"),
    "record": ("cli.record", "record topics to a JSON-lines file"),
    "replay": ("cli.replay", "produce a recorded or plain events file back to Kafka"),
    "generate": ("cli.generate", "write a generated data set with planted tastes"),
    "recommend": ("cli.queries", "top-k items for a user"),
    "explain": ("cli.queries", "why an item is recommended to a user"),
    "similar-users": ("cli.queries", "users most similar to a user"),
    "audience": ("cli.queries", "users most interested in a category or item"),
    "cart-complements": ("cli.queries", "items to add to a cart"),
    "trends": ("cli.queries", "a user's rising and falling categories"),
    "churn-risk": ("cli.queries", "users whose interest is fading"),
    "forget": ("cli.queries", "erase a user and everything derived from them"),
    "prune-ledger": ("cli.queries", "drop event-id ledger entries older than N days"),
    "evaluate": ("cli.evaluate", "offline evaluation (protocol v1) against baselines"),
    "bench": ("cli.bench", "benchmarks: encoder, pipeline"),
    "finetune": ("cli.finetune", "fine-tune the encoder now"),
    "models": ("cli.models", "list, promote or roll back encoder versions"),
    "config": ("cli.config", "print the effective configuration, secrets masked"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so `--help` of one command is fast)."""
    parser = argparse.ArgumentParser(
        prog="tastegraph",
        description="Keep an e-commerce user-interest graph in Neo4j fresh from Kafka events.",
        epilog="Configuration comes from the environment; see `tastegraph config`.",
    )
    parser.add_argument("--log-level", help="log level (env TASTEGRAPH_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name != command:
            continue
        module = importlib.import_module(module_name)
        if hasattr(module, "configure_command"):
            module.configure_command(name, p)
        else:
            module.configure(p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--log-level":
            args = args[1:]
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from config.logs import setup_logging
    from config.settings import Settings

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    try:
        overrides = {"log_level": args.log_level} if args.log_level else {}
        settings = Settings.from_env(**overrides)
        setup_logging(settings.log_level)
        module = importlib.import_module(args._module)
        return int(module.run(args, settings) or 0)
    except TastegraphError as e:
        logging.getLogger("tastegraph").debug("failed", exc_info=True)
        print(f"tastegraph: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
