"""File side of record/replay: line kinds, routing, deterministic event ids, the record format, and
the committed test recording."""

from __future__ import annotations

import dataclasses
import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings
from stream.validation import parse_event, parse_item
from tools.recording import (
    EventIds,
    ProducerRecord,
    count_lines,
    iter_lines,
    read_recording,
    record_line,
    records_from_line,
    route,
)

S = Settings()
DATA = Path(__file__).parents[1] / "data"


def line(obj: Any) -> bytes:
    return orjson.dumps(obj)


def convert(obj: Any, settings: Settings = S, **kwargs: Any) -> ProducerRecord | None:
    return records_from_line(line(obj), settings, kwargs.pop("ids", EventIds()), **kwargs)


# --- plain events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("etype", "topic"),
    [
        ("browse", "browses"),
        ("click", "clicks"),
        ("purchase", "purchases"),
        ("add_to_cart", "purchases"),
        ("return", "purchases"),
        ("something_new", "purchases"),
    ],
)
def test_plain_events_are_routed_by_type(etype: str, topic: str) -> None:
    assert route(S, etype) == topic
    record = convert({"event_id": "e", "user_id": "u1", "item_id": "i", "type": etype, "ts": 1})
    assert record is not None and (record.topic, record.key, record.kind) == (topic, b"u1", "event")


def test_routing_uses_the_configured_topic_names() -> None:
    custom = dataclasses.replace(S, topic_browses="b-1", topic_purchases="p-1")
    assert route(custom, "browse") == "b-1"
    assert route(custom, "return") == "p-1"


def test_an_event_with_an_id_is_produced_byte_for_byte() -> None:
    raw = b'{"event_id": "e7", "type": "click", "user_id": 12, "ts": "2026-01-01T00:00:00"}'
    record = records_from_line(raw, S, EventIds())
    assert record is not None
    assert record.value == raw and record.key == b"12" and not record.assigned_id
    assert record.timestamp_ms is None  # the broker stamps plain events


def test_an_event_without_id_gets_a_deterministic_one() -> None:
    event = {"user_id": "u1", "item_id": "i1", "type": "purchase", "ts": "2026-01-01T00:00:00"}
    first = convert(event)
    again = convert(dict(reversed(list(event.items()))))  # key order does not matter
    other = convert(dict(event, item_id="i2"))
    assert first is not None and again is not None and other is not None
    assert first.assigned_id
    value = orjson.loads(first.value or b"")
    assert value["event_id"].startswith("h-") and len(value["event_id"]) == 26
    assert {k: v for k, v in value.items() if k != "event_id"} == event
    assert value["event_id"] == orjson.loads(again.value or b"")["event_id"]
    assert value["event_id"] != orjson.loads(other.value or b"")["event_id"]
    assert parse_event(first.value, S, "purchases", now=1.9e9).event_id == value["event_id"]


def test_an_empty_event_id_counts_as_missing() -> None:
    record = convert({"event_id": "", "user_id": "u", "type": "click", "ts": 1})
    assert record is not None and record.assigned_id


def test_repeated_identical_lines_stay_distinct_events_and_replays_repeat_the_ids() -> None:
    event = {"user_id": "13085", "item_id": "85048", "type": "purchase", "ts": "2009-12-01T07:45"}

    def ids_of_one_replay() -> list[str]:
        ids = EventIds()
        out = []
        for _ in range(3):
            record = convert(event, ids=ids)
            assert record is not None
            out.append(orjson.loads(record.value or b"")["event_id"])
        return out

    first = ids_of_one_replay()
    assert len(set(first)) == 3
    assert ids_of_one_replay() == first


def test_items_go_to_the_items_topic_keyed_by_item_id() -> None:
    raw = line({"item_id": 85048, "title": "Globe", "category": None, "description": None})
    record = records_from_line(raw, S, EventIds())
    assert record == ProducerRecord("items", b"85048", raw, None, "item")


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'"text"', b'{"user_id": "u"}', b'{"topic": "x"}', b"{}"],
)
def test_lines_of_no_known_kind_are_skipped(raw: bytes) -> None:
    assert records_from_line(raw, S, EventIds()) is None


# --- recorded records -----------------------------------------------------------------------------


def test_record_lines_round_trip_text_binary_and_tombstones(tmp_path: Path) -> None:
    cases = [
        ("clicks", 0, 5, b"u1", b'{"event_id": "e1"}', 1_767_225_600_123),
        ("items", 3, 9, b"\xff\xfekey", b"\x00\x01 binary", None),
        ("items", 1, 2, b"gone", None, 17),  # a tombstone
    ]
    path = tmp_path / "rec.jsonl.gz"
    with gzip.open(path, "wb") as f:
        for case in cases:
            f.write(record_line(*case) + b"\n")
    back = list(read_recording(path))
    assert [
        (r["topic"], r["partition"], r["offset"], r["key"], r["value"], r["timestamp"])
        for r in back
    ] == cases
    assert orjson.loads(record_line(*cases[1]))["key_b64"] == "//5rZXk="
    for case, raw in zip(cases, iter_lines(path), strict=True):
        record = records_from_line(raw[1], S, EventIds())
        assert record == ProducerRecord(case[0], case[3], case[4], case[5], "record")


