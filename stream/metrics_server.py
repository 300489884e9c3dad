"""Serves a `Metrics` registry at ``http://HOST:PORT/metrics`` for Prometheus to scrape.

The server runs in a daemon thread (prometheus_client's WSGI server), apart from the worker's
asyncio loop, so a scrape is answered even while a batch is being encoded. Use it as::

    server = start_metrics_server(metrics, settings.metrics_host, settings.metrics_port)
    try:
        ...
    finally:
        server.close()

Port 0 picks a free port (``server.port`` tells which).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from config.exceptions import ConfigError
from config.logs import kv
from stream.metrics import Metrics

log = logging.getLogger("tastegraph.metrics")


@dataclass
class MetricsServer:
    """A running metrics endpoint; `close` stops it and frees the port."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_metrics_server(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Starts serving ``metrics.registry`` on ``host:port`` (``settings.metrics_host`` and
    ``settings.metrics_port``; 127.0.0.1:9108 by default)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as e:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({e.strerror or e}); "
            "set TASTEGRAPH_METRICS_HOST / TASTEGRAPH_METRICS_PORT"
        ) from e
    running = MetricsServer(host=host, port=int(server.server_port), _server=server, _thread=thread)
    log.info("metrics served %s", kv(url=running.url))
    return running
