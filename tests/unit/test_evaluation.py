"""Protocol v1's pure parts: day split, pairs, metrics, the two baselines, the runner's schedule."""

from __future__ import annotations

import math
import random
from datetime import date

import numpy as np
import pytest

from evaluation.baselines import Baselines, top_k
from evaluation.metrics import Outcome, hit_ranks, pair_metrics, score_at, summarise
from evaluation.protocol import (
    Interaction,
    SeenIndex,
    day_pairs,
    day_start,
    parse_ts,
    split_days,
)
from evaluation.report import render_report
from evaluation.runner import Evaluation, evaluate
from graph.model import ItemRecord

DAY = 86400.0
KINDS = ("purchase", "click")
ALL = {"popular", "cooccurrence", "content", "collaborative", "blend"}


def ev(user: str, item: str, day: int, kind: str = "purchase", hour: int = 12) -> Interaction:
    return Interaction(user, item, day * DAY + hour * 3600.0, kind)


def test_parse_ts_naive_iso_is_utc_and_numbers_are_epoch() -> None:
    assert parse_ts("1970-01-02T00:00:00") == DAY
    assert parse_ts("1970-01-02T00:00:00Z") == DAY
    assert parse_ts("1970-01-02T01:00:00+01:00") == DAY
    assert parse_ts(12.5) == 12.5
    with pytest.raises(ValueError):
        parse_ts(True)


def test_split_takes_the_last_calendar_days_and_skips_empty_ones() -> None:
    events = [ev("a", "x", d) for d in (0, 1, 5, 7, 9)]
    split = split_days(events, test_days=4)  # calendar days 6..9: only 7 and 9 have events
    assert split.test_days == (date(1970, 1, 8), date(1970, 1, 10))
    assert split.history_days(date(1970, 1, 8)) == [
        date(1970, 1, 1),
        date(1970, 1, 2),
        date(1970, 1, 6),
    ]
    assert day_start(date(1970, 1, 8)) == 7 * DAY


def test_pairs_targets_are_new_purchases_of_users_with_history() -> None:
    seen = {"a": {"x"}, "b": {"y"}}
    today = [
        ev("a", "x", 3),  # a re-buys x: not a target
        ev("a", "z", 3),
        ev("a", "w", 3, "click"),  # clicks are never targets
        ev("b", "y", 3),  # only a re-purchase: b is skipped
        ev("c", "z", 3),  # no history: skipped
    ]
    pairs = day_pairs(date(1970, 1, 4), today, seen)
    assert [(p.user_id, set(p.targets), set(p.seen)) for p in pairs] == [("a", {"z"}, {"x"})]


def test_pair_metrics_by_hand() -> None:
    m = pair_metrics(["a", "t1", "b", "t2"], {"t1", "t2", "t3"}, k=3)
    assert m.hr == 1.0 and m.hits == 1
    assert m.recall == pytest.approx(1 / 3)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg == pytest.approx((1 / math.log2(3)) / idcg)
    miss = pair_metrics(["a"], {"t"}, k=10)
    assert (miss.hr, miss.recall, miss.ndcg) == (0.0, 0.0, 0.0)
    assert pair_metrics(["t"], {"t"}, k=10).ndcg == 1.0  # ideal over min(K, |targets|)


def test_outcomes_give_the_same_metrics_at_every_cutoff() -> None:
    rng = random.Random(3)
    for _ in range(50):
        ranked = [f"i{n}" for n in rng.sample(range(30), 10)]
        targets = {f"i{n}" for n in rng.sample(range(30), rng.randint(1, 5))}
        o = Outcome(0, len(targets), hit_ranks(ranked, targets))
        for k in (1, 3, 10):
            assert score_at(o, k) == pair_metrics(ranked, targets, k)


def test_top_k_never_returns_excluded_and_orders_best_first() -> None:
    scores = np.array([0.0, 5.0, 3.0, 9.0, 1.0])
    assert top_k(scores, [3], 3) == [1, 2, 4]
    assert top_k(scores, [], 10) == [3, 1, 2, 4, 0]


def _baselines_for(events: list[Interaction], d: int) -> Baselines:
    b = Baselines({e.item_id for e in events}, {e.user_id for e in events})
    split = split_days(events, 1)
    for day in split.days:
        if day < date.fromordinal(date(1970, 1, 1).toordinal() + d):
            b.add_day(day, split.by_day[day])
    b.prepare(date.fromordinal(date(1970, 1, 1).toordinal() + d))
    return b


def test_popular_counts_purchases_of_the_30_days_before_d() -> None:
    events = [ev("u", "old", 0)] * 5 + [ev("u", "new", 40), ev("v", "new", 41)]
    events += [ev("w", "mid", 35, "click")] * 9 + [ev("u", "x", 50)]  # clicks do not count
    b = _baselines_for(events, 42)  # window: days 12..41
    assert b.popular([], 3)[:1] == ["new"]
    assert "old" not in b.popular([], 2)
    assert b.popular([b.item_index["new"]], 1) != ["new"]


