"""The field rules of the event contract: ids, optional texts and the timestamp, one value at a
time (stream/validation.py decodes whole records with them; the decisions are listed there and in
docs/events.md). Pure; every failure raises `InvalidEvent` with a stable reason."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from stream.exceptions import InvalidEvent


class TimeLimits(Protocol):
    """What the timestamp rule reads from the settings (`validation.Limits` includes it)."""

    @property
    def max_clock_skew_s(self) -> float: ...
    @property
    def min_event_ts(self) -> float: ...


def id_field(obj: Mapping[str, Any], name: str, max_len: int) -> str:
    """An id: a non-blank string of at most ``max_len`` characters (a JSON integer becomes one)."""
    value = obj.get(name)
    if type(value) is str and 0 < len(value) <= max_len and not value.isspace():
        return value  # the common case, in one test
    if value is None:
        raise InvalidEvent("missing_field", name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent("bad_type", f"{name} is {json_type(value)}, expected string")
    text = value if isinstance(value, str) else str(value)
    if len(text) > max_len:
        raise InvalidEvent("id_too_long", f"{name} has {len(text)} chars > {max_len}")
    if not text.strip():
        raise InvalidEvent("empty_id", name)
    return text


def text_field(obj: Mapping[str, Any], name: str, max_len: int) -> str | None:
    """An optional text of at most ``max_len`` characters; null or empty is None."""
    value = obj.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidEvent("bad_type", f"{name} is {json_type(value)}, expected string")
    if len(value) > max_len:
        raise InvalidEvent("text_too_long", f"{name} has {len(value)} chars > {max_len}")
    return value


def timestamp_field(obj: Mapping[str, Any], limits: TimeLimits, now: float) -> float:
    """``ts`` in epoch seconds: ISO-8601 or a number, finite, within the limits around ``now``."""
    value = obj.get("ts")
    if value is None:
        raise InvalidEvent("missing_field", "ts")
    if isinstance(value, bool):
        raise InvalidEvent("bad_type", "ts is boolean, expected ISO-8601 string or epoch seconds")
    if isinstance(value, int | float):
        ts = float(value)
    elif isinstance(value, str):
        ts = parse_iso_ts(value)
    else:
        raise InvalidEvent(
            "bad_type", f"ts is {json_type(value)}, expected ISO-8601 string or epoch seconds"
        )
    if not math.isfinite(ts):
        raise InvalidEvent("bad_timestamp", f"ts={clip(str(value))} is not finite")
    if ts < limits.min_event_ts:
        raise InvalidEvent("bad_timestamp", f"ts={clip(str(value))} is before min_event_ts")
    if ts > now + limits.max_clock_skew_s:
        hint = " (milliseconds? ts is in seconds)" if ts > now * 100 else ""
        raise InvalidEvent(
            "bad_timestamp",
            f"ts={clip(str(value))} is more than {limits.max_clock_skew_s:g} s in the future{hint}",
        )
    return ts


def parse_iso_ts(value: str) -> float:
    """ISO-8601 -> epoch seconds; a naive time is UTC. Raises ``InvalidEvent("bad_timestamp")``."""
    if len(value) > 64 or not value[:1].isdigit():
        raise InvalidEvent("bad_timestamp", f"ts={clip(value)} is not ISO-8601")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("bad_timestamp", f"ts={clip(value)} is not ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, ValueError, OSError):
        raise InvalidEvent("bad_timestamp", f"ts={clip(value)} is out of range") from None


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error details."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def clip(text: str, n: int = 80) -> str:
    """``text`` cut to ``n`` characters for an error detail."""
    return text if len(text) <= n else text[:n] + "..."
