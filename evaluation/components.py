"""The blend's component lists of an evaluation, saved per (user, day) pair so that blend weights
can be chosen offline (`tastegraph evaluate --save-components`, `tastegraph tune-blend`).

One JSON line per pair, gzip-compressed: ``{"user", "now", "k", "targets", "drop", "parts"}``;
``parts`` maps each blend component to its ``[item, score]`` list as the blend saw it, ``drop``
lists the items the evaluation filters out after ranking (seen or, in a new-arrivals run, not
launched; the queries already leave them out, so it is normally empty).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class PairComponents:
    user_id: str
    now: float
    k: int
    targets: frozenset[str]
    drop: frozenset[str]
    parts: dict[str, list[tuple[str, float]]]


class ComponentsWriter:
    """Appends records from the evaluation's query threads; ``close`` when done."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: Any = gzip.open(path, "wb", compresslevel=5)  # noqa: SIM115 (closed by close)
        self._lock = threading.Lock()
        self.records = 0

    def write(self, record: PairComponents) -> None:
        line = orjson.dumps(
            {
                "user": record.user_id,
                "now": record.now,
                "k": record.k,
                "targets": sorted(record.targets),
                "drop": sorted(record.drop),
                "parts": {name: [list(x) for x in ranked] for name, ranked in record.parts.items()},
            }
        )
        with self._lock:
            self._file.write(line + b"\n")
            self.records += 1

    def close(self) -> None:
        self._file.close()


def read_components(path: Path) -> list[PairComponents]:
    """The records of a file, in (day, user) order (the writer's order depends on threads)."""
    out = []
    with gzip.open(path, "rb") as f:
        for line in f:
            r = orjson.loads(line)
            out.append(
                PairComponents(
                    r["user"],
                    float(r["now"]),
                    int(r["k"]),
                    frozenset(r["targets"]),
                    frozenset(r["drop"]),
                    {n: [(str(i), float(s)) for i, s in v] for n, v in r["parts"].items()},
                )
            )
    out.sort(key=lambda r: (r.now, r.user_id))
    return out


def record_of(
    user_id: str,
    now: float,
    k: int,
    targets: frozenset[str],
    unwanted: Callable[[str], bool],
    parts: Mapping[str, Sequence[Any]],
) -> PairComponents:
    """A record from the blend's ``Scored`` lists; ``unwanted(item)`` says what the evaluation
    filters out after ranking."""
    lists = {name: [(s.item_id, float(s.score)) for s in ranked] for name, ranked in parts.items()}
    drop = frozenset(i for ranked in lists.values() for i, _ in ranked if unwanted(i))
    return PairComponents(user_id, now, k, targets, drop, lists)
