"""Helpers to run the real worker (`tastegraph worker`, a subprocess) against unique topics."""

from __future__ import annotations

import dataclasses
import json
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from config.settings import Settings
from services.processes import port_open
from tools.worker_process import free_port, worker_env

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "tests" / "data" / "recording.jsonl"


def isolated(settings: Settings, **overrides: Any) -> Settings:
    """Settings with topics and consumer group of their own (and a free metrics port)."""
    run = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "app_id": f"tastegraph-test-{run}",
        "topic_clicks": f"clicks-{run}",
        "topic_browses": f"browses-{run}",
        "topic_purchases": f"purchases-{run}",
        "topic_items": f"items-{run}",
        "topic_dead_letter": f"dead-letter-{run}",
        "metrics_port": free_port(),
        "max_wait_s": 0.2,
    }
    values.update(overrides)
    return dataclasses.replace(settings, **values)


def free_ports(*offsets: int) -> int:
    """A base port ``p`` with ``p + offset`` free for every offset (a Kafka broker and its
    controller next to it: ``0, 1``), below the kernel's ephemeral range (where a client socket
    could take them) and away from the team's defaults."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000, 10)
        if not any(port_open(base + offset) for offset in offsets):
            return base
    raise AssertionError("no free ports")


def topic_map(settings: Settings) -> dict[str, str]:
    """Maps the default topic names of a recording to ``settings``' topics."""
    return {
        "clicks": settings.topic_clicks,
        "browses": settings.topic_browses,
        "purchases": settings.topic_purchases,
        "items": settings.topic_items,
    }


def env_of(settings: Settings) -> dict[str, str]:
    env = worker_env(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    """`tastegraph worker` in a subprocess; its log goes to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", *args],
            env=env_of(settings),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            self.kill()
            raise AssertionError(
                f"worker still running after {timeout} s; log: {self.log()}"
            ) from e
        finally:
            self._log.close()

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


def run_until_caught_up(settings: Settings, log_path: Path, timeout: float = 300.0) -> str:
    """Runs a worker until it has consumed everything and idled 3 s; returns its log."""
    worker = Worker(settings, log_path, "--until-idle", "3")
    rc = worker.wait(timeout)
    log = worker.log(20000)
    assert rc == 0, f"worker exited with {rc}: {log[-4000:]}"
    return log


def wait_for(
    cond: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.2,
    ignore: tuple[type[Exception], ...] = (),
) -> Any:
    """Polls ``cond`` until it returns something truthy and returns that; fails at the deadline
    naming ``what`` and the last value (or the last error of the ``ignore`` kinds)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = cond()
            if value:
                return value
            last = value
        except ignore as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def graph_state(
    driver: Any,
    database: str,
    exclude_properties: Sequence[str] = (),
    drop_node_properties: Collection[str] = (),
) -> dict[str, Any]:
    """The graph by stable identity: nodes by ``Label:key``, relationships by (type, from, to);
    without derived data and PartitionOffset nodes (`graph.dump.canonical_dump`)."""
    from graph.dump import canonical_dump, node_ref

    dump = canonical_dump(
        driver,
        database,
        derived=False,
        exclude_labels=("PartitionOffset",),
        exclude_properties=tuple(exclude_properties),
    )
    state: dict[str, Any] = {}
    for line in dump["nodes"]:
        node = json.loads(line)
        props = {k: v for k, v in node["props"].items() if k not in drop_node_properties}
        state[f"node {node_ref(node['labels'], node['props'])}"] = props
    for line in dump["relationships"]:
        rel = json.loads(line)
        key = f"rel {rel['type']} {rel['from']} -> {rel['to']}"
        assert key not in state, f"two {key}"
        state[key] = rel["props"]
    return state
