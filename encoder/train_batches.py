"""Training batches for in-batch negatives: shuffled, endless, and no item twice in one batch
(a repeated item would be its own negative). Pure code: no torch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from encoder.examples import Example
from encoder.pairs import ItemPair

T = TypeVar("T")


def distinct_batches(
    elements: Sequence[T],
    batch_size: int,
    rng: random.Random,
    keys: Callable[[T], Iterable[str]],
) -> Iterator[list[T]]:
    """Endless shuffled batches in which no key (``keys(element)``) appears twice.

    Elements that clash with a batch wait for a later one of the same epoch; reshuffled each epoch.
    """
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 (in-batch negatives)")
    order = list(elements)
    while True:
        rng.shuffle(order)
        remaining = order
        yielded = False
        while len(remaining) >= 2:
            leftovers: list[T] = []
            batch: list[T] = []
            seen: set[str] = set()
            progressed = False
            for el in remaining:
                ks = tuple(keys(el))
                if any(k in seen for k in ks) or len(set(ks)) < len(ks):
                    leftovers.append(el)
                    continue
                batch.append(el)
                seen.update(ks)
                if len(batch) == batch_size:
                    yield batch
                    progressed = True
                    batch, seen = [], set()
            if len(batch) >= 2:
                yield batch
                progressed = True
            if not progressed:
                break
            yielded = True
            remaining = leftovers
        if not yielded:
            raise ValueError("fewer than 2 elements with distinct keys")


def distinct_item_batches(
    examples: Sequence[Example], batch_size: int, rng: random.Random
) -> Iterator[list[Example]]:
    """Endless shuffled batches in which no item and no context appears twice.

    A repeated item would be its own negative; a repeated context (the lines of one basket share
    it) would be asked to pick two different items at once, which pulls every score together.
    """
    return distinct_batches(
        examples, batch_size, rng, lambda ex: ("i:" + ex.item_id, "c:" + ex.context)
    )


def distinct_pair_batches(
    pairs: Sequence[ItemPair], batch_size: int, rng: random.Random
) -> Iterator[list[ItemPair]]:
    """Endless shuffled batches of item pairs in which no item appears twice, on either side or
    as a negative: an anchor that is another row's positive would be a false negative at cosine 1,
    and an anchor asked twice would have to pick two items at once."""
    return distinct_batches(pairs, batch_size, rng, ItemPair.ids)
