"""Times on the command line: epoch seconds or ISO-8601 (naive means UTC)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def parse_time(raw: str) -> float:
    """Epoch seconds or ISO-8601 (naive means UTC)."""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{raw!r} is neither epoch seconds nor ISO-8601") from e
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()
