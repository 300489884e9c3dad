"""Reads the evaluation inputs: events and items as JSON lines, optionally gzip-compressed."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from config.exceptions import TastegraphError
from evaluation.protocol import Interaction, parse_ts
from graph.model import ItemRecord


class DataError(TastegraphError):
    """An input file is missing or a line breaks the format; the message names file and line."""


def _open(path: Path) -> IO[str]:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not JSON ({e})") from e
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: not a JSON object")
            yield n, record


def read_events(path: Path) -> list[Interaction]:
    """Events {user_id, item_id, ts, type}; ``ts`` in epoch seconds or ISO-8601 (naive = UTC)."""
    out = []
    for n, r in _records(path):
        try:
            out.append(
                Interaction(str(r["user_id"]), str(r["item_id"]), parse_ts(r["ts"]), str(r["type"]))
            )
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}:{n}: bad event ({e!r})") from e
    if not out:
        raise DataError(f"{path}: no events")
    return out


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def read_items(path: Path) -> list[ItemRecord]:
    """Items {item_id, title, category, description}; missing or null text fields are allowed."""
    out = []
    for n, r in _records(path):
        if "item_id" not in r:
            raise DataError(f"{path}:{n}: item without item_id")
        out.append(
            ItemRecord(
                item_id=str(r["item_id"]),
                title=_text(r.get("title")),
                category=_text(r.get("category")),
                description=_text(r.get("description")),
            )
        )
    return out
