"""Dead letters of the batch path: each source record dead-lettered, and counted, once.

`DeadLetters` wraps the sink (the Faust app's dead-letter topic, `stream.app.DeadLetterTopic`)
and remembers, by source (topic, partition, offset), which records it counted and which it sent:
a batch retried whole (`stream.batch_retry`) neither counts an invalid record again, while
Kafka or Neo4j is away, nor sends its dead letter twice. The memory is the process's own (the last
`HANDLED_MAX` records): a partition read again after a crash, before its offsets were committed,
sends its dead letters again (at least once across crashes; a reader recognises a repeat by its
``topic``, ``partition`` and ``offset``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from stream.validation import Invalid, dead_letter_value

HANDLED_MAX = 100_000  # records remembered, counted or sent

DeadLetterSink = Callable[[Sequence[bytes]], Awaitable[None]]
Where = tuple[str, int, int]


class SourceRecord(Protocol):
    """What a dead letter keeps of its record (`stream.pipeline.RawRecord` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> float | None: ...


class _Remembered:
    """A bounded set of record coordinates, the oldest forgotten first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: OrderedDict[Where, None] = OrderedDict()

    def __contains__(self, where: object) -> bool:
        return where in self._seen

    def add(self, where: Where) -> None:
        self._seen[where] = None
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)


class DeadLetters:
    """Sends dead letters to ``sink``, once per source record (`send`); says whether a record's
    failure is counted for the first time (`first_count`)."""

    def __init__(self, sink: DeadLetterSink, limit: int = HANDLED_MAX) -> None:
        self.sink = sink
        self._sent = _Remembered(limit)
        self._counted = _Remembered(limit)

    def first_count(self, invalid: Invalid) -> bool:
        """True the first time ``invalid``'s record is counted (a metric, a log line)."""
        where = (invalid.topic, invalid.partition, invalid.offset)
        if where in self._counted or where in self._sent:
            return False
        self._counted.add(where)
        return True

    async def send(self, records: Sequence[SourceRecord], dead: Sequence[Invalid]) -> None:
        """Sends the records that cannot be applied, with their original bytes, key and
        timestamp, to the sink and waits until it took them; each record once (a retried batch
        skips those already sent)."""
        source = {(r.topic, r.partition, r.offset): r for r in records}
        values, sent = [], []
        for d in dead:
            where = (d.topic, d.partition, d.offset)
            if where in self._sent or where in sent:
                continue
            r = source.get(where)
            ts = None if r is None or r.timestamp is None else round(r.timestamp * 1000)
            values.append(
                dead_letter_value(
                    d._replace(raw=d.raw if r is None else r.value),
                    source_timestamp_ms=ts,
                    key=None if r is None else r.key,
                )
            )
            sent.append(where)
        if values:
            await self.sink(values)
        for where in sent:
            self._sent.add(where)
