"""Record and replay on the real Kafka: replay files into unique topics, record them, compare."""

from __future__ import annotations

import dataclasses
import gzip
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.settings import Settings
from stream.topics import ensure_topics, topic_partitions
from tools.recording import read_recording, record, record_line, replay

from .conftest import run_sync

pytestmark = pytest.mark.integration

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def topics(settings: Settings, unique_topics: Callable[[str], str]) -> Settings:
    """Settings whose four topics are fresh (not created yet)."""
    return dataclasses.replace(
        settings,
        topic_clicks=unique_topics("rr-clicks"),
        topic_browses=unique_topics("rr-browses"),
        topic_purchases=unique_topics("rr-purchases"),
        topic_items=unique_topics("rr-items"),
    )


def all_topics(s: Settings) -> list[str]:
    return [s.topic_clicks, s.topic_browses, s.topic_purchases, s.topic_items]


def record_back(s: Settings, names: list[str], out: Path) -> list[dict[str, Any]]:
    summary = run_sync(record(s, names, out, from_beginning=True, until_end=True))
    records = list(read_recording(out))
    assert summary.recorded == len(records)
    return records


def topic_config(s: Settings, topic: str, name: str) -> str | None:
    async def describe() -> str | None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_servers)
        await admin.start()
        try:
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, None)]
            )
        finally:
            await admin.close()
        for entry in response.resources[0][4]:
            if entry[0] == name:
                return str(entry[1])
        return None

    return run_sync(describe())


def test_the_test_recording_round_trips(topics: Settings, tmp_path: Path) -> None:
    source = [orjson.loads(line) for line in (DATA / "recording.jsonl").read_bytes().splitlines()]
    mapping = {
        "clicks": topics.topic_clicks,
        "browses": topics.topic_browses,
        "purchases": topics.topic_purchases,
        "items": topics.topic_items,
    }
    summary = run_sync(replay(topics, [DATA / "recording.jsonl"], topic_map=mapping))
    assert summary.produced == len(source) == 68 and summary.skipped == 0

    # created by replay, with the configured partition count; items compacted
    parts = run_sync(topic_partitions(topics, all_topics(topics)))
    assert {t: len(p) for t, p in parts.items()} == dict.fromkeys(
        all_topics(topics), topics.topic_partitions
    )
    assert topic_config(topics, topics.topic_items, "cleanup.policy") == "compact"
    assert topic_config(topics, topics.topic_clicks, "cleanup.policy") == "delete"

    back = record_back(topics, all_topics(topics), tmp_path / "back.jsonl.gz")
    assert len(back) == len(source)
    reverse = {v: k for k, v in mapping.items()}
    # every record on its topic, in the partition the file says (same key -> same partition),
    # with its key and exactly its value; offsets per partition in file order
    got = sorted(
        (reverse[r["topic"]], r["partition"], r["offset"], r["key"], orjson.loads(r["value"]))
        for r in back
    )
    want = sorted(
        (s["topic"], s["partition"], s["offset"], s["key"].encode(), s["value"]) for s in source
    )
    assert got == want
    # the broker stamped them now (the file has no timestamps)
    assert all(abs(r["timestamp"] / 1000 - time.time()) < 600 for r in back)


