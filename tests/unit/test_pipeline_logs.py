"""The batch path's log under a bad producer: one line per reason and interval, with a count."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry

from config.logs import RateLimiter
from config.settings import Settings
from encoder.protocol import HashingEncoder
from stream.lifecycle import CurrentEncoder
from stream.metrics import Metrics
from stream.pipeline import BatchOutcome, BatchProcessor, RawRecord


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _no_sink(values: object) -> None:
    pass


def test_a_flood_of_invalid_records_logs_one_line_per_reason_and_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    with ThreadPoolExecutor(1) as pool:
        proc = BatchProcessor(
            Settings(),
            None,  # type: ignore[arg-type]  # decode never touches the store
            CurrentEncoder(HashingEncoder()),
            _no_sink,
            metrics,
            executor=pool,
            encode_executor=pool,
        )
        clock = Clock()
        proc.invalid_log = RateLimiter(interval_s=10.0, clock=clock)
        records = [RawRecord("clicks", 0, n, None, b"{not json") for n in range(1000)]
        with caplog.at_level(logging.WARNING, logger="tastegraph.pipeline"):
            proc.decode(records, BatchOutcome())
            clock.now = 11.0
            proc.decode([RawRecord("clicks", 0, 1000, None, b"{not json")], BatchOutcome())
    lines = [r.getMessage() for r in caplog.records if "invalid record" in r.getMessage()]
    assert len(lines) == 2
    assert "offset=0" in lines[0] and "held_back" not in lines[0]
    assert lines[1].endswith("held_back=999") and "offset=1000" in lines[1]
    reasons = {
        s.labels["reason"]: s.value
        for m in registry.collect()
        if m.name == "tastegraph_invalid_events"
        for s in m.samples
        if s.name.endswith("_total") and s.value
    }
    assert sum(reasons.values()) == 1001  # the metric counts every record
