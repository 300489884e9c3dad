"""Record topics to JSON lines and replay files back to Kafka.

File formats (one JSON object per line; ``.gz`` is read and written transparently):

- recorded records: ``{"topic", "partition", "offset", "key", "value", "timestamp"}``. ``key``
  and ``value`` are the record's bytes as UTF-8 text (``value`` is then the event's JSON text,
  exactly as it was on the topic), or ``key_b64``/``value_b64`` (base64) when the bytes are not
  UTF-8; null for a missing key or a tombstone. ``timestamp`` is the Kafka record timestamp in
  epoch milliseconds (null: the broker stamps it when replayed). On replay a ``value`` that is a
  JSON object instead of a string is accepted too (serialised compactly), which keeps
  hand-written files readable.
- plain events: lines with a ``type``; routed by type (browse -> ``topic_browses``, click ->
  ``topic_clicks``, everything else -> ``topic_purchases``), keyed by ``user_id``. An event without
  ``event_id`` gets a deterministic one (see `EventIds`), so replaying a file twice produces the
  same ids and the worker applies each event once. The broker stamps these records (event time
  stays in ``ts``), so old data sets are not deleted at once by time-based retention.
- items: lines with ``item_id`` and no ``type``; produced to ``topic_items`` keyed by ``item_id``.

Kinds are recognised line by line, so one file may mix them. A line that is not a JSON object of one
of these kinds is skipped and counted, never produced; so is a recorded record with neither key nor
value (aiokafka cannot produce one).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from config.exceptions import ServicesError, TastegraphError
from config.logs import kv
from config.settings import Settings
from stream.kafka_connection import check_connection, client_options
from stream.topics import ensure_topics_async, topic_partitions
from stream.validation import decode_bytes, encode_bytes, event_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProducerRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    kind: str = "record"  # record | event | item
    assigned_id: bool = False  # an event that got its event_id from `EventIds`


# --- reading files --------------------------------------------------------------------------------


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, stripped bytes)`` of the non-blank lines of a file (gzip or plain)."""
    with path.open("rb") as raw:
        stream: Any = raw
        if raw.peek(2)[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        with stream:
            for n, line in enumerate(stream, 1):
                line = line.strip()
                if line:
                    yield n, line


def count_lines(paths: Iterable[Path]) -> int:
    return sum(1 for path in paths for _ in iter_lines(path))


class EventIds:
    """Deterministic ids for events that have none: a hash of the canonical record.

    Canonical = the JSON object with sorted keys, compact. The n-th identical copy of a record in
    the same replay (n > 1) hashes ``canonical + "#n"``, so genuinely repeated lines (two equal
    purchase lines of one invoice) stay two events, while replaying the same file again gives the
    very same ids. Ids look like ``h-`` + 24 hex digits.
    """

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self._repeats: Counter[bytes] = Counter()

    def assign(self, event: Mapping[str, Any]) -> str:
        canonical = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.blake2b(canonical, digest_size=12).digest()
        if digest in self._seen:
            self._repeats[digest] += 1
            n = self._repeats[digest] + 1
            digest = hashlib.blake2b(canonical + f"#{n}".encode(), digest_size=12).digest()
        else:
            self._seen.add(digest)
        return "h-" + digest.hex()


def route(settings: Settings, event_type: object) -> str:
    """The topic of a plain event: browse -> browses, click -> clicks (`stream.validation.
    event_topic`), the rest -> purchases."""
    return event_topic(settings, event_type) or settings.topic_purchases


def _key(value: object) -> bytes | None:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    return None


def records_from_line(
    line: bytes, settings: Settings, ids: EventIds, topic_map: Mapping[str, str] | None = None
) -> ProducerRecord | None:
    """One file line -> the record to produce, or None when the line is none of the kinds."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    topic_map = topic_map or {}
    if "topic" in obj and ("value" in obj or "value_b64" in obj):
        topic = obj["topic"]
        timestamp = obj.get("timestamp")
        if not isinstance(topic, str) or not topic:
            return None
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | None):
            return None
        try:
            key, value = decode_bytes("key", obj), decode_bytes("value", obj)
        except ValueError:  # bad base64
            return None
        if key is None and value is None:
            return None  # Kafka allows it, the producer client does not: skipped and counted
        return ProducerRecord(topic_map.get(topic, topic), key, value, timestamp, "record")
    if "type" in obj:
        assigned = obj.get("event_id") in (None, "")
        if assigned:
            rest = {k: v for k, v in obj.items() if k != "event_id"}
            obj = {"event_id": ids.assign(rest), **rest}
        topic = route(settings, obj["type"])
        return ProducerRecord(
            topic_map.get(topic, topic),
            _key(obj.get("user_id")),
            orjson.dumps(obj) if assigned else line,
            None,
            "event",
            assigned,
        )
    if "item_id" in obj:
        topic = settings.topic_items
        return ProducerRecord(topic_map.get(topic, topic), _key(obj["item_id"]), line, None, "item")
    return None


# --- replay ---------------------------------------------------------------------------------------


@dataclass
class ReplaySummary:
    produced: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    ids_assigned: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.by_topic.items()))
        rate = self.produced / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replayed {self.produced} records ({topics or 'none'}) in {self.seconds:.1f} s "
            f"({rate:.0f}/s); {self.ids_assigned} event ids assigned; {self.skipped} lines skipped"
        )


async def replay(
    settings: Settings,
    files: Iterable[Path],
    *,
    rate: float | None = None,
    topic_map: Mapping[str, str] | None = None,
    progress: bool = True,
) -> ReplaySummary:
    """Produces every record of ``files`` (in file order) and waits until all are acknowledged.

    Missing topics are created first (`ensure_topics_async`). ``rate`` caps records per second.
    """
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from tqdm import tqdm

    files = list(files)
    for path in files:
        if not path.is_file():
            raise TastegraphError(f"replay: no such file: {path}")
    total = count_lines(files) if progress else None
    summary = ReplaySummary()
    ids = EventIds()
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=512 * 1024,
    )
    known_topics: set[str] = set()
    t0 = time.monotonic()
    try:
        await producer.start()
    except KafkaError as e:
        await producer.stop()
        if isinstance(e, KafkaConnectionError):  # aiokafka logs the cause; say it
            await check_connection(settings)
        raise ServicesError(f"cannot reach Kafka at {settings.kafka_servers}: {e}") from e
    try:
        with tqdm(
            total=total, unit="rec", disable=not progress, file=sys.stderr, mininterval=0.5
        ) as bar:
            pending: list[asyncio.Future[Any]] = []
            for path in files:
                for lineno, line in iter_lines(path):
                    record = records_from_line(line, settings, ids, topic_map)
                    bar.update(1)
                    if record is None:
                        summary.skipped += 1
                        if summary.skipped <= 5:
                            log.warning("skipping line %s", kv(file=path, line=lineno))
                        continue
                    if record.topic not in known_topics:
                        await ensure_topics_async(settings, [record.topic])
                        known_topics.add(record.topic)
                    summary.ids_assigned += record.assigned_id
                    pending.append(
                        await producer.send(
                            record.topic,
                            value=record.value,
                            key=record.key,
                            timestamp_ms=record.timestamp_ms,
                        )
                    )
                    summary.produced += 1
                    summary.by_topic[record.topic] += 1
                    summary.by_kind[record.kind] += 1
                    if rate:
                        ahead = summary.produced / rate - (time.monotonic() - t0)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
                    if len(pending) >= 5000:
                        await asyncio.gather(*pending)
                        pending.clear()
            await asyncio.gather(*pending)
    except KafkaError as e:
        raise ServicesError(f"producing to Kafka at {settings.kafka_servers} failed: {e}") from e
    finally:
        await producer.stop()
    summary.seconds = time.monotonic() - t0
    log.info("replay done %s", kv(produced=summary.produced, skipped=summary.skipped))
    return summary


# --- record ---------------------------------------------------------------------------------------


@dataclass
class RecordSummary:
    recorded: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    out: str = ""

    def line(self) -> str:
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.by_topic.items()))
        return (
            f"recorded {self.recorded} records ({topics or 'none'}) to {self.out} "
            f"in {self.seconds:.1f} s"
        )


def record_line(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, ts: int | None
) -> bytes:
    """One recorded record as a JSON line (without the newline)."""
    obj: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    obj.update(encode_bytes("key", key))
    obj.update(encode_bytes("value", value))
    obj["timestamp"] = ts
    return orjson.dumps(obj)


def read_recording(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a recorded file as dicts, ``key``/``value`` decoded to bytes."""
    for _, line in iter_lines(path):
        obj = orjson.loads(line)
        obj["key"], obj["value"] = decode_bytes("key", obj), decode_bytes("value", obj)
        obj.pop("key_b64", None)
        obj.pop("value_b64", None)
        yield obj


async def record(
    settings: Settings,
    topics: Iterable[str],
    out: Path,
    *,
    from_beginning: bool = False,
    until_idle_s: float | None = None,
    until_end: bool = False,
    stop: asyncio.Event | None = None,
) -> RecordSummary:
    """Writes the records of ``topics`` to ``out`` as JSON lines (flushed after every fetch).

    Reads without a consumer group (commits nothing). Stops after ``until_idle_s`` seconds without
    a record, once every partition reached the end offset it had at the start (``until_end``), or
    when ``stop`` is set (the CLI sets it on Ctrl-C or SIGTERM); the file is complete up to the
    last fetch in every case.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    topics = list(dict.fromkeys(topics))
    summary = RecordSummary(out=str(out))
    t0 = time.monotonic()
    partitions = await topic_partitions(settings, topics)
    missing = [t for t in topics if t not in partitions]
    if missing:
        raise TastegraphError(f"record: no such topic on {settings.kafka_servers}: {missing}")
    tps = [TopicPartition(t, p) for t in topics for p in partitions[t]]
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    try:
        await consumer.start()
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        ends = await consumer.end_offsets(tps) if until_end else {}
        log.info(
            "recording %s",
            kv(topics=",".join(topics), partitions=len(tps), from_beginning=from_beginning),
        )
        with ExitStack() as stack:
            sink = _open_sink(out, stack)
            last = time.monotonic()
            while stop is None or not stop.is_set():
                if until_end and await _reached(consumer, ends):
                    break
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                lines = [
                    record_line(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                    for msgs in batch.values()
                    for m in msgs
                ]
                if lines:
                    sink.write(b"\n".join(lines) + b"\n")
                    sink.flush()
                    last = time.monotonic()
                    for msgs in batch.values():
                        for m in msgs:
                            summary.by_topic[m.topic] += 1
                    summary.recorded += len(lines)
                elif until_idle_s is not None and time.monotonic() - last >= until_idle_s:
                    break
    except KafkaError as e:
        raise ServicesError(f"reading from Kafka at {settings.kafka_servers} failed: {e}") from e
    finally:
        await consumer.stop()
    summary.seconds = time.monotonic() - t0
    return summary


async def _reached(consumer: Any, ends: Mapping[Any, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def _open_sink(out: Path, stack: ExitStack) -> Any:
    if str(out) == "-":
        return sys.stdout.buffer
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".gz":
        return stack.enter_context(gzip.GzipFile(out, "wb"))
    return stack.enter_context(out.open("wb"))
