"""The examples the worker accumulates for fine-tuning, kept on disk as a JSON-lines file.

`ExampleStore` keeps the newest ``max_examples`` examples (older ones fall off), splits off the
newest slice for evaluation, forgets a user on request, and persists itself as a JSON-lines file:
`add` appends lines (flushed and fsynced by `flush`), `forget` and `compact` rewrite the whole file
atomically (write a temporary file, fsync, ``os.replace``). A crash between an append and its
fsync can lose the last few examples, never corrupt older ones: a torn last line is skipped on load
(`read_examples`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TextIO

from encoder.examples import Example, split_examples
from encoder.files import atomic_write

log = logging.getLogger(__name__)


class ExampleStore:
    """The newest ``max_examples`` examples in arrival order; optionally backed by a JSONL file.

    ``added_total`` counts the examples loaded from the file plus every one added since, so the
    periodic agent can compare it with the value it saw at its last run to know how many are new
    (``TASTEGRAPH_FINETUNE_MIN_EXAMPLES``).

    Several processes may open the same file (the worker appends, ``tastegraph forget`` or a
    second worker forgets): every append and rewrite holds an exclusive ``flock`` on
    ``<file>.lock``, and a store that finds the file replaced by someone else's rewrite reloads
    it before writing, so a forgotten user's examples never come back from another process's
    memory.
    """

    def __init__(self, max_examples: int = 50_000, path: Path | str | None = None) -> None:
        if max_examples < 1:
            raise ValueError("max_examples must be at least 1")
        self.max_examples = max_examples
        self.path = Path(path) if path is not None else None
        self._items: deque[Example] = deque(maxlen=max_examples)
        self.added_total = 0
        self._file: IO[str] | None = None
        self._file_lines = 0
        self._inode: int | None = None
        if self.path is not None:
            with self._locked():
                self._load()
            self.added_total = self._file_lines

    def _load(self) -> None:
        assert self.path is not None
        self._items.clear()
        self._file_lines = 0
        self._inode = None
        if self.path.exists():
            self._inode = os.stat(self.path).st_ino
            for ex in read_examples(self.path):
                self._items.append(ex)
                self._file_lines += 1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _sync(self) -> None:
        """Under the lock: reload when another process replaced (rewrote) the file."""
        assert self.path is not None
        try:
            inode: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self._inode:
            self.close()
            self._load()

    # -- content ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Example]:
        return iter(self._items)

    def examples(self) -> list[Example]:
        return list(self._items)

    def add(self, example: Example) -> None:
        self.add_many((example,))

    def add_many(self, examples: Iterable[Example]) -> int:
        """Appends examples (oldest fall off), and their lines to the file; returns the count."""
        batch = list(examples)
        if not batch:
            return 0
        self.added_total += len(batch)
        if self.path is None:
            self._items.extend(batch)
            return len(batch)
        with self._locked():
            self._sync()
            self._items.extend(batch)
            f = self._open_append()
            f.write("".join(json.dumps(ex.to_json(), ensure_ascii=False) + "\n" for ex in batch))
            f.flush()
            self._file_lines += len(batch)
            if self._file_lines > 2 * self.max_examples:
                self._rewrite()
        return len(batch)

    def forget(self, user_id: str) -> int:
        """Removes every example of ``user_id`` (and rewrites the file); returns how many."""
        if self.path is None:
            return self._drop(user_id)
        with self._locked():
            self._sync()
            removed = self._drop(user_id)
            if removed:
                self._rewrite()
        return removed

    def _drop(self, user_id: str) -> int:
        kept = [ex for ex in self._items if ex.user_id != user_id]
        removed = len(self._items) - len(kept)
        if removed:
            self._items = deque(kept, maxlen=self.max_examples)
        return removed

    def split(
        self,
        holdout_fraction: float = 0.1,
        holdout_max: int | None = None,
        per_user_max: int | None = None,
    ) -> tuple[list[Example], list[Example]]:
        """(train, held_out): the newest ``holdout_fraction`` (at most ``holdout_max``) held out,
        at most ``per_user_max`` per user (see `split_examples`)."""
        return split_examples(list(self._items), holdout_fraction, holdout_max, per_user_max)

    # -- persistence -----------------------------------------------------------------------------
    def _open_append(self) -> IO[str]:
        assert self.path is not None
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._inode = os.fstat(self._file.fileno()).st_ino
        return self._file

    def flush(self) -> None:
        """Makes the appended lines durable (fsync)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def compact(self) -> None:
        """Rewrites the file to hold exactly the examples in memory, atomically."""
        if self.path is None:
            return
        with self._locked():
            self._sync()
            self._rewrite()

    def _rewrite(self) -> None:
        assert self.path is not None
        self.close()
        write_examples(self.path, self._items)
        self._inode = os.stat(self.path).st_ino
        self._file_lines = len(self._items)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> ExampleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_examples(path: Path | str) -> Iterator[Example]:
    """Reads a JSONL examples file; a torn or malformed line is skipped with a warning."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield Example.from_json(json.loads(line))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping malformed example line %s:%d", path, lineno)


def write_examples(path: Path | str, examples: Iterable[Example]) -> int:
    """Writes examples to ``path`` atomically (`encoder.files.atomic_write`)."""

    def write(f: TextIO) -> int:
        n = 0
        for ex in examples:
            f.write(json.dumps(ex.to_json(), ensure_ascii=False) + "\n")
            n += 1
        return n

    return atomic_write(Path(path), write)
