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
items are ``{item_id, title, category, description}``.
"""

from __future__ import annotations

import bisect
import gzip
import heapq
import itertools
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tools.vocabulary import VOCABULARY

DAY = 86400.0
DEFAULT_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

CATEGORIES: tuple[str, ...] = tuple(VOCABULARY)
EVENT_TYPES = ("browse", "click", "add_to_cart", "purchase", "return")

# evening-heavy shopping: relative weight of each hour of the day (UTC)
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 6, 5, 5, 6, 7, 9, 10, 10, 8, 5, 2)


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


# --- items ----------------------------------------------------------------------------------------


def _make_item(rng: random.Random, item_id: str, category: str) -> dict[str, Any]:
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
        _make_item(rng, f"i{n:0{width}d}", CATEGORIES[n % len(CATEGORIES)])
        for n in range(1, cfg.items + 1)
    ]


# --- users ----------------------------------------------------------------------------------------


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


# --- events ---------------------------------------------------------------------------------------


def _events_per_session(cfg: DatasetConfig) -> float:
    per_browse = 1 + cfg.p_click * (1 + cfg.p_cart * (1 + cfg.p_purchase * (1 + cfg.p_return)))
    return _MEAN_BROWSES * per_browse


_MEAN_BROWSES = 2.0  # 1 + geometric(1/2), capped at 12


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class _Shop:
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
            item = _make_item(self.rng, item_id, category)
            self.by_id[item_id] = item
            return item
        return self.by_id[ids[bisect.bisect(cum, self.rng.random() * cum[-1])]]


def _zipf(n: int) -> list[float]:
    return list(itertools.accumulate(1.0 / (r + 1) ** 0.9 for r in range(n)))


def generate_events(
    cfg: DatasetConfig,
    items: list[dict[str, Any]] | None = None,
    users: list[UserTaste] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yields ``cfg.events`` events sorted by ``ts`` (lazily; memory stays small).

    The period is ``cfg.days`` days from ``cfg.start``; session rate is set so that the events
    fill it (the last events may run a little past its end). ``event_id`` is left empty: use
    `numbered` (or `iter_dataset`) to give ids in output order.
    """
    if cfg.users < 1 or cfg.events < 0 or cfg.days < 1:
        raise ValueError("a data set needs at least one user and one day")
    items = generate_items(cfg) if items is None else items
    users = generate_users(cfg) if users is None else users
    rng = random.Random(f"events-{cfg.seed}")
    shop = _Shop(cfg, items, rng)
    user_cum = list(itertools.accumulate(u.activity for u in users))
    hour_cum = list(itertools.accumulate(_HOUR_WEIGHTS))
    history: dict[str, list[str]] = {}
    sessions_per_day = cfg.events / _events_per_session(cfg) / max(cfg.days, 1)
    pending: list[tuple[float, int, dict[str, Any]]] = []
    seq = itertools.count()
    emitted = 0
    day = 0
    while emitted < cfg.events:
        # this day's sessions, in time order
        n_sessions = _poisson(rng, sessions_per_day)
        starts = sorted(
            cfg.start
            + day * DAY
            + 3600 * (bisect.bisect(hour_cum, rng.random() * hour_cum[-1]) + rng.random())
            for _ in range(n_sessions)
        )
        for t in starts:
            while pending and pending[0][0] <= t:
                yield heapq.heappop(pending)[2]
                emitted += 1
                if emitted >= cfg.events:
                    return
            user = users[bisect.bisect(user_cum, rng.random() * user_cum[-1])]
            for ts, event in _session(cfg, rng, shop, user, t, history):
                heapq.heappush(pending, (ts, next(seq), event))
        day += 1
    # unreachable: the loop returns once cfg.events are out


def _session(
    cfg: DatasetConfig,
    rng: random.Random,
    shop: _Shop,
    user: UserTaste,
    t: float,
    history: dict[str, list[str]],
) -> list[tuple[float, dict[str, Any]]]:
    cum = list(itertools.accumulate(user.at(t)))
    category = CATEGORIES[bisect.bisect(cum, rng.random() * cum[-1])]
    seen = history.setdefault(user.user_id, [])
    n_browse = 1
    while rng.random() < 0.5 and n_browse < 12:
        n_browse += 1
    out: list[tuple[float, dict[str, Any]]] = []

    def emit(etype: str, item: dict[str, Any], **extra: Any) -> None:
        nonlocal t
        t += rng.uniform(5, 90)
        event = {
            "event_id": "",
            "user_id": user.user_id,
            "item_id": item["item_id"],
            "type": etype,
            "ts": _iso(t),
            **extra,
        }
        if cfg.item_fields or item["item_id"].startswith("new-"):
            event.update(
                title=item["title"], category=item["category"], description=item["description"]
            )
        out.append((t, event))

    # brand-loyal sessions browse the user's favourite brand (a taste only the titles show)
    brand = user.brand(category) if user.brands and rng.random() < cfg.brand_loyalty else None
    query = None
    if rng.random() < cfg.text_share:
        _, styles, materials, nouns, _ = VOCABULARY[category]
        query = f"{rng.choice(styles + materials)} {rng.choice(nouns)}".lower()
        if brand is not None and rng.random() < 0.5:
            query = f"{brand.lower()} {query}"
    for b in range(n_browse):
        if seen and rng.random() < cfg.revisit_share:
            item = shop.by_id[rng.choice(seen)]
        else:
            item = shop.pick(category, brand)
            seen.append(item["item_id"])
            if len(seen) > 50:
                del seen[0]
        emit("browse", item, **({"text": query} if query and b == 0 else {}))
        if rng.random() >= cfg.p_click:
            continue
        emit("click", item)
        if rng.random() >= cfg.p_cart:
            continue
        emit("add_to_cart", item)
        if rng.random() >= cfg.p_purchase:
            continue
        emit("purchase", item)
        if rng.random() < cfg.p_return:
            # a return comes days later, outside the session
            saved = t
            t += rng.uniform(1, 10) * DAY
            emit("return", item)
            t = saved
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:  # normal approximation, plenty for session counts
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def numbered(cfg: DatasetConfig, events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Gives events their ids in output (time) order: ``g<seed>-<n>``."""
    for n, event in enumerate(events, 1):
        event["event_id"] = f"g{cfg.seed}-{n}"
        yield event


# --- entry points ---------------------------------------------------------------------------------


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
