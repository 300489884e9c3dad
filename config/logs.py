"""Structured one-line logs: key=value pairs after the message, level from the settings."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_tastegraph", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._tastegraph = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "neo4j", "faust", "mode", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def kv(**fields: object) -> str:
    """Formats fields as `key=value` pairs for a log line."""
    return " ".join(f"{k}={v}" for k, v in fields.items())
