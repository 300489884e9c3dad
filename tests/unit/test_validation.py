"""The event contract: every reason, the decisions on ids and timestamps, dead letters, and a fuzz
test that holds validation to its promise (parse or InvalidEvent, nothing else)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from graph.model import Event, ItemRecord
from stream.exceptions import InvalidEvent
from stream.validation import (
    MAX_DEAD_LETTER_BYTES,
    REASONS,
    Invalid,
    classify,
    classify_items,
    dead_letter_value,
    parse_event,
    parse_item,
    read_dead_letter,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
S = Settings()


def good(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "item_id": "i1",
        "type": "click",
        "ts": "2025-12-31T12:00:00Z",
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def parse(obj: Any, topic: str = "clicks", limits: Settings = S) -> Event:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return parse_event(raw, limits, topic, 3, 42, now=NOW)


def reason_of(obj: Any, topic: str = "clicks", limits: Settings = S) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse(obj, topic, limits)
    assert info.value.reason in REASONS
    return info.value.reason


# --- valid events ---------------------------------------------------------------------------------


def test_a_valid_event_becomes_an_event_with_its_source() -> None:
    event = parse(good(title="Cast iron pan", category="kitchen", text="pan", extra=[1, 2]))
    assert event == Event(
        "e1",
        "u1",
        "i1",
        "click",
        NOW - 43200,
        title="Cast iron pan",
        category="kitchen",
        text="pan",
        topic="clicks",
        partition=3,
        offset=42,
    )


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2025-12-31T12:00:00Z", NOW - 43200),
        ("2025-12-31T12:00:00", NOW - 43200),  # naive means UTC
        ("2025-12-31T14:00:00+02:00", NOW - 43200),
        ("2025-12-31 12:00:00.500", NOW - 43199.5),
        (1767182400, NOW - 43200),
        (1767182400.25, NOW - 43199.75),
    ],
)
def test_timestamps_iso_with_or_without_zone_or_epoch_seconds(ts: Any, expected: float) -> None:
    assert parse(good(ts=ts)).ts == pytest.approx(expected)


def test_integer_ids_become_strings() -> None:
    event = parse(good(event_id=7, user_id=12345, item_id=0))
    assert (event.event_id, event.user_id, event.item_id) == ("7", "12345", "0")


@pytest.mark.parametrize(
    ("etype", "topic"),
    [
        ("click", "clicks"),
        ("browse", "browses"),
        ("purchase", "purchases"),
        ("add_to_cart", "clicks"),
        ("add_to_cart", "purchases"),
        ("return", "browses"),
        ("return", "purchases"),
    ],
)
def test_core_types_on_their_topic_extra_types_on_any(etype: str, topic: str) -> None:
    assert parse(good(type=etype), topic).type == etype


def test_no_topic_skips_the_topic_check() -> None:
    assert parse(good(type="purchase"), topic="").type == "purchase"


def test_topic_names_and_extra_types_come_from_the_settings() -> None:
    custom = dataclasses.replace(
        S,
        topic_clicks="c-1",
        extra_event_types=("wishlist",),
        weights={**S.weights, "wishlist": 1.0},  # every event type needs its weight
        max_id_len=4,
    )
    assert parse(good(type="click"), "c-1", custom).topic == "c-1"
    assert parse(good(type="wishlist"), "c-1", custom).type == "wishlist"
    assert reason_of(good(type="click"), "clicks", custom) == "wrong_topic"
    assert reason_of(good(type="return"), "c-1", custom) == "unknown_event_type"
    assert reason_of(good(user_id="u2345"), "c-1", custom) == "id_too_long"


def test_empty_optional_text_counts_as_absent() -> None:
    event = parse(good(title="", description=None))
    assert event.title is None and event.description is None


# --- every reason ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b'{"event_id": ', "not_json"),
        (b"\xff\xfe{}", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"click"', "not_object"),
        (b"null", "not_object"),
    ],
)
def test_bytes_that_are_no_event(raw: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, S, "clicks", now=NOW)
    assert info.value.reason == reason


def test_too_large_is_checked_before_parsing() -> None:
    small = dataclasses.replace(S, max_event_bytes=50)
    assert reason_of(b"{" + b" " * 60, limits=small) == "too_large"


@pytest.mark.parametrize("field", ["event_id", "user_id", "item_id", "type", "ts"])
def test_missing_or_null_required_field(field: str) -> None:
    assert reason_of(good(**{field: ...})) == "missing_field"
    assert reason_of(good(**{field: None})) == "missing_field"


@pytest.mark.parametrize(
    "changes",
    [
        {"user_id": 1.5},
        {"item_id": True},
        {"event_id": ["e1"]},
        {"user_id": {"id": 1}},
        {"type": 3},
        {"ts": True},
        {"ts": ["2025-12-31"]},
        {"title": 5},
        {"text": {"q": "pan"}},
        {"category": ["a"]},
    ],
)
def test_mistyped_fields(changes: dict[str, Any]) -> None:
    assert reason_of(good(**changes)) == "bad_type"


@pytest.mark.parametrize("value", ["", "   "])
def test_empty_ids(value: str) -> None:
    assert reason_of(good(user_id=value)) == "empty_id"


def test_size_limits_on_ids_and_texts() -> None:
    assert parse(good(item_id="x" * S.max_id_len)).item_id == "x" * S.max_id_len
    assert reason_of(good(item_id="x" * (S.max_id_len + 1))) == "id_too_long"
    assert parse(good(text="y" * S.max_text_len)).text == "y" * S.max_text_len
    assert reason_of(good(text="y" * (S.max_text_len + 1))) == "text_too_long"
    assert reason_of(good(description="é" * (S.max_text_len + 1))) == "text_too_long"


def test_unknown_event_type() -> None:
    assert reason_of(good(type="wishlist")) == "unknown_event_type"
    assert reason_of(good(type="Click")) == "unknown_event_type"


@pytest.mark.parametrize(("etype", "topic"), [("click", "browses"), ("purchase", "clicks")])
def test_core_type_on_another_event_topic(etype: str, topic: str) -> None:
    assert reason_of(good(type=etype), topic) == "wrong_topic"


def test_event_on_a_topic_that_is_not_an_event_topic() -> None:
    assert reason_of(good(type="add_to_cart"), "items") == "wrong_topic"


@pytest.mark.parametrize(
    "ts",
    [
        "yesterday",
        "1767182400",  # epoch seconds must be a JSON number
        "2025-13-01T00:00:00",
        "",
        "1999-12-31T23:59:59Z",  # before min_event_ts
        NOW + S.max_clock_skew_s + 1,  # too far in the future
        (NOW + 3600) * 1000,  # milliseconds
        -5,
        1e300,
    ],
)
def test_absurd_timestamps(ts: Any) -> None:
    assert reason_of(good(ts=ts)) == "bad_timestamp"


def test_clock_skew_is_measured_from_now() -> None:
    assert parse(good(ts=NOW + S.max_clock_skew_s - 1)).ts == NOW + S.max_clock_skew_s - 1


# --- items ----------------------------------------------------------------------------------------


def test_parse_item() -> None:
    raw = orjson.dumps({"item_id": 85048, "title": "Pan", "category": None, "price": 3.2})
    assert parse_item(raw, S, "items", 0, 9) == ItemRecord(
        "85048", "Pan", None, None, "items", 0, 9
    )


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"title": "Pan"}, "missing_field"),
        ({"item_id": "i", "title": 3}, "bad_type"),
        ({"item_id": "i" * 200}, "id_too_long"),
        ({"item_id": "i", "description": "d" * 5000}, "text_too_long"),
        ([1], "not_object"),
    ],
)
def test_invalid_items(obj: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_item(orjson.dumps(obj), S)
    assert info.value.reason == reason


def test_an_item_tombstone_is_empty() -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_item(None, S, "items")
    assert info.value.reason == "empty"


# --- batches and dead letters ---------------------------------------------------------------------


def test_classify_keeps_the_valid_events_of_a_batch() -> None:
    batch = [
        (orjson.dumps(good(event_id="a")), "clicks", 0, 10),
        (b"not json", "clicks", 0, 11),
        (orjson.dumps(good(event_id="b", type="browse")), "clicks", 1, 5),
        (orjson.dumps(good(event_id="c", type="browse")), "browses", 2, 7),
    ]
    valid, invalid = classify(batch, S, now=NOW)
    assert [(e.event_id, e.offset) for e in valid] == [("a", 10), ("c", 7)]
    assert [(i.reason, i.topic, i.partition, i.offset) for i in invalid] == [
        ("not_json", "clicks", 0, 11),
        ("wrong_topic", "clicks", 1, 5),
    ]
    assert invalid[0].raw == b"not json"
    assert invalid[1].raw == batch[2][0]


def test_classify_items() -> None:
    valid, invalid = classify_items(
        [(b'{"item_id": "a"}', "items", 0, 0), (None, "items", 0, 1)], S
    )
    assert [v.item_id for v in valid] == ["a"]
    assert [(i.reason, i.offset) for i in invalid] == [("empty", 1)]


def test_dead_letter_keeps_utf8_bytes_as_text() -> None:
    bad = Invalid(b'{"type": "zap"}', "unknown_event_type", "zap", "clicks", 2, 17)
    value = dead_letter_value(bad, now=NOW + 0.5, source_timestamp_ms=1234, key=b"u1")
    record = orjson.loads(value)
    assert record == {
        "reason": "unknown_event_type",
        "detail": "zap",
        "topic": "clicks",
        "partition": 2,
        "offset": 17,
        "timestamp": "2026-01-01T00:00:00.500Z",
        "source_timestamp": 1234,
        "key": "u1",
        "value": '{"type": "zap"}',
    }
    assert read_dead_letter(value)[0] == bad.raw


@pytest.mark.parametrize("size", [256 * 1024 + 1, 1_000_110, 5 * 1024 * 1024])
@pytest.mark.parametrize("text", [True, False])
def test_an_oversize_value_is_cut_with_its_size_and_hash(size: int, text: bool) -> None:
    """Up to the largest message a broker accepts (5 MB in the tests): the dead letter stays
    bounded and says what was cut."""
    raw = ("\u20ac" * size).encode()[:size] if text else bytes(range(256)) * (size // 256 + 1)
    raw = raw[:size]
    value = dead_letter_value(
        Invalid(raw, "too_large", "x" * 10_000, "clicks", 0, 1), now=NOW, key=b"k" * size
    )
    assert len(value) < 3 * MAX_DEAD_LETTER_BYTES + 4096
    record = orjson.loads(value)
    assert record["value_truncated"] is True and record["value_size"] == size
    assert record["value_sha256"] == hashlib.sha256(raw).hexdigest()
    assert record["key_truncated"] is True and record["key_size"] == size
    assert len(record["detail"]) == 2000
    kept = read_dead_letter(value)[0]
    assert kept is not None and raw.startswith(kept) and len(kept) > MAX_DEAD_LETTER_BYTES - 4


@pytest.mark.parametrize("raw", [b"\xff\x00binary", None, b""])
def test_dead_letter_keeps_other_bytes_exactly(raw: bytes | None) -> None:
    value = dead_letter_value(Invalid(raw, "not_json", "", "clicks", 0, 1), now=NOW)
    record = orjson.loads(value)
    if raw == b"\xff\x00binary":
        assert record["value_b64"] == base64.b64encode(raw).decode()
        assert "value" not in record
    assert read_dead_letter(value)[0] == raw


# --- fuzzing --------------------------------------------------------------------------------------

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
_json = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_field_value = st.one_of(
    _json,
    st.sampled_from(["click", "browse", "purchase", "add_to_cart", "return", "Click", ""]),
    st.sampled_from(["2025-12-31T12:00:00Z", "2025-12-31T12:00:00", "2025-02-30", "x" * 200]),
    st.floats(),  # NaN and Infinity are not JSON
    st.integers(min_value=0, max_value=2_000_000_000_000),
)
_valid_event = st.builds(
    good,
    event_id=st.text(min_size=1, max_size=30) | st.integers(0, 2**63 - 1),
    user_id=st.text(min_size=1, max_size=30),
    item_id=st.text(min_size=1, max_size=30),
    type=st.sampled_from(["click", "browse", "purchase", "add_to_cart", "return"]),
    ts=st.floats(min_value=S.min_event_ts, max_value=NOW)
    | st.sampled_from(["2025-12-31T12:00:00Z", "2024-02-29T23:59:59.999+05:30"]),
    title=st.none() | st.text(max_size=50),
    text=st.none() | st.text(max_size=50),
)


def _dump(obj: Any) -> bytes:
    """Any JSON-ish value to bytes: big integers and NaN/Infinity (not JSON) included."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    event = draw(_valid_event)
    how = draw(st.sampled_from(["drop", "retype", "add", "truncate", "flip", "keep", "wrap"]))
    if how == "drop":
        event.pop(draw(st.sampled_from(sorted(event))), None)
    elif how == "retype":
        event[draw(st.sampled_from(sorted(event)))] = draw(_field_value)
    elif how == "add":
        event[draw(st.text(max_size=10))] = draw(_json)
    elif how == "wrap":
        return _dump([event])
    raw = _dump(event)
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif how == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1 :]
    return raw


