"""A generated shop with planted structure, for the demo, the tests and the benchmark.

Pure and seeded: the same `DatasetConfig` gives the same items and events, byte for byte.

What is planted (and so what a good recommender can find):
- items belong to categories; a title is drawn from its category's vocabulary (brands, styles,
  materials, product nouns), so texts of one category share words;
- each user has hidden tastes: a few favourite categories (weights from a gamma draw) and a small
  floor on all others; within a category popular items are more likely (Zipf-like);
- each user also has a favourite brand per category; brand-loyal sessions browse only that brand,
  a taste that only the item texts show (titles and descriptions name the brand);
- a share of users drift: their favourite categories change gradually over a window of days;
- sessions are funnels: browse a few items of one category -> click some -> add some to the cart
  -> purchase some; a few purchases are returned days later; some sessions start with a search
  query (free ``text`` on the first browse); users come back to items they have seen before.

Events come out sorted by ``ts`` in the shared data-set format:
``{event_id, user_id, item_id, type, ts (ISO-8601 Z)[, text][, title, category, description]}``;
items are ``{item_id, title, category, description}``. The shop, its items and users are in
`tools.shop`, the sessions that make the events in `tools.sessions`; this module gives the data
set as lists, as an iterator, or as files.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tools.sessions import generate_events, numbered
from tools.shop import EVENT_TYPES, DatasetConfig, generate_items


def iter_dataset(
    cfg: DatasetConfig,
) -> tuple[list[dict[str, Any]], Iterator[dict[str, Any]]]:
    """``(items, events iterator)``; the events have their ids."""
    items = generate_items(cfg)
    return items, numbered(cfg, generate_events(cfg, items))


def generate_dataset(
    n_events: int = 100_000, seed: int = 0, **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(items, events)`` as lists; ``options`` are other `DatasetConfig` fields."""
    cfg = DatasetConfig(events=n_events, seed=seed, **options)
    items, events = iter_dataset(cfg)
    return items, list(events)


def write_jsonl_gz(path: Path, records: Any) -> int:
    """Writes JSON lines, gzip with a zero mtime so that the same records give the same bytes."""
    n = 0
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        buf = []
        for record in records:
            buf.append(orjson.dumps(record))
            n += 1
            if len(buf) >= 4096:
                out.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            out.write(b"\n".join(buf) + b"\n")
    return n


def write_dataset(out_dir: Path, cfg: DatasetConfig) -> dict[str, Any]:
    """Writes ``events.jsonl.gz`` and ``items.jsonl.gz`` into ``out_dir``; returns a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    items, events = iter_dataset(cfg)
    counts: dict[str, int] = dict.fromkeys(EVENT_TYPES, 0)
    span: list[str] = []

    def counted(stream: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for e in stream:
            counts[e["type"]] += 1
            if not span:
                span.append(e["ts"])
            yield e
        if span:
            span.append(e["ts"])

    n_items = write_jsonl_gz(out_dir / "items.jsonl.gz", items)
    n_events = write_jsonl_gz(out_dir / "events.jsonl.gz", counted(events))
    return {
        "events": n_events,
        "items": n_items,
        "users": cfg.users,
        "by_type": counts,
        "first_ts": span[0] if span else None,
        "last_ts": span[-1] if span else None,
        "events_path": str(out_dir / "events.jsonl.gz"),
        "items_path": str(out_dir / "items.jsonl.gz"),
    }