def test_timestamps_keys_and_binary_values_are_preserved(
    settings: Settings, unique_topics: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique_topics("rr-raw")
    ensure_topics(settings, [topic], partitions=1)
    now_ms = int(time.time() * 1000)
    lines = [
        ("old-topic", 0, 0, b"u1", b'{"event_id": "e1"}', now_ms - 3_600_000),
        ("old-topic", 0, 1, b"\xff\xfe", b"\x00\x01\x02 not utf-8", now_ms - 1_000),
        ("old-topic", 0, 2, b"u3", None, now_ms - 500),  # a tombstone
        ("old-topic", 0, 3, b"u2", "caf\u00e9 \u2615".encode(), None),
    ]
    source = tmp_path / "raw.jsonl"
    source.write_bytes(b"".join(record_line(*line) + b"\n" for line in lines))
    run_sync(replay(settings, [source], topic_map={"old-topic": topic}, progress=False))
    back = record_back(settings, [topic], tmp_path / "back.jsonl")
    assert [(r["key"], r["value"]) for r in back] == [(k, v) for _, _, _, k, v, _ in lines]
    assert [r["timestamp"] for r in back[:3]] == [ts for *_, ts in lines[:3]]
    assert abs(back[3]["timestamp"] - now_ms) < 600_000
    assert [r["offset"] for r in back] == [0, 1, 2, 3]


def test_a_plain_events_file_replayed_twice_gives_the_same_event_ids(
    topics: Settings, tmp_path: Path
) -> None:
    events = [
        {"user_id": "u1", "item_id": "i1", "type": "browse", "ts": "2026-01-01T10:00:00Z"},
        {"user_id": "u1", "item_id": "i1", "type": "click", "ts": "2026-01-01T10:01:00Z"},
        {"user_id": "u2", "item_id": "i2", "type": "purchase", "ts": 1767261600},
        {"user_id": "u2", "item_id": "i2", "type": "purchase", "ts": 1767261600},  # a repeat line
        {"user_id": "u3", "item_id": "i1", "type": "return", "ts": "2026-01-02T10:00:00"},
        {
            "event_id": "mine",
            "user_id": 7,
            "item_id": "i3",
            "type": "add_to_cart",
            "ts": 1767261700,
        },
    ]
    items = [{"item_id": "i1", "title": "Pan", "category": "kitchen", "description": None}]
    events_file, items_file = tmp_path / "events.jsonl.gz", tmp_path / "items.jsonl"
    events_file.write_bytes(gzip.compress(b"\n".join(orjson.dumps(e) for e in events) + b"\n"))
    items_file.write_bytes(orjson.dumps(items[0]) + b"\nnot json\n")

    first = run_sync(replay(topics, [events_file, items_file], progress=False))
    assert (first.produced, first.ids_assigned, first.skipped) == (7, 5, 1)
    run_sync(replay(topics, [events_file], progress=False))

    back = record_back(topics, all_topics(topics), tmp_path / "back.jsonl")
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in back:
        by_topic[r["topic"]].append(r)
    assert {t: len(rs) for t, rs in by_topic.items()} == {
        topics.topic_browses: 2,
        topics.topic_clicks: 2,
        topics.topic_purchases: 8,
        topics.topic_items: 1,
    }
    values = [orjson.loads(r["value"]) for r in back if r["topic"] != topics.topic_items]
    for r in back:
        value = orjson.loads(r["value"])
        key_field = "item_id" if r["topic"] == topics.topic_items else "user_id"
        assert r["key"] == str(value[key_field]).encode()
    ids = Counter(v["event_id"] for v in values)
    assert len(ids) == 6 and set(ids.values()) == {2}  # each id twice: once per replay
    assert "mine" in ids
    assert all(i.startswith("h-") for i in ids if i != "mine")


def test_rate_limits_the_replay(topics: Settings, tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {"user_id": f"u{n}", "item_id": "i", "type": "click", "ts": 1767261600 + n}
            )
            + b"\n"
            for n in range(40)
        )
    )
    summary = run_sync(replay(topics, [path], rate=100.0, progress=False))
    assert summary.produced == 40
    assert summary.seconds >= 0.39


