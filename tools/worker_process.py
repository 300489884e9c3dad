"""A `tastegraph worker` subprocess, exactly as deployed: its environment from the settings, a free
port for its /metrics, and its start, wait and stop (the pipeline benchmark and the integration
tests run the worker this way).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from config.settings import ENV, SECRETS, Settings
from tools.worker_metrics import scrape


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a worker's /metrics)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a `tastegraph worker` subprocess exactly ``settings``."""
    env = dict(os.environ)
    env.update(settings.masked())
    for name in SECRETS:  # masked() hides them; the subprocess needs the values
        env[ENV[name]] = getattr(settings, name).get_secret_value()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "NEO4J_URI"):
        if not env.get(name):
            env.pop(name, None)
    return env


class WorkerProcess:
    """`tastegraph worker` in a subprocess with ``settings`` (``until_idle``: it exits after that
    many idle seconds); counts its consumed events through its /metrics."""

    def __init__(self, settings: Settings, until_idle: float | None) -> None:
        args = [sys.executable, "-m", "cli.main", "worker"]
        if until_idle is not None:
            args += ["--until-idle", str(until_idle)]
        self.port = settings.metrics_port
        self.proc = subprocess.Popen(
            args, env=worker_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def counted(self) -> float:
        return scrape(self.port).get("tastegraph_events_consumed_total", 0.0)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
