"""The event contract, enforced: raw Kafka bytes in, a validated `Event` (or `ItemRecord`) out.

Pure: no Kafka, no clock reads unless ``now`` is left out, no logging. Every failure raises
`InvalidEvent` with a short stable ``reason`` (a metrics label) and a human ``detail``; any other
exception escaping from here is a bug (a hypothesis fuzz test holds us to it).

Reasons: ``empty``, ``too_large``, ``not_json``, ``not_object``, ``missing_field``, ``bad_type``,
``empty_id``, ``id_too_long``, ``text_too_long``, ``unknown_event_type``, ``wrong_topic``,
``bad_timestamp``.

Decisions (documented in docs/events.md):
- ids (``event_id``, ``user_id``, ``item_id``) are strings; a JSON integer is accepted and
  converted with ``str()`` (``17`` -> ``"17"``). Floats and booleans are ``bad_type``; empty or
  whitespace-only ids are ``empty_id``.
- ``ts`` is an ISO-8601 string (``2026-01-05T12:00:00Z``, ``...+02:00``, or naive = UTC) or epoch
  seconds as a JSON number. Numeric strings, NaN/inf, values before ``min_event_ts`` or more than
  ``max_clock_skew_s`` after ``now`` are ``bad_timestamp``.
- Optional text fields (``title``, ``category``, ``description``, ``text``) are strings or null;
  an empty string counts as absent. Lengths are counted in characters.
- Fields beyond the contract (``quantity``, ``price`` ...) are ignored.

The rules of single fields (ids, texts, the timestamp) are in stream/fields.py; this module decodes
whole records with them, checks the type-to-topic rule, and writes and reads dead-letter records.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import orjson

from graph.model import Event, ItemRecord
from stream.exceptions import InvalidEvent
from stream.fields import clip, id_field, json_type, text_field, timestamp_field

REASONS: tuple[str, ...] = (
    "empty",
    "too_large",
    "not_json",
    "not_object",
    "missing_field",
    "bad_type",
    "empty_id",
    "id_too_long",
    "text_too_long",
    "unknown_event_type",
    "wrong_topic",
    "bad_timestamp",
)

# the core types and the topic each must arrive on (by Settings attribute)
_TYPE_TOPIC_ATTR = {
    "click": "topic_clicks",
    "browse": "topic_browses",
    "purchase": "topic_purchases",
}


class Limits(Protocol):
    """What validation reads from the settings; `config.settings.Settings` satisfies it."""

    @property
    def topic_clicks(self) -> str: ...
    @property
    def topic_browses(self) -> str: ...
    @property
    def topic_purchases(self) -> str: ...
    @property
    def extra_event_types(self) -> tuple[str, ...]: ...
    @property
    def max_id_len(self) -> int: ...
    @property
    def max_text_len(self) -> int: ...
    @property
    def max_event_bytes(self) -> int: ...
    @property
    def max_clock_skew_s(self) -> float: ...
    @property
    def min_event_ts(self) -> float: ...


class Invalid(NamedTuple):
    """A message that failed validation, with where it came from (for the dead-letter topic)."""

    raw: bytes | None
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int


# --- parsing --------------------------------------------------------------------------------------


def decode_json(raw: bytes | None, limits: Limits) -> dict[str, Any]:
    """Bytes -> JSON object, enforcing the size limit first (cheap checks before parsing)."""
    if raw is None or len(raw) == 0:
        raise InvalidEvent("empty", "no value (tombstone or empty message)")
    if len(raw) > limits.max_event_bytes:
        raise InvalidEvent(
            "too_large", f"{len(raw)} bytes > max_event_bytes={limits.max_event_bytes}"
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidEvent("not_json", str(e)[:200]) from None
    if not isinstance(obj, dict):
        raise InvalidEvent("not_object", f"top-level JSON is {type(obj).__name__}, not an object")
    return obj


def parse_event(
    raw: bytes | None,
    limits: Limits,
    topic: str = "",
    partition: int = -1,
    offset: int = -1,
    *,
    now: float | None = None,
) -> Event:
    """Validate one Kafka message value from an event topic.

    ``topic=""`` skips the type/topic check (events read from a file). ``now`` is the reference for
    the clock-skew limit (default: the current time).
    """
    return event_from_mapping(decode_json(raw, limits), limits, topic, partition, offset, now=now)


def event_from_mapping(
    obj: Mapping[str, Any],
    limits: Limits,
    topic: str = "",
    partition: int = -1,
    offset: int = -1,
    *,
    now: float | None = None,
) -> Event:
    """Validate an already decoded event (a line of an events file, say)."""
    max_id = limits.max_id_len
    event_id = id_field(obj, "event_id", max_id)
    user_id = id_field(obj, "user_id", max_id)
    item_id = id_field(obj, "item_id", max_id)
    etype = obj.get("type")
    if etype is None:
        raise InvalidEvent("missing_field", "type")
    if not isinstance(etype, str):
        raise InvalidEvent("bad_type", f"type is {json_type(etype)}, expected string")
    if etype not in _TYPE_TOPIC_ATTR and etype not in limits.extra_event_types:
        raise InvalidEvent("unknown_event_type", clip(etype))
    if topic:
        _check_topic(etype, topic, limits)
    ts = timestamp_field(obj, limits, time.time() if now is None else now)
    max_text = limits.max_text_len
    return Event(
        event_id,
        user_id,
        item_id,
        etype,
        ts,
        title=text_field(obj, "title", max_text),
        category=text_field(obj, "category", max_text),
        description=text_field(obj, "description", max_text),
        text=text_field(obj, "text", max_text),
        topic=topic,
        partition=partition,
        offset=offset,
    )


def parse_item(
    raw: bytes | None,
    limits: Limits,
    topic: str = "",
    partition: int = -1,
    offset: int = -1,
) -> ItemRecord:
    """Validate one catalogue record ``{item_id, title, category, description}``.

    A tombstone (``None`` value) raises ``InvalidEvent("empty")``; the worker may skip those.
    """
    return item_from_mapping(decode_json(raw, limits), limits, topic, partition, offset)


def item_from_mapping(
    obj: Mapping[str, Any],
    limits: Limits,
    topic: str = "",
    partition: int = -1,
    offset: int = -1,
) -> ItemRecord:
    item_id = id_field(obj, "item_id", limits.max_id_len)
    title, category, description = (
        text_field(obj, name, limits.max_text_len) for name in ("title", "category", "description")
    )
    return ItemRecord(item_id, title, category, description, topic, partition, offset)


def classify(
    messages: Iterable[tuple[bytes | None, str, int, int]],
    limits: Limits,
    *,
    now: float | None = None,
) -> tuple[list[Event], list[Invalid]]:
    """Split a batch of ``(raw, topic, partition, offset)`` into valid events and `Invalid`s.

    Order is kept within each list; one bad message never affects the others.
    """
    now = time.time() if now is None else now
    valid: list[Event] = []
    invalid: list[Invalid] = []
    for raw, topic, partition, offset in messages:
        try:
            valid.append(parse_event(raw, limits, topic, partition, offset, now=now))
        except InvalidEvent as e:
            invalid.append(Invalid(raw, e.reason, e.detail, topic, partition, offset))
    return valid, invalid


def classify_items(
    messages: Iterable[tuple[bytes | None, str, int, int]], limits: Limits
) -> tuple[list[ItemRecord], list[Invalid]]:
    """`classify` for the items topic."""
    valid: list[ItemRecord] = []
    invalid: list[Invalid] = []
    for raw, topic, partition, offset in messages:
        try:
            valid.append(parse_item(raw, limits, topic, partition, offset))
        except InvalidEvent as e:
            invalid.append(Invalid(raw, e.reason, e.detail, topic, partition, offset))
    return valid, invalid


# --- dead letters ---------------------------------------------------------------------------------


# A dead letter never grows past what any producer and broker accept: the original value (and key)
# is kept up to this many bytes; a longer one is cut, with its size and sha256 (the record is <3x
# this at most, base64 included). The detail is cut to MAX_DETAIL_CHARS.
MAX_DEAD_LETTER_BYTES = 256 * 1024
MAX_DETAIL_CHARS = 2000


def dead_letter_value(
    invalid: Invalid,
    *,
    now: float | None = None,
    source_timestamp_ms: int | None = None,
    key: bytes | None = None,
    max_bytes: int = MAX_DEAD_LETTER_BYTES,
) -> bytes:
    """The value of the dead-letter record for ``invalid`` (JSON, UTF-8), of bounded size.

    ``{"reason", "detail", "topic", "partition", "offset", "timestamp", "source_timestamp",
    "key" | "key_b64", "value" | "value_b64"}``: the original bytes as text when they are valid
    UTF-8, else base64 in ``value_b64`` (``value`` is null for a missing value; the same for the
    key). ``timestamp`` is when it was dead-lettered (ISO-8601, UTC, milliseconds);
    ``source_timestamp`` the original record's timestamp in epoch milliseconds, or null. A value
    (or key) longer than ``max_bytes`` is kept to its first ``max_bytes`` bytes, and the record
    says so: ``value_truncated: true``, ``value_size`` (bytes) and ``value_sha256`` (hex, of the
    whole value); likewise ``key_truncated``, ``key_size``, ``key_sha256``.
    """
    when = time.time() if now is None else now
    record: dict[str, Any] = {
        "reason": invalid.reason,
        "detail": invalid.detail[:MAX_DETAIL_CHARS],
        "topic": invalid.topic,
        "partition": invalid.partition,
        "offset": invalid.offset,
        "timestamp": datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")[:-6]
        + "Z",
        "source_timestamp": source_timestamp_ms,
    }
    record.update(bounded_bytes("key", key, max_bytes))
    record.update(bounded_bytes("value", invalid.raw, max_bytes))
    return orjson.dumps(record)


def bounded_bytes(name: str, data: bytes | None, max_bytes: int) -> dict[str, Any]:
    """`encode_bytes` of at most ``max_bytes`` of ``data``, with the whole one's size and sha256
    when it was cut (UTF-8 text is cut at a character boundary)."""
    if data is None or len(data) <= max_bytes:
        return encode_bytes(name, data)
    out: dict[str, Any] = {
        f"{name}_truncated": True,
        f"{name}_size": len(data),
        f"{name}_sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        out[name + "_b64"] = base64.b64encode(data[:max_bytes]).decode("ascii")
    else:
        out[name] = data[:max_bytes].decode("utf-8", "ignore")
    return out


def read_dead_letter(value: bytes) -> tuple[bytes | None, dict[str, Any]]:
    """Inverse of `dead_letter_value`: ``(original bytes, the whole record)``; the first bytes
    only when the record says ``value_truncated``."""
    record = orjson.loads(value)
    return decode_bytes("value", record), record


def encode_bytes(name: str, data: bytes | None) -> dict[str, Any]:
    """``{name: text}`` when ``data`` is UTF-8 (or None), else ``{name + "_b64": base64}``."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {name + "_b64": base64.b64encode(data).decode("ascii")}


