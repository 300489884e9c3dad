"""Malformed input for fuzzing the worker: valid events damaged in one of a few ways, as raw
message values (`mutated_messages`) or as replayable records (`invalid_records`).

Pure and seeded, like the data generator (`tools.datagen`) whose events it usually damages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

MUTATIONS = (
    "keep",
    "drop_field",
    "retype_field",
    "truncate",
    "flip_byte",
    "random_bytes",
    "not_object",
    "unknown_type",
    "future_ts",
    "huge_text",
    "long_id",
    "empty_id",
)


def mutated_messages(
    events: list[dict[str, Any]], n: int, seed: int = 0, max_text_len: int = 4096
) -> Iterator[tuple[str, bytes]]:
    """``n`` messages ``(mutation, value bytes)`` made from ``events``: a valid event damaged in one
    of the `MUTATIONS` ways (``keep`` leaves it valid), chosen uniformly and seeded. Each gets the
    fresh ``event_id`` ``fuzz-<seed>-<i>`` first, so a kept one is never a duplicate.

    Some mutations can leave an event valid by chance (dropping an optional field, a flipped byte
    inside a title); validation decides, not the label.
    """
    rng = random.Random(f"mutations-{seed}")
    replacements: list[Any] = [None, 1.5, True, [], {}, "", 1e30, "x", -1]
    for i in range(n):
        event = dict(rng.choice(events), event_id=f"fuzz-{seed}-{i}")
        how = rng.choice(MUTATIONS)
        if how == "drop_field":
            del event[rng.choice(sorted(event))]
        elif how == "retype_field":
            event[rng.choice(sorted(event))] = rng.choice(replacements)
        elif how == "unknown_type":
            event["type"] = rng.choice(["wishlist", "Click", "", "purchase "])
        elif how == "future_ts":
            event["ts"] = rng.choice(["2999-01-01T00:00:00Z", 1.8e12, "1999-12-31", "soon"])
        elif how == "huge_text":
            event["text"] = "q" * (max_text_len + 1 + rng.randrange(100))
        elif how == "long_id":
            event[rng.choice(("user_id", "item_id", "event_id"))] = "u" * rng.randrange(129, 400)
        elif how == "empty_id":
            event[rng.choice(("user_id", "item_id", "event_id"))] = rng.choice(["", "  "])
        raw = orjson.dumps(event)
        if how == "truncate":
            raw = raw[: rng.randrange(len(raw))]
        elif how == "flip_byte":
            i = rng.randrange(len(raw))
            raw = raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :]
        elif how == "random_bytes":
            raw = rng.randbytes(rng.randrange(1, 200))
        elif how == "not_object":
            raw = orjson.dumps(rng.choice([[event], "click", 42, None]))
        yield how, raw


def invalid_records(
    events: list[dict[str, Any]],
    n: int,
    topics: tuple[str, str, str] = ("clicks", "browses", "purchases"),
    seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """`mutated_messages` as lines of the record format (see tools/recording.py), each on one of
    the three event ``topics`` at random and keyed by its source event's user, ready for
    `tastegraph replay`; ``mutation`` says what was done to it."""
    from stream.validation import encode_bytes

    rng = random.Random(f"invalid-{seed}")
    for how, raw in mutated_messages(events, n, seed):
        yield {
            "topic": rng.choice(topics),
            "key": f"fuzz-{rng.randrange(1000)}",
            **encode_bytes("value", raw),
            "timestamp": None,
            "mutation": how,
        }
