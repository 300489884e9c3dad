"""`up`, `down` and `status`: the control loop over the local services."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from config.exceptions import ServicesError
from config.settings import Settings
from services import processes
from services.artifacts import resolve
from services.base import JavaService, NotReady
from services.kafka import KafkaService
from services.layout import Layout
from services.neo4j import Neo4jService
from services.tools import find_java

START_TIMEOUT_S = 240.0
PROBE_TIMEOUT_S = 5.0

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ServiceState:
    name: str
    state: str  # running | starting | stopped | port-busy | external
    address: str
    pid: int | None = None
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state in ("running", "external")

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid else ""
        extra = ", ".join(p for p in (pid, self.detail) if p)
        return f"{self.name:<6} {self.state:<9} {self.address}" + (f"  ({extra})" if extra else "")


def services(settings: Settings) -> list[JavaService]:
    return [KafkaService(settings), Neo4jService(settings)]


def external(settings: Settings) -> list[ServiceState]:
    def detail(variable: str, value: str) -> str:
        return f"from {variable}" if value else f"{variable} unset: the default address"

    return [
        ServiceState(
            "kafka",
            "external",
            settings.kafka_servers,
            detail=detail("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers),
        ),
        ServiceState(
            "neo4j", "external", settings.neo4j_url, detail=detail("NEO4J_URI", settings.neo4j_uri)
        ),
    ]


def _state(service: JavaService) -> ServiceState:
    pid = processes.running_pid(service.pid_file, service.mark)
    if pid is not None:
        if processes.port_open(service.port):
            return ServiceState(service.name, "running", service.address, pid)
        return ServiceState(service.name, "starting", service.address, pid)
    busy = [p for p in service.ports if processes.port_open(p)]
    if busy:
        detail = f"port {busy[0]} is used by another program"
        return ServiceState(service.name, "port-busy", service.address, detail=detail)
    return ServiceState(service.name, "stopped", service.address)


def status(settings: Settings) -> list[ServiceState]:
    if not settings.use_local_services:
        return external(settings)
    return [_state(s) for s in services(settings)]


def up(
    settings: Settings, say: Say = _stderr, timeout_s: float = START_TIMEOUT_S
) -> list[ServiceState]:
    """Starts whatever is not running yet, then waits until both answer a real request."""
    if not settings.use_local_services:
        say("KAFKA_BOOTSTRAP_SERVERS or NEO4J_URI is set: using those services, starting nothing")
        return external(settings)
    layout = Layout.of(settings)
    with processes.locked(layout.lock_file):
        todo = services(settings)
        states = [_state(service) for service in todo]
        for state in states:  # refuse before starting anything
            if state.state == "port-busy":
                raise ServicesError(
                    f"{state.name} cannot start: {state.detail}; stop it or pick another port "
                    f"(TASTEGRAPH_LOCAL_{state.name.upper()}_PORT)."
                )
        started: dict[str, int] = {}
        java: str | None = None
        for service, state in zip(todo, states, strict=True):
            if state.pid is not None:
                continue
            _warn_ephemeral(service, say)
            java = java or find_java()
            classpath = resolve(service.artifact, layout.artifacts, say)
            service.prepare(java, classpath)
            say(f"starting {service.name} on {service.address}")
            started[service.name] = processes.spawn(
                service.argv(java, classpath), service.console_log, service.pid_file
            )
        deadline = time.monotonic() + timeout_s
        for service in todo:
            _wait_ready(service, deadline)
        return [
            ServiceState(
                s.name,
                "running",
                s.address,
                processes.read_pid(s.pid_file),
                "started" if s.name in started else "already running",
            )
            for s in todo
        ]


def _warn_ephemeral(service: JavaService, say: Say) -> None:
    ephemeral = processes.ephemeral_ports()
    risky = [p for p in service.ports if p in ephemeral]
    if risky:
        say(
            f"warning: {service.name} port {risky[0]} lies in the kernel's range for outgoing "
            f"connections ({ephemeral.start}-{ephemeral.stop - 1}), so a client socket may take "
            "it first; prefer a port below that range"
        )


def _wait_ready(service: JavaService, deadline: float) -> None:
    last = "no answer yet"
    while True:
        pid = processes.running_pid(service.pid_file, service.mark)
        if pid is None:
            excerpt = processes.log_excerpt(service.logs)
            raise ServicesError(
                f"{service.name} exited while starting; its logs are in {service.dir / 'logs'}:\n"
                f"{excerpt}"
            )
        if processes.port_open(service.port):
            try:
                service.probe(PROBE_TIMEOUT_S)
                return
            except NotReady as e:
                last = str(e)
        if time.monotonic() >= deadline:
            raise ServicesError(
                f"{service.name} (pid {pid}) did not answer on {service.address} in time "
                f"({last}); its logs are in {service.dir / 'logs'}"
            )
        time.sleep(0.5)


def down(settings: Settings, say: Say = _stderr) -> list[ServiceState]:
    """Stops what `up` started (by pid file): SIGTERM, then SIGKILL after the service's deadline."""
    if not settings.use_local_services:
        say("KAFKA_BOOTSTRAP_SERVERS or NEO4J_URI is set: nothing local to stop")
        return external(settings)
    layout = Layout.of(settings)
    result = []
    with processes.locked(layout.lock_file):
        for service in reversed(services(settings)):
            pid = processes.running_pid(service.pid_file, service.mark)
            if pid is None:
                service.pid_file.unlink(missing_ok=True)
                result.append(
                    ServiceState(service.name, "stopped", service.address, detail="was not running")
                )
                continue
            say(f"stopping {service.name} (pid {pid})")
            killed = processes.stop(pid, service.stop_timeout_s)
            service.pid_file.unlink(missing_ok=True)
            detail = "killed after the deadline" if killed else "stopped"
            result.append(ServiceState(service.name, "stopped", service.address, pid, detail))
    return list(reversed(result))
