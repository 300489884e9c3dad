"""Where the local services keep their files, and which ports they use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings


def kafka_controller_port(kafka_port: int) -> int:
    """The KRaft controller listens next to the broker port."""
    return kafka_port + 1


@dataclass(frozen=True)
class Layout:
    home: Path

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        # absolute: the servers run in whatever directory `up` was started from
        return cls(settings.home.expanduser().absolute())

    @property
    def root(self) -> Path:
        return self.home / "services"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def password_file(self) -> Path:
        # Settings.from_env reads this file when NEO4J_PASSWORD is unset
        return self.home / "neo4j-password"

    def service_dir(self, name: str) -> Path:
        return self.root / name
