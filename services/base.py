"""What the control loop needs to know about one server that runs on the JDK."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from config.settings import Settings
from services.artifacts import Artifact
from services.layout import Layout
from services.processes import marker


class NotReady(Exception):
    """The server does not answer yet; the message says what the last probe saw."""


class JavaService(ABC):
    name: str
    artifact: Artifact
    stop_timeout_s: float = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = Layout.of(settings)
        self.dir = self.layout.service_dir(self.name)

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def console_log(self) -> Path:
        return self.dir / "logs" / "console.log"

    @property
    def logs(self) -> tuple[Path, ...]:
        """The files that say why the server failed, most telling first."""
        return (self.console_log,)

    @property
    def mark(self) -> str:
        return marker(self.name, self.layout.home)

    @property
    @abstractmethod
    def port(self) -> int:
        """The port clients use (and the one that shows the server is up)."""

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every port the server listens on, all derived from the configured one."""

    @property
    @abstractmethod
    def address(self) -> str:
        """What clients connect to."""

    def jvm_options(self) -> list[str]:
        return [
            self.mark,
            f"-XX:ErrorFile={self.dir}/logs/hs_err_pid%p.log",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
        ]

    @abstractmethod
    def prepare(self, java: str, classpath: str) -> None:
        """Writes the configuration and initialises the data directory on first start."""

    @abstractmethod
    def argv(self, java: str, classpath: str) -> list[str]:
        """The command line that runs the server in the foreground."""

    @abstractmethod
    def probe(self, timeout_s: float) -> None:
        """Returns when a real client request succeeds; raises NotReady otherwise."""