def test_the_cli_commands(topics: Settings, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASTEGRAPH_TOPIC_CLICKS": topics.topic_clicks,
        "TASTEGRAPH_TOPIC_BROWSES": topics.topic_browses,
        "TASTEGRAPH_TOPIC_PURCHASES": topics.topic_purchases,
        "TASTEGRAPH_TOPIC_ITEMS": topics.topic_items,
    }
    cli = [sys.executable, "-m", "cli.main"]
    gen = subprocess.run(
        [*cli, "generate", "--out", str(tmp_path), "--users", "20", "--items", "30",
         "--events", "300", "--days", "5", "--seed", "1"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "wrote 300 events" in gen.stdout
    files = [str(tmp_path / "items.jsonl.gz"), str(tmp_path / "events.jsonl.gz")]
    out = subprocess.run(
        [*cli, "replay", *files], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert "replayed 330 records" in out.stdout
    assert "330/330" not in out.stderr  # progress bars only on a terminal (stderr is a pipe)
    rec = tmp_path / "rec.jsonl"
    out = subprocess.run(
        [*cli, "record", "--out", str(rec), "--from-beginning", "--until-idle", "2",
         *all_topics(topics)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "recorded 330 records" in out.stdout
    assert len(rec.read_bytes().splitlines()) == 330
    bad = subprocess.run(
        [*cli, "record", "--out", str(rec), "--until-end", "no-such-topic-here"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and "no such topic" in bad.stderr
    # recording did not create the topic it was asked about
    assert run_sync(topic_partitions(topics, ["no-such-topic-here"])) == {}


def test_record_from_now_on_until_ctrl_c(topics: Settings, tmp_path: Path) -> None:
    import signal
    import threading

    ensure_topics(topics, [topics.topic_clicks])
    old = tmp_path / "old.jsonl"
    old.write_bytes(orjson.dumps({"user_id": "old", "type": "click", "ts": 1767261600}) + b"\n")
    run_sync(replay(topics, [old], progress=False))  # before the recording: not recorded

    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "record", "--out", str(out), topics.topic_clicks],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("recording" in line for line in stderr):
            assert proc.poll() is None and time.monotonic() < deadline, stderr
            time.sleep(0.05)
        new = tmp_path / "new.jsonl"
        new.write_bytes(
            b"".join(
                orjson.dumps({"user_id": f"u{n}", "type": "click", "ts": 1767261600}) + b"\n"
                for n in range(5)
            )
        )
        run_sync(replay(topics, [new], progress=False))
        deadline = time.monotonic() + 60
        while not out.exists() or len(out.read_bytes().splitlines()) < 5:
            assert proc.poll() is None and time.monotonic() < deadline, stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "recorded 5 records" in stdout
    users = sorted(orjson.loads(r["value"])["user_id"] for r in read_recording(out))
    assert users == [f"u{n}" for n in range(5)]


def test_ensure_topics_creates_only_what_is_missing(
    settings: Settings, unique_topics: Callable[[str], str], kafka_admin: Any
) -> None:
    import asyncio

    existing, fresh, compacted = (unique_topics(p) for p in ("et-old", "et-new", "et-cmp"))
    kafka_admin.create_topics(existing, partitions=2)
    assert ensure_topics(settings, [existing, fresh]) == [fresh]
    assert ensure_topics(settings, [existing, fresh]) == []
    parts = run_sync(topic_partitions(settings, [existing, fresh]))
    assert {t: len(p) for t, p in parts.items()} == {existing: 2, fresh: settings.topic_partitions}

    async def from_a_running_loop() -> list[str]:
        return ensure_topics(settings, [compacted], compact=True, partitions=1)

    assert asyncio.run(from_a_running_loop()) == [compacted]
    assert topic_config(settings, compacted, "cleanup.policy") == "compact"
    assert topic_config(settings, fresh, "cleanup.policy") == "delete"


def test_the_invalid_recording_round_trips_byte_for_byte(topics: Settings, tmp_path: Path) -> None:
    source = list(read_recording(DATA / "invalid.jsonl"))
    mapping = {
        "clicks": topics.topic_clicks,
        "browses": topics.topic_browses,
        "purchases": topics.topic_purchases,
    }
    summary = run_sync(replay(topics, [DATA / "invalid.jsonl"], topic_map=mapping, progress=False))
    assert summary.produced == len(source) == 17
    names = list(mapping.values())
    back = record_back(topics, names, tmp_path / "back.jsonl")
    reverse = {v: k for k, v in mapping.items()}
    assert sorted(
        (reverse[r["topic"]], r["offset"], r["key"], r["value"] or b"") for r in back
    ) == (sorted((s["topic"], s["offset"], s["key"], s["value"] or b"") for s in source))
    assert any(r["value"] is None for r in back)  # the tombstone stays one
    assert max(len(r["value"] or b"") for r in back) > topics.max_event_bytes
