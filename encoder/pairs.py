"""Item-to-item training pairs for the ``vote`` objective: pure code, no torch.

The graph's ``content`` strategy lets every item of a user's history vote for its text neighbours,
so what the encoder should learn is "item ``j`` is close to the items bought after or with ``j``".
From the labelled examples (`encoder.examples.Example`) two kinds of co-engagement pairs come out:

* history -> next: each context item of an example (the user's earlier items) with the chosen item;
* together: the items chosen in one basket (same user and timestamp), each with the next one of
  the basket (a ring, so a basket of n items gives n pairs, not n^2).

Where items have categories, each pair gets a hard negative: another item of the positive's
category (neither the anchor nor the positive), which the anchor must score below the positive;
"same category" is what the untuned encoder already rewards, so these negatives teach what within
a category goes together.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from encoder.examples import CONTEXT_SEP, Example


@dataclass(frozen=True, slots=True)
class ItemPair:
    anchor_id: str
    anchor_text: str
    item_id: str
    item_text: str
    negative_id: str = ""
    negative_text: str = ""

    def ids(self) -> tuple[str, ...]:
        """Every item id the pair puts into a batch."""
        if self.negative_id:
            return (self.anchor_id, self.item_id, self.negative_id)
        return (self.anchor_id, self.item_id)


def _context_items(ex: Example, texts: Mapping[str, str] | None) -> list[tuple[str, str]]:
    parts = [t for t in ex.context.split(CONTEXT_SEP) if t]
    if len(parts) != len(ex.context_ids):  # a text holding the separator: fall back to the map
        parts = [texts.get(i, "") if texts else "" for i in ex.context_ids]
    out = []
    for item_id, text in zip(ex.context_ids, parts, strict=True):
        text = texts.get(item_id, text) if texts else text
        if text:
            out.append((item_id, text))
    return out


def co_engagement_pairs(
    examples: Iterable[Example],
    *,
    texts: Mapping[str, str] | None = None,
    together: bool = True,
) -> list[ItemPair]:
    """History -> next pairs of every example, then (with ``together``) the basket ring pairs.

    ``texts`` (item id -> text) overrides the texts stored in the examples (the catalogue's newer
    text wins). Pairs of an item with itself are never made.
    """
    pairs: list[ItemPair] = []
    baskets: dict[tuple[str, float], list[tuple[str, str]]] = {}
    for ex in examples:
        item_text = texts.get(ex.item_id, ex.item_text) if texts else ex.item_text
        for anchor_id, anchor_text in _context_items(ex, texts):
            if anchor_id != ex.item_id:
                pairs.append(ItemPair(anchor_id, anchor_text, ex.item_id, item_text))
        if together:
            basket = baskets.setdefault((ex.user_id, ex.ts), [])
            if all(i != ex.item_id for i, _ in basket):
                basket.append((ex.item_id, item_text))
    for basket in baskets.values():
        if len(basket) < 2:
            continue
        for n, (anchor_id, anchor_text) in enumerate(basket):
            item_id, item_text = basket[(n + 1) % len(basket)]
            if len(basket) == 2 and n == 1:
                break  # a basket of two is one pair, not the same pair twice
            pairs.append(ItemPair(anchor_id, anchor_text, item_id, item_text))
    return pairs


def with_hard_negatives(
    pairs: Sequence[ItemPair],
    categories: Mapping[str, str],
    texts: Mapping[str, str],
    rng: random.Random,
) -> list[ItemPair]:
    """Each pair with a random other item of its positive's category (``categories``: item id ->
    category; ``texts``: item id -> text of the candidates). A pair whose positive has no category,
    or whose category holds no other item with a text, keeps no negative."""
    members: dict[str, list[str]] = {}
    for item_id, category in sorted(categories.items()):
        if category and item_id in texts:
            members.setdefault(category, []).append(item_id)
    out: list[ItemPair] = []
    for pair in pairs:
        pool = members.get(categories.get(pair.item_id, ""), [])
        negative = ""
        for _ in range(4):  # a few draws: the pool may be mostly the pair's own two items
            if len(pool) < 2:
                break
            cand = pool[rng.randrange(len(pool))]
            if cand not in (pair.item_id, pair.anchor_id):
                negative = cand
                break
        out.append(
            replace(pair, negative_id=negative, negative_text=texts[negative]) if negative else pair
        )
    return out
