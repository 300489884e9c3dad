"""The worker's one retry rule: which errors are worth retrying, and the back-off loop.

The batch path retries graph reads and writes until they succeed (backpressure: nothing is
acknowledged meanwhile), the refresh retries its chunks, and the agent retries a failed batch
whole; all of them through `retry_transient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from neo4j.exceptions import DriverError, Neo4jError

from stream.lifecycle import StopSignal

T = TypeVar("T")

FIRST_DELAY_S = 0.1
# An error retried that is not an outage (an OSError: the disk, a socket of ours; a database error
# that is not transient; a bug) is retried this many times at most, then raised: only an
# unreachable or busy Neo4j, or an unreachable Kafka, is waited for without end (backpressure).
MAX_OTHER_ATTEMPTS = 5


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying: the database is unreachable, busy, or a deadlock was detected."""
    if isinstance(exc, Neo4jError | DriverError):
        return bool(exc.is_retryable())
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def is_database_error(exc: BaseException) -> bool:
    """An error of the Neo4j driver or server (unreachable, deadlock, leader switch)."""
    return isinstance(exc, Neo4jError | DriverError)


def is_outage(exc: BaseException) -> bool:
    """An error waited for without end (backpressure): Neo4j unreachable, busy or in a deadlock
    (a transient database error), or Kafka unreachable (the dead-letter producer's connection or
    its timeout). Anything else retried is retried a bounded number of times."""
    if is_database_error(exc):
        return is_transient(exc)
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    *,
    max_delay: float,
    first_delay: float = FIRST_DELAY_S,
    retry_if: Callable[[Exception], bool] = is_transient,
    on_retry: Callable[[Exception], None] | None = None,
    stop: StopSignal | None = None,
    max_other_attempts: int = MAX_OTHER_ATTEMPTS,
) -> T:
    """``await call()`` until it returns, retrying the errors ``retry_if`` accepts.

    Sleeps ``first_delay`` after the first failure, doubling up to ``max_delay``; ``on_retry``
    sees each retried error (count it, log it). Any other error is raised at once; so is a
    retried one once ``stop`` is set, and one that is not an outage (`is_outage`: a
    non-transient database error, an ``OSError`` of ours, a bug) after ``max_other_attempts``
    attempts in a row.
    """
    delay = first_delay
    others = 0
    while True:
        try:
            return await call()
        except Exception as e:
            if not retry_if(e) or (stop is not None and stop.is_set()):
                raise
            others = 0 if is_outage(e) else others + 1
            if others >= max_other_attempts:
                raise
            if on_retry is not None:
                on_retry(e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
