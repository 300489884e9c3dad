"""The atomic file write: a temporary file in the same folder, fsync, then ``os.replace``.

A reader sees the old file or the new one, never a half-written one; a crash leaves at most a
``.<name>.*.tmp`` file behind. Used by the model registry (`encoder.registry`), the serving reports
(`encoder.serving`), the example store (`encoder.example_store`) and the fine-tuning job.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

T = TypeVar("T")


def atomic_write(path: Path, write: Callable[[TextIO], T]) -> T:
    """Calls ``write`` with a text file (UTF-8) that replaces ``path`` once ``write`` returned;
    returns what ``write`` returned. The folder is created when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return result


def atomic_write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as JSON to ``path`` atomically (`atomic_write`), indented, keys sorted."""

    def write(f: TextIO) -> None:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")

    atomic_write(path, write)
