"""Writes tests/data/recording.jsonl, the hand-made recorded-topic file (see README.md here).

Run from the repository root: `python tests/data/make_recording.py`. The events are listed below in
the order they arrive; edit them here, not in the JSON file.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka.partitioner import murmur2

PARTITIONS = 4
DAY0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday

ITEMS = [
    ("skillet", "Nordvik cast iron skillet 26 cm", "kitchen", "Pre-seasoned cast iron pan."),
    ("knife", "Chefline stainless steel chef's knife", "kitchen", "20 cm forged blade."),
    ("kettle", "Olla glass kettle 1.7 l", "kitchen", "Borosilicate glass, 2200 W."),
    ("tent", "Trailhead ultralight 2-person tent", "outdoor", "Ripstop nylon, 1.4 kg."),
    ("sleeping-bag", "Fjellgear down sleeping bag", "outdoor", "Comfort -5 C, packable."),
    ("headlamp", "Summitco rechargeable headlamp", "outdoor", "400 lumen, USB-C."),
    ("novel", "Harbor Press mystery novel", "books", "A paperback whodunit."),
    ("atlas", "Northway illustrated world atlas", "books", "Hardcover, 300 maps."),
]

# (day, "HH:MM", user, type, item[, text]) in arrival order
EVENTS: list[tuple] = [
    # day 0
    (0, "09:00", "alice", "browse", "skillet", "cast iron pan"),
    (0, "09:01", "alice", "browse", "knife"),
    (0, "09:02", "alice", "click", "skillet"),
    (0, "09:03", "alice", "browse", "kettle"),
    (0, "10:00", "bob", "browse", "tent", "ultralight tent"),
    (0, "10:01", "bob", "browse", "sleeping-bag"),
    (0, "10:02", "bob", "click", "tent"),
    (0, "11:00", "carol", "browse", "novel"),
    (0, "11:01", "carol", "click", "novel"),
    (0, "11:02", "carol", "purchase", "novel"),
    (0, "12:00", "erin", "browse", "kettle"),
    (0, "12:01", "erin", "click", "kettle"),
    # day 1
    (1, "09:00", "alice", "browse", "skillet"),
    (1, "09:01", "alice", "click", "skillet"),
    (1, "09:02", "alice", "add_to_cart", "skillet"),
    (1, "09:03", "alice", "purchase", "skillet"),
    (1, "10:00", "bob", "add_to_cart", "tent"),
    (1, "10:01", "bob", "purchase", "tent"),
    (1, "11:00", "carol", "browse", "atlas"),
    (1, "13:00", "dave", "browse", "sleeping-bag", "down sleeping bag"),
    (1, "13:01", "dave", "click", "sleeping-bag"),
    (1, "13:02", "dave", "add_to_cart", "sleeping-bag"),
    (1, "13:03", "dave", "purchase", "sleeping-bag"),
    (1, "13:04", "dave", "browse", "tent"),
    # day 2
    (2, "09:00", "alice", "browse", "knife"),
    (2, "09:01", "alice", "click", "knife"),
    (2, "09:02", "alice", "browse", "kettle"),
    (2, "10:00", "bob", "browse", "sleeping-bag"),
    (2, "10:01", "bob", "click", "sleeping-bag"),
    (2, "10:02", "bob", "browse", "headlamp"),
    (2, "11:00", "carol", "browse", "kettle"),
    (2, "11:01", "carol", "click", "kettle"),
    (2, "11:02", "carol", "browse", "skillet"),
    (2, "13:00", "dave", "browse", "headlamp"),
    (2, "13:01", "dave", "click", "headlamp"),
    (2, "13:02", "dave", "browse", "novel"),
    (2, "14:00", "erin", "browse", "skillet"),
    (2, "14:01", "erin", "click", "skillet"),
    (2, "14:02", "erin", "browse", "knife"),
    # day 3
    (3, "09:00", "alice", "browse", "knife"),
    (3, "09:01", "alice", "browse", "kettle"),
    (3, "10:00", "bob", "return", "tent"),
    (3, "10:01", "bob", "browse", "headlamp"),
    (3, "10:02", "bob", "click", "headlamp"),
    (3, "11:00", "carol", "browse", "atlas"),
    (3, "11:01", "carol", "click", "atlas"),
    (3, "11:02", "carol", "add_to_cart", "atlas"),
    (3, "11:03", "carol", "purchase", "atlas"),
    (3, "11:04", "carol", "browse", "novel"),
    (3, "13:00", "dave", "browse", "tent"),
    (3, "13:01", "dave", "click", "tent"),
    (3, "13:02", "dave", "browse", "atlas"),
    (3, "14:00", "erin", "browse", "kettle"),
    (3, "14:01", "erin", "click", "kettle"),
    (3, "14:02", "erin", "add_to_cart", "kettle"),
    (3, "14:03", "erin", "browse", "skillet"),
    # day 4
    (4, "09:00", "alice", "browse", "tent"),
    (4, "13:00", "dave", "browse", "novel"),
    (4, "13:01", "dave", "click", "novel"),
    # the late event: bob's phone was offline; a day-0 browse arrives after everything else
    (0, "09:30", "bob", "browse", "headlamp"),
]

TOPIC = {"browse": "browses", "click": "clicks"}  # everything else: purchases


def partition(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def invalid_lines() -> list[bytes]:
    """tests/data/invalid.jsonl: one record per validation reason, three valid events between them;
    ``expect`` names the reason (or ``valid``)."""
    ok = {"user_id": "zoe", "item_id": "kettle", "type": "click", "ts": "2026-03-02T08:00:00Z"}

    def bad(n: int, **changes: object) -> dict:
        event = {"event_id": f"bad-{n:02d}", **ok, **changes}
        return {k: v for k, v in event.items() if v is not ...}

    cases: list[tuple[str, str, object]] = [
        ("valid", "clicks", {"event_id": "ok-01", **ok}),
        ("empty", "clicks", None),
        ("too_large", "clicks", bad(1, text="x" * 70_000)),
        ("not_json", "clicks", '{"event_id": "bad-02", "user_id": "zoe", '),
        ("not_json", "clicks", b"\xff\xfe\x00 not utf-8"),
        ("not_object", "clicks", [1, 2, 3]),
        ("missing_field", "clicks", bad(3, ts=...)),
        ("valid", "browses", {"event_id": "ok-02", **ok, "type": "browse"}),
        ("bad_type", "clicks", bad(4, user_id=1.5)),
        ("empty_id", "clicks", bad(5, item_id="")),
        ("id_too_long", "clicks", bad(6, item_id="k" * 200)),
        ("text_too_long", "clicks", bad(7, text="q" * 5000)),
        ("unknown_event_type", "clicks", bad(8, type="wishlist")),
        ("wrong_topic", "clicks", bad(9, type="purchase")),
        ("bad_timestamp", "clicks", bad(10, ts="2999-01-01T00:00:00Z")),
        ("bad_timestamp", "clicks", bad(11, ts="yesterday")),
        ("valid", "purchases", {"event_id": "ok-03", **ok, "type": "return"}),
    ]
    lines = []
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    for expect, topic, value in cases:
        p = partition("zoe")
        record: dict = {"topic": topic, "partition": p, "offset": offsets[topic, p], "key": "zoe"}
        offsets[topic, p] += 1
        if isinstance(value, bytes):
            record["value_b64"] = base64.b64encode(value).decode()
        elif isinstance(value, str) or value is None:
            record["value"] = value  # the exact text (or a tombstone)
        else:
            record["value"] = orjson.dumps(value).decode()  # as text, byte for byte
        record["timestamp"] = None
        record["expect"] = expect
        lines.append(orjson.dumps(record))
    return lines


def main() -> None:
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    lines = []

    def add(topic: str, key: str, value: dict) -> None:
        p = partition(key)
        record = {
            "topic": topic,
            "partition": p,
            "offset": offsets[topic, p],
            "key": key,
            "value": value,
            "timestamp": None,
        }
        offsets[topic, p] += 1
        lines.append(orjson.dumps(record))

    for item_id, title, category, description in ITEMS:
        add(
            "items",
            item_id,
            {"item_id": item_id, "title": title, "category": category, "description": description},
        )
    for n, (day, hhmm, user, etype, item, *text) in enumerate(EVENTS, 1):
        h, m = map(int, hhmm.split(":"))
        ts = DAY0 + timedelta(days=day, hours=h, minutes=m)
        event = {
            "event_id": f"rec-{n:03d}",
            "user_id": user,
            "item_id": item,
            "type": etype,
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if text:
            event["text"] = text[0]
        add(TOPIC.get(etype, "purchases"), user, event)
    out = Path(__file__).with_name("recording.jsonl")
    out.write_bytes(b"\n".join(lines) + b"\n")
    print(f"wrote {len(lines)} records to {out}")
    bad = invalid_lines()
    out = Path(__file__).with_name("invalid.jsonl")
    out.write_bytes(b"\n".join(bad) + b"\n")
    print(f"wrote {len(bad)} records to {out}")


if __name__ == "__main__":
    main()
