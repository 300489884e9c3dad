"""The generated shop (`tools.datagen`): the knobs of a data set (`DatasetConfig`), the catalogue
(`generate_items`, `Shop`'s per-category pools with Zipf-like popularity and brand-new items on
demand) and the customers with hidden tastes (`generate_users`). Pure and seeded.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import Any

from tools.vocabulary import VOCABULARY

DAY = 86400.0
DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

CATEGORIES: tuple[str, ...] = tuple(VOCABULARY)
EVENT_TYPES = ("browse", "click", "add_to_cart", "purchase", "return")


@dataclass(frozen=True)
class DatasetConfig:
    users: int = 1000
    items: int = 2000
    days: int = 60
    events: int = 100_000
    seed: int = 0
    start: float = DEFAULT_START  # epoch seconds of the first day
    text_share: float = 0.2  # sessions whose first browse carries a search query
    drift_share: float = 0.5  # users whose favourite categories drift
    revisit_share: float = 0.25  # browses of an item the user saw before
    brand_loyalty: float = 0.4  # sessions that browse only the user's favourite brand
    p_click: float = 0.45
    p_cart: float = 0.35
    p_purchase: float = 0.6
    p_return: float = 0.06
    #: share of events on catalogue items ("already embedded"); the rest are on brand-new items
    #: (ids ``new-<seed>-<n>``), which always carry title, category and description
    embedded_share: float = 1.0
    #: copy title, category and description into every event
    item_fields: bool = False


@dataclass(frozen=True)
class UserTaste:
    """A user's hidden tastes: category weights before and after a drift window."""

    user_id: str
    before: tuple[float, ...]
    after: tuple[float, ...]
    drift_start: float
    drift_end: float
    activity: float
    brands: tuple[int, ...] = ()  # the favourite brand (index into its brands) per category

    def brand(self, category: str) -> str:
        """The user's favourite brand in ``category``."""
        return VOCABULARY[category][0][self.brands[CATEGORIES.index(category)]]

    def at(self, ts: float) -> tuple[float, ...]:
        if ts <= self.drift_start or self.before is self.after:
            return self.before
        if ts >= self.drift_end:
            return self.after
        a = (ts - self.drift_start) / (self.drift_end - self.drift_start)
        return tuple((1 - a) * b + a * f for b, f in zip(self.before, self.after, strict=True))

    def favourites(self, ts: float, n: int = 2) -> list[str]:
        weights = self.at(ts)
        order = sorted(range(len(weights)), key=lambda i: -weights[i])
        return [CATEGORIES[i] for i in order[:n]]


def make_item(rng: random.Random, item_id: str, category: str) -> dict[str, Any]:
    brands, styles, materials, nouns, uses = VOCABULARY[category]
    brand, style, material, noun = (rng.choice(v) for v in (brands, styles, materials, nouns))
    shape = rng.randrange(3)
    if shape == 0:
        title = f"{brand} {style} {material} {noun}"
    elif shape == 1:
        title = f"{brand} {noun}, {material}, {style}"
    else:
        title = f"{style.capitalize()} {material} {noun} by {brand}"
    description = (
        f"{style.capitalize()} {noun} in {material} {rng.choice(uses)}. "
        f"{brand} {category} range, model {rng.randrange(100, 1000)}."
    )
    return {"item_id": item_id, "title": title, "category": category, "description": description}


def generate_items(cfg: DatasetConfig) -> list[dict[str, Any]]:
    """The catalogue: ``cfg.items`` items spread evenly over the categories."""
    rng = random.Random(f"items-{cfg.seed}")
    width = len(str(cfg.items))
    return [
        make_item(rng, f"i{n:0{width}d}", CATEGORIES[n % len(CATEGORIES)])
        for n in range(1, cfg.items + 1)
    ]


def _taste(rng: random.Random) -> tuple[float, ...]:
    k = len(CATEGORIES)
    favourites = rng.sample(range(k), rng.choice((1, 2, 2, 3)))
    weights = [0.04] * k
    for i in favourites:
        weights[i] += rng.gammavariate(2.0, 1.0)
    total = sum(weights)
    return tuple(w / total for w in weights)


def generate_users(cfg: DatasetConfig) -> list[UserTaste]:
    rng = random.Random(f"users-{cfg.seed}")
    width = len(str(cfg.users))
    end = cfg.start + cfg.days * DAY
    users = []
    for n in range(1, cfg.users + 1):
        before = _taste(rng)
        after, d0, d1 = before, end, end
        if rng.random() < cfg.drift_share:
            after = _taste(rng)
            d0 = cfg.start + rng.uniform(0.2, 0.7) * (end - cfg.start)
            d1 = d0 + rng.uniform(3, 14) * DAY
        activity = rng.lognormvariate(0.0, 0.8)
        brands = tuple(rng.randrange(len(VOCABULARY[c][0])) for c in CATEGORIES)
        users.append(UserTaste(f"u{n:0{width}d}", before, after, d0, d1, activity, brands))
    return users


class Shop:
    """Per-category item pools with Zipf-like popularity, and brand-new items on demand."""

    def __init__(self, cfg: DatasetConfig, items: list[dict[str, Any]], rng: random.Random):
        self.cfg = cfg
        self.rng = rng
        self.by_id = {it["item_id"]: it for it in items}
        # pools by category, and by (category, brand): ids in popularity order, cumulative weights
        self.pools: dict[Any, tuple[list[str], list[float]]] = {}
        for category in CATEGORIES:
            ids = [it["item_id"] for it in items if it["category"] == category]
            rng.shuffle(ids)
            self.pools[category] = (ids, _zipf(len(ids)))
            for brand in VOCABULARY[category][0]:
                of_brand = [i for i in ids if brand in self.by_id[i]["title"]]
                self.pools[category, brand] = (of_brand, _zipf(len(of_brand)))
        self.new_items = 0

    def pick(self, category: str, brand: str | None = None) -> dict[str, Any]:
        """A popular item of ``category`` (of ``brand`` when given and the catalogue has one)."""
        ids, cum = self.pools[category]
        if brand is not None and self.pools[category, brand][0]:
            ids, cum = self.pools[category, brand]
        if not ids or (
            self.cfg.embedded_share < 1 and self.rng.random() >= self.cfg.embedded_share
        ):
            self.new_items += 1
            item_id = f"new-{self.cfg.seed}-{self.new_items}"
            item = make_item(self.rng, item_id, category)
            self.by_id[item_id] = item
            return item
        return self.by_id[ids[bisect.bisect(cum, self.rng.random() * cum[-1])]]


def _zipf(n: int) -> list[float]:
    return list(itertools.accumulate(1.0 / (r + 1) ** 0.9 for r in range(n)))
