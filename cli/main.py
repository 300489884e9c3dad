"""The `tastegraph` command line. Each command lives in its own module, imported only when used.

A command module exposes ``configure(parser)`` and ``run(args, settings) -> int``.
Every flag that changes behaviour also has an environment variable (see `tastegraph config`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

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
    "prune-ledger": (
        "cli.queries",
        "drop event-id ledger entries older than D days (--older-than-days)",
    ),
    "offsets": ("cli.offsets", "show or move the workers' consumer group offsets"),
    "graph": ("cli.graph", "start the graph over, or rotate the Neo4j password"),
    "evaluate": ("cli.evaluate", "offline evaluation (protocol v1) against baselines"),
    "tune-blend": ("cli.tune_blend", "score blend weights on saved evaluation components"),
    "bench": ("cli.bench", "benchmarks: encoder, pipeline"),
    "finetune": ("cli.finetune", "fine-tune the encoder now"),
    "models": ("cli.models", "list, promote or roll back encoder versions"),
    "config": ("cli.config", "print the effective configuration, secrets masked"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so `--help` of one command is fast)."""
    parser = _Parser(
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


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (what is wrong and where to look), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _sentence(e: BaseException, settings: Any) -> str | None:
    """The one sentence for an error a user can cause, or None for a bug (shown with a traceback).

    The only place that maps exceptions to messages; the driver libraries are looked up in
    ``sys.modules`` so that a command that never imported them does not import them here.
    """
    neo4j_url = getattr(settings, "neo4j_url", "the configured Neo4j")
    kafka = getattr(settings, "kafka_servers", "the configured Kafka")
    if isinstance(e, TastegraphError):
        return str(e)
    neo4j_errors = sys.modules.get("neo4j.exceptions")
    if neo4j_errors is not None:
        if isinstance(e, neo4j_errors.AuthError):
            user = getattr(settings, "neo4j_user", "")
            return (
                f"Neo4j at {neo4j_url} refused the credentials of user {user!r}: check "
                "NEO4J_USER and NEO4J_PASSWORD (or NEO4J_PASSWORD_FILE)"
            )
        if isinstance(e, neo4j_errors.ServiceUnavailable):
            return (
                f"Neo4j at {neo4j_url} is not reachable: start it (`tastegraph services up`) "
                "or set NEO4J_URI"
            )
        if isinstance(e, neo4j_errors.ClientError) and "DatabaseNotFound" in (e.code or ""):
            return f"Neo4j at {neo4j_url} has no database {settings.neo4j_database!r}"
    kafka_errors = sys.modules.get("aiokafka.errors")
    if kafka_errors is not None and isinstance(e, kafka_errors.KafkaConnectionError):
        return (
            f"Kafka at {kafka} is not reachable: start it (`tastegraph services up`) "
            "or set KAFKA_BOOTSTRAP_SERVERS"
        )
    if isinstance(e, ConnectionRefusedError):
        return f"a service refused the connection ({e}): is it running? (`tastegraph services up`)"
    return None


def _closed_pipe() -> int:
    """stdout's reader went away (``tastegraph recommend ... | head``): stop quietly, as Unix
    tools do when SIGPIPE ends them, with 128 + SIGPIPE; stdout is pointed at /dev/null so that
    the interpreter's final flush does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    from config.logs import setup_logging
    from config.settings import Settings

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    settings: Any = None
    try:
        overrides = {"log_level": args.log_level} if args.log_level else {}
        settings = Settings.from_env(**overrides)
        setup_logging(settings.log_level)
        module = importlib.import_module(args._module)
        code = int(module.run(args, settings) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as e:
        sentence = _sentence(e, settings)
        if sentence is None:
            raise
        logging.getLogger("tastegraph").debug("failed", exc_info=True)
        print(f"tastegraph: {sentence}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
