"""The read side of the graph: recommendation strategies and the other queries of the catalogue.

Strengths are stored as of their ``last_ts``; every query decays them to ``now`` in Cypher. ``now``
defaults to the wall clock; tests and the offline evaluation pass event time.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np

from graph import queries as q
from graph.fold import DAY_S, day_of
from graph.refresh import CO_ENGAGED_REVERSE
from graph.scoring import (
    DEFAULT_BLEND,
    Scored,
    blend,
    blend_inputs,
    blend_needs,
    blend_scaled,
    cap_categories,
    topped_up,
)

if TYPE_CHECKING:
    from graph.store import InterestParams

STRATEGIES = ("content", "profile", "collaborative", "co_engaged", "blend")
STRATEGY_QUERIES = {
    "content": q.RECOMMEND_CONTENT,
    "profile": q.RECOMMEND_PROFILE,
    "collaborative": q.RECOMMEND_COLLABORATIVE,
    "co_interest": q.RECOMMEND_CO_INTEREST,
    "co_engaged": q.RECOMMEND_CO_ENGAGED,
    "co_engaged_in": q.RECOMMEND_CO_ENGAGED_IN,
    "co_similar": q.RECOMMEND_CO_SIMILAR,
    "popular": q.RECOMMEND_POPULAR,
    "discovery": q.RECOMMEND_DISCOVERY,
}
CO_INTEREST_NEIGHBOURS = 200  # users who share the most items with the user
CO_INTEREST_SHRINKAGE = 10.0  # mean shared items at which co-interest gets half its weight
CONTENT_HISTORY = 50  # the user's strongest items that vote in the content score
CONTENT_SHARPEN = 3.0  # content votes are cos^3: close neighbours outvote many loose ones
CONTENT_EVIDENCE = 5.0  # voting items at which a fully text-following history gets half weight
CO_ENGAGED_INBOUND = 100  # co_engaged_in: the best lists holding each of the user's items
BLEND_FETCH = 200  # candidates per blend component (the normalisation's reference list)


class GraphReads:
    def __init__(self, driver: Any, database: str, params: InterestParams) -> None:
        self._driver = driver
        self._database = database
        self._params = params

    def _session(self) -> AbstractContextManager[Any]:
        return self._driver.session(database=self._database)

    def _read(self, query: str, now: float | None = None, **params: Any) -> list[dict[str, Any]]:
        params["now"] = time.time() if now is None else float(now)
        params["half_life"] = self._params.half_life_s
        records, _, _ = self._driver.execute_query(
            query, parameters_=params, database_=self._database, routing_="r"
        )
        return [dict(r) for r in records]

    def _ranked(self, query: str, now: float | None, **params: Any) -> list[Scored]:
        rows = self._read(query, now, **params)
        return [Scored(r["item_id"], float(r["score"]), r["category"]) for r in rows]

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        strategy: str = "blend",
        weights: Mapping[str, float] | None = None,
        category_cap: int = 0,
        now: float | None = None,
        exclude_seen: bool = False,
        exclude_purchased: bool = True,
    ) -> list[Scored]:
        """Top-k items for a user (see ``STRATEGIES``), leaving out what they purchased unless
        ``exclude_purchased`` is false.

        ``exclude_seen``: also leave out every item the user interacted with in any way.
        """
        ranked = self.recommend_many(
            user_id,
            k,
            [strategy],
            weights,
            category_cap,
            now,
            exclude_seen,
            exclude_purchased=exclude_purchased,
        )
        return ranked[strategy]

    def recommend_many(
        self,
        user_id: str,
        k: int = 10,
        strategies: Iterable[str] = STRATEGIES,
        weights: Mapping[str, float] | None = None,
        category_cap: int = 0,
        now: float | None = None,
        exclude_seen: bool = False,
        exclude_count: int = 0,
        exclude_purchased: bool = True,
        within: Collection[str] | None = None,
        parts_out: dict[str, list[Scored]] | None = None,
    ) -> dict[str, list[Scored]]:
        """``recommend`` for several strategies at once; each component query runs once.

        ``exclude_count`` (how many items the caller will filter out) deepens the candidate lists.
        ``within``: rank only these items (``None``: all), e.g. the new arrivals.
        ``parts_out``: receives the blend's component lists as the blend saw them (for choosing
        weights offline: `tastegraph evaluate --save-components`).
        """
        names = list(strategies)
        for strategy in names:
            if strategy not in STRATEGIES:
                raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        w = DEFAULT_BLEND if weights is None else weights
        needed = {s for s in names if s != "blend"}
        if "blend" in names:
            needed |= blend_needs(w) & set(STRATEGY_QUERIES)
            if parts_out is not None:  # every blend component, for weights chosen offline
                needed |= {name for name in STRATEGY_QUERIES if name in DEFAULT_BLEND}
        fetch = max(BLEND_FETCH if "blend" in names else 50, 5 * k)
        params = {
            "user_id": user_id,
            "fetch": fetch,
            "candidates": fetch + max(0, exclude_count) + 50,
            "exclude_seen": exclude_seen,
            "exclude_purchased": exclude_purchased or exclude_seen,
            "neighbours": CO_INTEREST_NEIGHBOURS,
            "shrinkage": CO_INTEREST_SHRINKAGE,
            "history": CONTENT_HISTORY,
            "sharpen": CONTENT_SHARPEN,
            "evidence": CONTENT_EVIDENCE,
            "within": None if within is None else sorted(within),
            "inbound": CO_ENGAGED_INBOUND,
            "reverse": CO_ENGAGED_REVERSE,
        }
        parts = {
            name: self._ranked(STRATEGY_QUERIES[name], now, **params)
            for name in STRATEGY_QUERIES
            if name in needed
        }
        if "content" in names and not parts["content"]:  # no text neighbour yet: cold start
            profile = parts.get("profile")
            if profile is None:
                profile = self._ranked(STRATEGY_QUERIES["profile"], now, **params)
            parts["content"] = topped_up([], profile, k + max(0, exclude_count))
        blended = blend_inputs(parts, w)
        if parts_out is not None and "blend" in names:
            parts_out.update({n: parts[n] for n in parts if n in DEFAULT_BLEND})
        out = {}
        for strategy in names:
            ranked = blend_scaled(blended, w) if strategy == "blend" else parts[strategy]
            out[strategy] = cap_categories(ranked, k, category_cap)
        return out

    def explain(self, user_id: str, item_id: str, now: float | None = None) -> dict[str, Any]:
        """The paths and scores that connect a user to an item: direct interest, the content
        score (the votes of the user's strongest items through item similarity; their sum ranks
        ``content``) and the profile's cosine, the similar users' contributions (their sum is the
        collaborative score), the item's decayed popularity and discovery popularity, the
        category interest and similar items the user likes; the co-engaged score with each of the
        user's items engaged together with it (their CO_ENGAGED similarity, its share of the
        mean)."""
        ids = {"user_id": user_id, "item_id": item_id}
        direct = self._read(q.EXPLAIN_DIRECT, now, **ids)
        emb = self._read(q.EXPLAIN_NODES, now, **ids)[0]
        content = None
        if (
            emb["user_embedding"] is not None
            and emb["item_embedding"] is not None
            and emb["user_version"] == emb["item_version"]
        ):
            content = float(np.dot(emb["user_embedding"], emb["item_embedding"]))
        via_users = self._read(q.EXPLAIN_SIMILAR_USERS, now, **ids)
        votes = self._read(
            q.EXPLAIN_CONTENT, now, history=CONTENT_HISTORY, sharpen=CONTENT_SHARPEN, **ids
        )
        co_engaged = [
            {
                "item_id": v["item_id"],
                "similarity": v["similarity"],
                "contribution": v["contribution"],
                "via": "co_engaged_in" if v["from_item"] else "co_engaged",
            }
            for v in self._read(
                q.EXPLAIN_CO_ENGAGED,
                now,
                history=CONTENT_HISTORY,
                reverse=CO_ENGAGED_REVERSE,
                **ids,
            )
        ]
        edge = None
        if direct:
            props = direct[0]["props"]
            counts = {k[2:]: v for k, v in sorted(props.items()) if k.startswith("n_")}
            edge = {
                "strength": direct[0]["strength"],
                "last_ts": props["last_ts"],
                "first_ts": props["first_ts"],
                "counts": counts,
            }
        return {
            "user_id": user_id,
            "item_id": item_id,
            "user_exists": emb["user_exists"],
            "item_exists": emb["item_exists"],
            "purchased": bool(edge and edge["counts"].get("purchase", 0) > 0),
            "interest": edge,
            "content_similarity": content,
            "content_score": sum(v["contribution"] for v in votes),
            "content_votes": votes,
            "collaborative_score": sum(u["contribution"] for u in via_users),
            "co_engaged_score": sum(v["contribution"] for v in co_engaged),
            "co_engaged_votes": co_engaged,
            "popularity": emb["popularity"],
            "discovery": emb["discovery"],
            "similar_users": via_users,
            "categories": self._read(q.EXPLAIN_CATEGORY, now, **ids),
            "similar_items": self._read(q.EXPLAIN_SIMILAR_ITEMS, now, **ids),
        }

    def similar_users(self, user_id: str, k: int = 10) -> list[dict[str, Any]]:
        return self._read(q.SIMILAR_USERS, user_id=user_id, k=k)

    def audience(
        self,
        category: str | None = None,
        item_id: str | None = None,
        k: int = 100,
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        """Users with the strongest interest, now, in a category or in an item (ad targeting)."""
        if (category is None) == (item_id is None):
            raise ValueError("audience needs exactly one of category or item_id")
        if category is not None:
            return self._read(q.AUDIENCE_CATEGORY, now, category=category, k=k)
        return self._read(q.AUDIENCE_ITEM, now, item_id=item_id, k=k)

    def cart_complements(
        self, item_ids: Iterable[str], k: int = 10, now: float | None = None, max_users: int = 500
    ) -> list[Scored]:
        """Items to add to a cart: what the users most interested in the cart's items also like
        (the ``max_users`` strongest), plus content similarity at half weight."""
        ids = sorted(set(item_ids))
        fetch = max(50, 5 * k)
        parts = {
            "co_interest": self._ranked(
                q.CART_CO_INTEREST, now, item_ids=ids, fetch=fetch, max_users=max_users
            ),
            "similar": self._ranked(q.CART_SIMILAR_ITEMS, now, item_ids=ids, fetch=fetch),
        }
        return blend(parts, {"co_interest": 1.0, "similar": 0.5})[:k]

    def interest_trends(
        self, user_id: str, now: float | None = None, window_days: int = 7
    ) -> list[dict[str, Any]]:
        """Per category: event weight in the last ``window_days`` against the window before."""
        t = time.time() if now is None else float(now)
        if window_days < 1 or 2 * window_days > self._params.trend_days:
            raise ValueError(f"window_days must be in 1..{self._params.trend_days // 2}")
        return self._read(
            q.INTEREST_TRENDS, t, user_id=user_id, today=day_of(t), window_days=window_days
        )

    def churn_risk(
        self,
        threshold: float,
        inactive_days: float,
        now: float | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Users inactive for ``inactive_days`` whose total interest now is below ``threshold``."""
        return self._read(
            q.CHURN_RISK, now, threshold=threshold, inactive_s=inactive_days * DAY_S, limit=limit
        )
