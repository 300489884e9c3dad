"""Workers and the model registry: noticing a new current version, and reporting what they run.

Workers notice a new current version cheaply with `CurrentWatcher` (one ``stat`` per call).
``current`` is the version workers are asked to run; what each worker runs is in its serving
report (``serving/<worker>.json`` under the registry root), which differs while a version fails to
load (the worker keeps its previous encoder and retries), so `tastegraph models current` can tell
the two apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass

from encoder.files import atomic_write_json
from encoder.registry import ModelRegistry, timestamp


@dataclass(frozen=True)
class ServingReport:
    """What one worker runs: ``serving`` (a registry version, or None: a model outside the
    registry, such as the base model after the wanted version failed to load) against ``wanted``
    (the current version when it last looked); ``error`` the last load failure, if any."""

    worker: str
    wanted: str
    serving: str | None
    error: str = ""
    failures: int = 0
    updated_at: str = ""

    @property
    def in_step(self) -> bool:
        return self.serving == self.wanted


def report_serving(registry: ModelRegistry, report: ServingReport) -> None:
    """Writes ``report`` as ``serving/<worker>.json`` (atomically)."""
    directory = registry.root / "serving"
    directory.mkdir(parents=True, exist_ok=True)
    data = {**report.__dict__, "updated_at": report.updated_at or timestamp()}
    atomic_write_json(directory / f"{_safe_name(report.worker)}.json", data)


def withdraw_serving(registry: ModelRegistry, worker: str) -> None:
    """Removes ``worker``'s report (it stopped cleanly; a crashed one's report stays, dated)."""
    with contextlib.suppress(FileNotFoundError):
        (registry.root / "serving" / f"{_safe_name(worker)}.json").unlink()


def serving_reports(registry: ModelRegistry) -> list[ServingReport]:
    """Every worker's last serving report, by worker name (unreadable ones skipped)."""
    directory = registry.root / "serving"
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("*.json")):
        with contextlib.suppress(ValueError, OSError, TypeError):
            out.append(ServingReport(**json.loads(path.read_text(encoding="utf-8"))))
    return out


def _safe_name(worker: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", worker)[:100] or "worker"


class CurrentWatcher:
    """Tells a worker, with one ``stat`` per call, when the current pointer was replaced.

    ``changed()`` returns the new current version name the first time it differs from the last one
    seen (the constructor's reading counts as seen), else None.
    """

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._stamp = self._stat()
        self.version = registry.current_version()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.registry.pointer_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def changed(self) -> str | None:
        stamp = self._stat()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        version = self.registry.current_version()
        if version == self.version:
            return None
        self.version = version
        return version
