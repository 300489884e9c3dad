"""The log formatter, the rate limiter and the re-levelled library messages (config/logs.py)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from config.logs import LineFormatter, RateLimiter, Relevel, setup_logging, strip_escapes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(
    msg: str, *args: object, level: int = logging.WARNING, name: str = "x"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_escapes_and_control_characters_are_stripped() -> None:
    text = "\x1b[?25l|\x1b[?25h\x1b[31mred\x1b[0m \x1b]0;title\x07ok\b\r\tend"
    assert strip_escapes(text) == "|red ok\tend"


def test_off_a_terminal_a_record_is_one_line_without_escapes() -> None:
    formatter = LineFormatter(terminal=False, fmt="%(levelname)s %(message)s")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed\x1b[?25h", (), sys.exc_info()
        )
    line = formatter.format(record)
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("ERROR failed\\nTraceback") and line.endswith("ValueError: boom")


def test_on_a_terminal_the_record_is_left_alone() -> None:
    formatter = LineFormatter(terminal=True, fmt="%(message)s")
    assert formatter.format(_record("a\nb \x1b[1mbold\x1b[0m")) == "a\nb \x1b[1mbold\x1b[0m"


def test_the_rate_limiter_lets_one_through_per_interval_and_counts_the_rest() -> None:
    clock = Clock()
    limiter = RateLimiter(interval_s=10.0, clock=clock)
    assert limiter.hit("bad_json") == (True, 0)
    assert [limiter.hit("bad_json") for _ in range(5)] == [(False, 0)] * 5
    assert limiter.hit("missing_field") == (True, 0)  # keys are independent
    assert limiter.pending() == {"bad_json": 5}
    clock.now = 9.9
    assert limiter.hit("bad_json") == (False, 0)
    clock.now = 10.0
    assert limiter.hit("bad_json") == (True, 6)  # the line that gets through reports the count
    assert limiter.pending() == {}
    clock.now = 25.0
    assert limiter.hit("bad_json") == (True, 0)


def test_a_retriable_coordinator_error_at_start_up_is_info_then_error_again() -> None:
    from aiokafka.errors import CoordinatorNotAvailableError, GroupAuthorizationFailedError

    from config.logs import RELEVELLED

    match, level, grace_s = RELEVELLED["aiokafka.consumer.group_coordinator"]
    clock = Clock()
    relevel = Relevel(match, level, grace_s, clock=clock)
    msg = "Group Coordinator Request failed: %s"
    first = _record(msg, CoordinatorNotAvailableError(), level=logging.ERROR)
    relevel.filter(first)
    assert first.levelno == logging.INFO
    fatal = _record(msg, GroupAuthorizationFailedError(), level=logging.ERROR)
    relevel.filter(fatal)
    assert fatal.levelno == logging.ERROR  # not retriable: stays an error
    clock.now = (grace_s or 0) + 1
    late = _record(msg, CoordinatorNotAvailableError(), level=logging.ERROR)
    relevel.filter(late)
    assert late.levelno == logging.ERROR  # still failing long after start-up: a real problem


@pytest.fixture
def clean_root() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    stream = io.StringIO()
    try:
        yield stream
    finally:
        root.handlers, root.level = saved
        for name in ("aiokafka.consumer.group_coordinator", "aiokafka", "mode.timers"):
            logging.getLogger(name).filters = []


def test_setup_logging_hides_start_up_noise_and_keeps_real_warnings(
    clean_root: io.StringIO,
) -> None:
    from aiokafka.errors import CoordinatorNotAvailableError

    setup_logging("INFO", stream=clean_root)
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: %s", CoordinatorNotAvailableError()
    )
    logging.getLogger("mode.timers").warning(
        "Timer %s is overlapping (interval=%r runtime=%r)", "refresh_derived", 1.0, 1.4
    )
    logging.getLogger("aiokafka").error('Unable connect to "%s:%s": %s', "127.0.0.1", 1, "refused")
    logging.getLogger("tastegraph.worker").warning("invalid record %s", "reason=bad_json\x1b[0m")
    lines = clean_root.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("WARNING tastegraph.worker invalid record reason=bad_json")