def test_cooccurrence_equals_the_dense_definition() -> None:
    rng = random.Random(7)
    users = [f"u{n}" for n in range(25)]
    items = [f"i{n}" for n in range(15)]
    events = [
        ev(
            rng.choice(users),
            rng.choice(items),
            rng.randrange(10),
            rng.choice(["purchase", "click"]),
        )
        for _ in range(200)
    ]
    b = _baselines_for(events, 10)
    bought = {(e.user_id, e.item_id) for e in events if e.type == "purchase"}
    buyers = {i: {u for u in users if (u, i) in bought} for i in items}
    for user in users[:8]:
        hist = sorted({e.item_id for e in events if e.user_id == user})
        dense = {}
        for i in items:
            total = 0.0
            for j in hist:
                if i == j or not buyers[i] or not buyers[j]:
                    continue
                total += len(buyers[i] & buyers[j]) / math.sqrt(len(buyers[i]) * len(buyers[j]))
            dense[i] = total
        got = b.cooccurrence_scores(b.history_indices(hist))
        for i in items:
            if i not in hist:
                assert got[b.item_index[i]] == pytest.approx(dense[i]), (user, i)
        ranked = b.cooccurrence(b.history_indices(hist), 5)
        assert not set(ranked) & set(hist)
        assert [dense[i] for i in ranked] == sorted((dense[i] for i in ranked), reverse=True)


def test_seen_index_collects_every_type() -> None:
    s = SeenIndex()
    s.add([ev("a", "x", 0, "click"), ev("a", "y", 0, "return")])
    assert s.items["a"] == {"x", "y"}


class FakeGraph:
    """Ranks by how many distinct users touched an item; records what it was given when."""

    def __init__(self) -> None:
        self.events: list[Interaction] = []
        self.asked: list[tuple[str, float, float]] = []  # user, now, latest event ts applied
        self.items: list[ItemRecord] = []

    def load_items(self, items: list[ItemRecord]) -> None:
        self.items = list(items)

    def apply(self, events: list[Interaction]) -> None:
        self.events.extend(events)

    def rank(self, pair, strategies, k, now, within=None):  # type: ignore[no-untyped-def]
        self.asked.append((pair.user_id, now, max(e.ts for e in self.events)))
        users: dict[str, set[str]] = {}
        for e in self.events:
            users.setdefault(e.item_id, set()).add(e.user_id)
        order = sorted(users, key=lambda i: (-len(users[i]), i))
        return {s: order for s in strategies}


def test_evaluate_asks_before_applying_each_day_and_reports_the_protocol_shape() -> None:
    events = []
    for d in range(12):
        for n in range(6):
            events.append(ev(f"u{(d + n) % 5}", f"i{(d * 3 + n) % 9}", d, hour=n))
    fake = FakeGraph()
    result = evaluate(events, [ItemRecord("i0", "x")], k=3, test_days=4, graph=fake)
    fig = result.figures()
    assert fig["protocol"] == "v1" and fig["k"] == 3 and fig["pairs"] == result.pairs > 0
    assert set(fig["strategies"]) == {
        "popular",
        "cooccurrence",
        "ease",
        "content",
        "profile",
        "collaborative",
        "co_engaged",
        "blend",
    }
    assert set(fig["strategies"]["blend"]) == {"hr@3", "recall@3", "ndcg@3"}
    for _, now, latest in fake.asked:
        assert latest < now  # the graph held only events before the day when asked
    assert len(fake.events) == len(events)
    assert fake.items and result.test_days[0] == date(1970, 1, 9)
    # the graph's lists are filtered of seen items, like the baselines' lists
    assert all(len(o.hit_ranks) <= 3 for o in result.outcomes["blend"])


def test_evaluate_without_graph_runs_only_baselines() -> None:
    events = [ev(f"u{n % 3}", f"i{n % 7}", n // 4, hour=n % 4) for n in range(80)]
    result = evaluate(events, [], k=5, test_days=5, strategies=("popular", "cooccurrence"))
    assert list(result.figures()["strategies"]) == ["popular", "cooccurrence"]
    with pytest.raises(ValueError):
        evaluate(events, [], strategies=("blend",))


def test_report_is_self_contained_html_with_plots() -> None:
    result = Evaluation(
        k=2, test_days=[date(2020, 1, 1), date(2020, 1, 2)], strategies=["popular", "blend"]
    )
    result.outcomes = {
        "popular": [Outcome(0, 1, (1,)), Outcome(1, 2, ())],
        "blend": [Outcome(0, 1, (0,)), Outcome(1, 2, (0, 1))],
    }
    page = render_report(result, title="<data>")
    assert page.startswith("<!doctype html>") and "&lt;data&gt;" in page
    assert page.count("<svg") == 5 and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    assert summarise(result.outcomes["blend"], 2).target_share == 1.0
