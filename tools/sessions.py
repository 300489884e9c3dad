"""The generated shop's events (`tools.datagen`): sessions spread over the days (evening-heavy),
each a funnel in one category (browse -> click -> add to cart -> purchase, a few returns days
later), drawn from a user's tastes at that time; sorted by ``ts``. Pure and seeded.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
import time
from collections.abc import Iterator
from typing import Any

from tools.shop import (
    CATEGORIES,
    DAY,
    DatasetConfig,
    Shop,
    UserTaste,
    generate_items,
    generate_users,
)
from tools.vocabulary import VOCABULARY

# evening-heavy shopping: relative weight of each hour of the day (UTC)
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 6, 5, 5, 6, 7, 9, 10, 10, 8, 5, 2)


def _events_per_session(cfg: DatasetConfig) -> float:
    per_browse = 1 + cfg.p_click * (1 + cfg.p_cart * (1 + cfg.p_purchase * (1 + cfg.p_return)))
    return _MEAN_BROWSES * per_browse


_MEAN_BROWSES = 2.0  # 1 + geometric(1/2), capped at 12


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


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
    shop = Shop(cfg, items, rng)
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
    shop: Shop,
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