def test_recorded_value_given_as_an_object_is_serialised() -> None:
    raw = line({"topic": "clicks", "key": "u", "value": {"event_id": "e"}, "timestamp": None})
    record = records_from_line(raw, S, EventIds())
    assert record is not None and record.value == b'{"event_id":"e"}'


def test_topic_map_renames_recorded_and_routed_topics() -> None:
    mapping = {"clicks": "t-clicks", "items": "t-items"}
    rec = line({"topic": "clicks", "key": "u", "value": "{}", "timestamp": 5})
    assert records_from_line(rec, S, EventIds(), mapping).topic == "t-clicks"  # type: ignore[union-attr]
    item = convert({"item_id": "i"}, topic_map=mapping)
    assert item is not None and item.topic == "t-items"


@pytest.mark.parametrize(
    "obj",
    [
        {"topic": "", "value": "x"},
        {"topic": 5, "value": "x"},
        {"topic": "t", "value": "x", "timestamp": "yesterday"},
        {"topic": "t", "value_b64": "!!not base64!!"},
        {"topic": "t", "key": None, "value": None},  # the producer cannot send it
    ],
)
def test_malformed_recorded_lines_are_skipped(obj: dict[str, Any]) -> None:
    assert convert(obj) is None


def test_gzip_is_detected_by_content(tmp_path: Path) -> None:
    plain, packed = tmp_path / "a.jsonl", tmp_path / "b.data"
    plain.write_bytes(b'{"a": 1}\n\n  \n{"b": 2}\n')
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert (
        list(iter_lines(packed)) == list(iter_lines(plain)) == [(1, b'{"a": 1}'), (4, b'{"b": 2}')]
    )
    assert count_lines([plain, packed]) == 4


# --- the committed test recording -----------------------------------------------------------------


def test_the_test_recording_matches_its_readme() -> None:
    path = DATA / "recording.jsonl"
    records = [records_from_line(raw, S, EventIds()) for _, raw in iter_lines(path)]
    assert all(r is not None for r in records)
    by_topic = Counter(r.topic for r in records if r)
    assert by_topic == {"browses": 33, "clicks": 16, "purchases": 11, "items": 8}
    events = [
        parse_event(r.value, S, r.topic, now=1.9e9) for r in records if r and r.topic != "items"
    ]
    items = [parse_item(r.value, S, r.topic) for r in records if r and r.topic == "items"]
    assert len({e.event_id for e in events}) == 60
    assert len({i.item_id for i in items}) == 8
    assert {e.item_id for e in events} <= {i.item_id for i in items}
    assert Counter(e.type for e in events) == {
        "browse": 33,
        "click": 16,
        "add_to_cart": 5,
        "purchase": 5,
        "return": 1,
    }
    for r in records:
        assert r is not None and r.value is not None
        key_field = "item_id" if r.topic == "items" else "user_id"
        assert r.key == orjson.loads(r.value)[key_field].encode()
    late = events[-1]
    assert late.event_id == "rec-060" and late.ts < max(
        e.ts
        for e in events
        if e.user_id == late.user_id and e.item_id == late.item_id and e is not late
    )
    edges = {(e.user_id, e.item_id) for e in events}
    assert len(edges) == 19 and len({u for u, _ in edges}) == 5


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)  # fmt: skip
_line_keys = st.sampled_from(
    ["topic", "key", "value", "key_b64", "value_b64", "timestamp", "type", "item_id", "user_id",
     "event_id"]
)  # fmt: skip


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(
    obj=st.dictionaries(_line_keys, _json, max_size=6)
    | st.fixed_dictionaries(
        {"topic": st.text(min_size=1, max_size=5)},
        optional={
            k: _json | st.text(max_size=12) for k in ("key", "value", "key_b64", "value_b64")
        },
    )
    | _json,
    junk=st.binary(max_size=40),
)
def test_fuzz_any_line_becomes_a_record_or_is_skipped(obj: Any, junk: bytes) -> None:
    for raw in (orjson.dumps(obj), junk):
        record = records_from_line(raw, S, EventIds())
        assert record is None or isinstance(record, ProducerRecord)
        if record is not None:
            assert isinstance(record.topic, str) and record.topic
            assert record.key is None or isinstance(record.key, bytes)
            assert record.value is None or isinstance(record.value, bytes)


def test_the_invalid_recording_has_one_record_per_reason() -> None:
    from stream.exceptions import InvalidEvent
    from stream.validation import REASONS

    lines = [orjson.loads(raw) for _, raw in iter_lines(DATA / "invalid.jsonl")]
    seen: Counter[str] = Counter()
    for line in lines:
        record = records_from_line(orjson.dumps(line), S, EventIds())
        assert record is not None and record.kind == "record"
        try:
            parse_event(record.value, S, record.topic, now=1.9e9)
            outcome = "valid"
        except InvalidEvent as e:
            outcome = e.reason
        assert outcome == line["expect"], line
        seen[outcome] += 1
    assert set(seen) == {*REASONS, "valid"} and seen["valid"] == 3
