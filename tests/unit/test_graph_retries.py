"""GraphStore reports the driver's own retries of a write transaction (a deadlock, a leader switch)
through ``on_retry``: the driver retries inside ``execute_write``, where no caller sees it."""

from __future__ import annotations

from typing import Any

from config.settings import DEFAULT_WEIGHTS
from graph.store import GraphStore, InterestParams


class RetryingSession:
    """A session whose ``execute_write`` runs the transaction function ``attempts`` times, as the
    driver does after transient errors."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def __enter__(self) -> RetryingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute_write(self, fn: Any, *args: Any) -> Any:
        for _ in range(self.attempts - 1):
            fn(object(), *args)  # an attempt the driver threw away
        return fn(object(), *args)


class Driver:
    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def session(self, database: str) -> RetryingSession:
        return RetryingSession(self.attempts)


def test_every_retry_of_a_write_transaction_is_reported() -> None:
    seen: list[str] = []
    store = GraphStore(Driver(3), "neo4j", InterestParams(1.0, DEFAULT_WEIGHTS), seen.append)
    assert store._write(store._session(), "batch", lambda tx, x: x + 1, 41) == 42
    assert seen == ["batch", "batch"]
    store = GraphStore(Driver(1), "neo4j", InterestParams(1.0, DEFAULT_WEIGHTS), seen.append)
    store._write(store._session(), "refresh", lambda tx: None)
    assert seen == ["batch", "batch"]  # a first attempt is no retry
