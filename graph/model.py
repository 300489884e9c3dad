"""The domain records the graph is built from. Plain data: no I/O, no Kafka, no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One validated user event. ``ts`` is event time in epoch seconds (UTC).

    ``topic``/``partition``/``offset`` say where it was read from (``partition=-1`` when it did not
    come from Kafka, e.g. the offline evaluation); they drive the exactly-once guard.
    """

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    title: str | None = None
    category: str | None = None
    description: str | None = None
    text: str | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A catalogue record from the compacted ``items`` topic (or an items file).

    ``deleted``: a tombstone (the key with no value): the item leaves the graph (see
    ``graph/batch.py``, ``delete_items``)."""

    item_id: str
    title: str | None = None
    category: str | None = None
    description: str | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    deleted: bool = False


def item_text(title: str | None, category: str | None, description: str | None) -> str:
    """The text an item is embedded from: title, category and description, in that order."""
    return " | ".join(p.strip() for p in (title, category, description) if p and p.strip())
