"""The agent's retry of a whole batch: outages waited for, anything else bounded, then isolated.

`stream.pipeline.BatchProcessor.process` handles what it can inside a batch: invalid records,
texts the encoder refuses, records the graph refuses. An error that still escapes it fails the
whole batch: the dead-letter producer, a graph read that Neo4j refuses for good (the lookup of
the items to embed), the encoder failing on a batch's only text, a bug in the batch's
bookkeeping. `BatchRetry` retries such a batch: without end while the error is an outage
(`stream.retry.is_outage`: Neo4j or Kafka unreachable or busy; backpressure, nothing is
acknowledged meanwhile), otherwise `MAX_OTHER_ATTEMPTS` times in a row. Then the batch is halved
until the records that fail stand alone, in offset order (so a partition's offsets stay
monotonic in the graph); each such record is dead-lettered with reason ``process_failed`` and
counted once in ``tastegraph_invalid_events_total``, and the rest of the batch is processed.

No error leaves the agent: Faust's ``take_events`` acknowledges a batch when the agent's loop
fails (its ``finally``), which would commit events that were never written, and the agent would
be restarted without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from config.logs import kv
from stream.metrics import Metrics
from stream.pipeline import BatchProcessor, RawRecord
from stream.retry import MAX_OTHER_ATTEMPTS, is_database_error, is_outage, retry_transient
from stream.validation import Invalid

log = logging.getLogger("tastegraph.app")

PROCESS_FAILED = "process_failed"  # the dead-letter reason of a record whose batch kept failing
FIRST_DELAY_S = 1.0


class BatchRetry:
    """Processes a batch until each of its records is applied or dead-lettered (`settle`).

    Built by the agent (`stream.app.add_agents`) around the runtime's processor and metrics.
    """

    def __init__(
        self,
        processor: BatchProcessor,
        metrics: Metrics,
        *,
        max_delay: float,
        first_delay: float = FIRST_DELAY_S,
        attempts: int = MAX_OTHER_ATTEMPTS,
    ) -> None:
        self.processor = processor
        self.metrics = metrics
        self.max_delay = max_delay
        self.first_delay = first_delay
        self.attempts = attempts

    async def settle(self, records: Sequence[RawRecord]) -> None:
        """Processes ``records`` until each one is applied or dead-lettered."""
        try:
            await self._try(records, self.attempts)
        except Exception as e:
            await self._isolate(records, e)

    async def _try(self, records: Sequence[RawRecord], attempts: int) -> None:
        # shielded: a shutdown waits for the write instead of abandoning it half-way
        await retry_transient(
            lambda: asyncio.shield(self.processor.process(records)),
            max_delay=self.max_delay,
            first_delay=self.first_delay,
            retry_if=lambda e: True,
            on_retry=self._retried,
            max_other_attempts=attempts,
        )

    async def _isolate(self, records: Sequence[RawRecord], error: Exception) -> None:
        """Halves ``records`` (the first half first) until the ones that fail stand alone."""
        if len(records) == 1:
            await self._dead_letter(records[0], error)
            return
        log.error(
            "batch keeps failing, isolating the records that fail %s",
            kv(records=len(records), error=repr(error)[:300]),
        )
        mid = len(records) // 2
        for part in (records[:mid], records[mid:]):
            try:
                # a lone record gets every attempt before it is dead-lettered; a larger part one
                await self._try(part, self.attempts if len(part) == 1 else 1)
            except Exception as e:
                await self._isolate(part, e)

    async def _dead_letter(self, r: RawRecord, error: Exception) -> None:
        detail = f"{type(error).__name__}: {error}"
        invalid = Invalid(r.value, PROCESS_FAILED, detail, r.topic, r.partition, r.offset)
        if self.processor.dead_letters.first_count(invalid):  # not counted under another reason
            self.metrics.invalid(PROCESS_FAILED)
        log.error(
            "record keeps failing, dead-lettering it %s",
            kv(topic=r.topic, partition=r.partition, offset=r.offset, error=repr(error)[:300]),
        )
        try:
            # an unreachable Kafka is waited for; a dead letter Kafka refuses for good is not
            await retry_transient(
                lambda: self.processor.dead_letters.send([r], [invalid]),
                max_delay=self.max_delay,
                first_delay=self.first_delay,
                retry_if=lambda e: True,
                on_retry=self._retried,
            )
        except Exception as e:
            log.error(
                "dead letter refused, record skipped %s",
                kv(topic=r.topic, partition=r.partition, offset=r.offset, error=repr(e)[:300]),
            )

    def _retried(self, error: Exception) -> None:
        log.error("batch failed, retrying it %s", kv(error=repr(error)[:300]))
        # a Neo4j write failure only when it is Neo4j's (not a producer's or our own error)
        if is_database_error(error):
            self.metrics.write_failure("unavailable" if is_outage(error) else "other")
