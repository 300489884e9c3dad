"""`tastegraph graph reset | rotate-password`: start the graph over; change the Neo4j password.

Both act on the configured Neo4j (NEO4J_URI or the local services) and ask first (or need --yes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.confirm import confirmed
from config.exceptions import ConfigError
from config.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    reset = sub.add_parser(
        "reset",
        help="delete every node and relationship of the database (indexes stay); stop the "
        "workers first, then move their offsets (`tastegraph offsets reset`)",
    )
    reset.add_argument("--yes", action="store_true", help="do not ask")
    rotate = sub.add_parser(
        "rotate-password",
        help="change the Neo4j user's password to the one in FILE (never on the command line)",
    )
    rotate.add_argument(
        "--new-password-file",
        type=Path,
        required=True,
        metavar="FILE",
        help="a file holding the new password (8+ characters); the local services' password "
        "file is updated too",
    )
    rotate.add_argument("--yes", action="store_true", help="do not ask")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream.runtime import open_store

    driver, store = open_store(settings)
    try:
        driver.verify_connectivity()
        where = f"database {settings.neo4j_database!r} at {settings.neo4j_url}"
        if args.action == "reset":
            if store.owner() == "empty":
                print(f"{where} is empty")
                return 0
            if not confirmed(f"delete the whole graph in {where}?", args.yes):
                print("tastegraph: nothing deleted (pass --yes to delete)", file=sys.stderr)
                return 1
            store.wipe()
            print(f"{where} emptied")
            return 0
        return _rotate(args, settings, driver)
    finally:
        driver.close()


def _rotate(args: argparse.Namespace, settings: Settings, driver: object) -> int:
    from graph.store import change_own_password

    try:
        new = args.new_password_file.read_text().strip()
    except OSError as e:
        raise ConfigError(f"--new-password-file: cannot read {args.new_password_file}: {e}") from e
    if len(new) < 8:
        raise ConfigError("--new-password-file: the password must have 8 or more characters")
    local = settings.home / "neo4j-password"
    external = "NEO4J_PASSWORD" in os.environ or "NEO4J_PASSWORD_FILE" in os.environ
    uses_local = settings.use_local_services and not external and local.exists()
    question = f"change the password of Neo4j user {settings.neo4j_user!r} at {settings.neo4j_url}?"
    if not confirmed(question, args.yes):
        print("tastegraph: password unchanged (pass --yes to change it)", file=sys.stderr)
        return 1
    change_own_password(driver, settings.neo4j_password.get_secret_value(), new)
    if uses_local:
        tmp = local.with_suffix(".new")
        tmp.write_text(new + "\n")
        tmp.chmod(0o600)
        tmp.replace(local)
        print(f"password changed; {local} updated: restart the workers")
    else:
        print(
            "password changed: put the new one where NEO4J_PASSWORD(_FILE) comes from, "
            "then restart the workers"
        )
    return 0