def decode_bytes(name: str, record: Mapping[str, Any]) -> bytes | None:
    """Inverse of `encode_bytes`. A JSON object/array under ``name`` is re-serialised compactly.

    Raises ``ValueError`` when ``<name>_b64`` is not valid base64.
    """
    b64 = record.get(name + "_b64")
    if b64 is not None:
        if not isinstance(b64, str):
            raise ValueError(f"{name}_b64 must be a base64 string")
        return base64.b64decode(b64, validate=True)
    value = record.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)


# --- the type-to-topic rule -----------------------------------------------------------------------


def event_topic(limits: Limits, event_type: object) -> str | None:
    """The topic events of a core type (click, browse, purchase) belong on; None for others.

    The one routing rule: validation checks it, producers (`tools.recording.route`) follow it."""
    attr = _TYPE_TOPIC_ATTR.get(event_type) if isinstance(event_type, str) else None
    return getattr(limits, attr) if attr is not None else None


def _check_topic(etype: str, topic: str, limits: Limits) -> None:
    event_topics = (limits.topic_clicks, limits.topic_browses, limits.topic_purchases)
    if topic not in event_topics:
        raise InvalidEvent("wrong_topic", f"{clip(topic)} is not an event topic")
    expected = event_topic(limits, etype)
    if expected is not None and expected != topic:
        raise InvalidEvent("wrong_topic", f"{etype} events belong on {expected}, not {clip(topic)}")