_message = st.one_of(
    _mutated(),
    st.binary(max_size=300),
    _json.map(_dump),
    st.dictionaries(st.sampled_from(sorted(good())), _field_value).map(_dump),
)
_topic = st.sampled_from(["clicks", "browses", "purchases", "items", ""])

FUZZ_EXAMPLES = 10_500
outcomes: dict[str, int] = {}


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(raw=_message, topic=_topic)
def test_fuzz_every_message_parses_or_is_invalid(raw: bytes, topic: str) -> None:
    try:
        event = parse_event(raw, S, topic, 0, 0, now=NOW)
    except InvalidEvent as e:
        assert e.reason in REASONS
        outcomes[e.reason] = outcomes.get(e.reason, 0) + 1
        dead = dead_letter_value(Invalid(raw, e.reason, e.detail, topic, 0, 0), now=NOW)
        assert read_dead_letter(dead)[0] == raw
    else:
        assert isinstance(event.ts, float) and S.min_event_ts <= event.ts <= NOW + 86400
        assert all(isinstance(x, str) and x.strip() for x in (event.user_id, event.item_id))
        outcomes["valid"] = outcomes.get("valid", 0) + 1
    with contextlib.suppress(InvalidEvent):
        parse_item(raw, S, "items")


def test_fuzz_reached_both_outcomes_and_many_reasons() -> None:
    """Runs after the fuzz test (file order): it must have tried every kind of failure."""
    if sum(outcomes.values()) < FUZZ_EXAMPLES:
        pytest.skip("fuzz test not run in this session")
    assert outcomes.get("valid", 0) > 100
    assert set(outcomes) >= {"valid", "not_json", "not_object", "missing_field", "bad_type"}
    print("fuzz outcomes:", dict(sorted(outcomes.items())))
    assert len(outcomes) >= 9, outcomes
