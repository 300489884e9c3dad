"""The question a destructive command asks before it acts (or its ``--yes``)."""

from __future__ import annotations

import sys


def confirmed(question: str, yes: bool) -> bool:
    """True with ``--yes``; on a terminal, True when the user answers y; otherwise False (a script
    must say --yes: nothing destructive happens because stdin was not a terminal)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}
