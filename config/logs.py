"""Structured one-line logs: key=value pairs after the message, level from the settings.

Where stderr is not a terminal (a container, a file, journald) every record is exactly one line
with no terminal control sequences: a log shipper sees one event per line. Two libraries log at a
level that misleads there, so their known messages are re-levelled (see :class:`Relevel`).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# CSI (colours, cursor show/hide such as ESC[?25h), OSC (titles, links) and other ESC sequences,
# then the remaining C0 controls except tab and newline (backspace, carriage return, bell)
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]"
)


def strip_escapes(text: str) -> str:
    """``text`` without terminal control sequences and control characters (tabs stay)."""
    return _ESCAPES.sub("", text)


class LineFormatter(logging.Formatter):
    """The project's format; for a stream that is not a terminal (``terminal=False``) escapes are
    stripped and a multi-line record (a traceback) is folded into one line, its line breaks
    written as ``\\n``."""

    def __init__(self, terminal: bool, fmt: str = _FORMAT) -> None:
        super().__init__(fmt)
        self.terminal = terminal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.terminal:
            return text
        return strip_escapes(text.replace("\r\n", "\n").rstrip("\n").replace("\n", "\\n"))


@dataclass
class RateLimiter:
    """Lets the first record of a key through, then at most one per ``interval_s``, counting
    those held back: ``hit(key)`` returns ``(emit, suppressed)``, where ``suppressed`` is how many
    hits of the key were held back since the last one let through (report it with that line).

    A pure state machine with an injected clock; one per kind of repeated message."""

    interval_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def hit(self, key: str) -> tuple[bool, int]:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._held.pop(key, 0)

    def pending(self) -> dict[str, int]:
        """Hits held back and not yet reported, per key."""
        return dict(self._held)


@dataclass
class Relevel(logging.Filter):
    """Gives a library's known message the level it deserves here.

    ``match(record)`` selects the records; they get ``level`` while ``grace_s`` has not passed
    since the first one (``grace_s=None``: always), after that their own level again (a start-up
    condition that does not go away is a real problem)."""

    match: Callable[[logging.LogRecord], bool]
    level: int
    grace_s: float | None = None
    clock: Callable[[], float] = time.monotonic
    _first: float | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.match(record):
            return True
        now = self.clock()
        if self._first is None:
            self._first = now
        if self.grace_s is None or now - self._first <= self.grace_s:
            record.levelno = self.level
            record.levelname = logging.getLevelName(self.level)
        return logging.getLogger(record.name).isEnabledFor(record.levelno)


def _coordinator_not_available(record: logging.LogRecord) -> bool:
    """aiokafka's "Group Coordinator Request failed" for a retriable error: a fresh broker has
    no group coordinator until it has created __consumer_offsets; aiokafka retries."""
    if not str(record.msg).startswith("Group Coordinator Request failed"):
        return False
    error = record.args[0] if isinstance(record.args, tuple) and record.args else None
    return bool(getattr(error, "retriable", False))


def _bootstrap_unreachable(record: logging.LogRecord) -> bool:
    """aiokafka's "Unable connect to <host:port>" while bootstrapping: a command that cannot reach
    Kafka says so in one sentence itself (cli/main.py); a worker whose broker stays away logs it
    at ERROR again once the grace period is over."""
    return str(record.msg).startswith("Unable connect to")


def _timer_overlapping(record: logging.LogRecord) -> bool:
    """mode's "Timer X is overlapping": mode runs a timer's ticks one after the other, so this
    only says a tick took longer than its interval. The worker's timers do bounded work per tick
    (a refresh chunk, a model poll) and a slow tick just delays the next: nothing runs twice."""
    return "is overlapping" in str(record.msg)


# logger -> (selector, level while it applies, grace period or None for always)
RELEVELLED: dict[str, tuple[Callable[[logging.LogRecord], bool], int, float | None]] = {
    "aiokafka.consumer.group_coordinator": (_coordinator_not_available, logging.INFO, 120.0),
    "aiokafka": (_bootstrap_unreachable, logging.INFO, 30.0),
    "mode.timers": (_timer_overlapping, logging.DEBUG, None),
}


def setup_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    root = logging.getLogger()
    stream = sys.stderr if stream is None else stream
    if not any(getattr(h, "_tastegraph", False) for h in root.handlers):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(LineFormatter(terminal=_is_terminal(stream)))
        handler._tastegraph = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "neo4j", "faust", "mode", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for name, (match, new_level, grace_s) in RELEVELLED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, Relevel) for f in logger.filters):
            logger.addFilter(Relevel(match, new_level, grace_s))


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def kv(**fields: object) -> str:
    """Formats fields as `key=value` pairs for a log line."""
    return " ".join(f"{k}={v}" for k, v in fields.items())
