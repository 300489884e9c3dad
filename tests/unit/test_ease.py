"""The ease baseline (evaluation/ease.py) against the protocol's formula computed naively."""

from __future__ import annotations

import numpy as np

from evaluation.ease import EASE_WEIGHTS, Ease
from evaluation.protocol import Interaction

TYPES = ("browse", "click", "add_to_cart", "purchase", "return")


def _events(seed: int, users: int = 30, items: int = 25, n: int = 400) -> list[Interaction]:
    rng = np.random.default_rng(seed)
    return [
        Interaction(f"u{rng.integers(users)}", f"i{rng.integers(items)}", float(t), TYPES[k])
        for t, k in enumerate(rng.integers(len(TYPES), size=n))
    ]


def _naive(events: list[Interaction], users: list[str], items: list[str], lam: float, keep: int):
    ui = {u: n for n, u in enumerate(sorted({e.user_id for e in events}))}
    ii = {i: n for n, i in enumerate(items)}
    r = np.zeros((len(ui), len(items)))
    for e in events:
        r[ui[e.user_id], ii[e.item_id]] += EASE_WEIGHTS[e.type]
    x = np.log1p(r)
    kept = np.argsort(-(r > 0).sum(0), kind="stable")[:keep]
    g = x[:, kept].T @ x[:, kept] + lam * np.eye(len(kept))
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    out = np.full((len(users), len(items)), -np.inf)
    out[:, kept] = x[[ui[u] for u in users]][:, kept] @ b
    return out


def test_scores_match_the_formula() -> None:
    events = _events(1)
    items = sorted({e.item_id for e in events})
    users = sorted({e.user_id for e in events})
    ease = Ease({i: n for n, i in enumerate(items)}, {u: n for n, u in enumerate(users)}, lam=2.0)
    ease.add(events[:200])
    ease.add(events[200:])
    ease.prepare()
    got = ease.scores(users[:7])
    want = _naive(events, users[:7], items, lam=2.0, keep=len(items))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_only_the_items_with_most_users_take_part() -> None:
    events = _events(2)
    items = sorted({e.item_id for e in events})
    users = sorted({e.user_id for e in events})
    ease = Ease(
        {i: n for n, i in enumerate(items)},
        {u: n for n, u in enumerate(users)},
        lam=5.0,
        max_items=10,
    )
    ease.add(events)
    ease.prepare()
    got = ease.scores(users[:5])
    want = _naive(events, users[:5], items, lam=5.0, keep=10)
    assert (np.isinf(got) == np.isinf(want)).all() and np.isinf(got).sum() == 5 * (len(items) - 10)
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-3, atol=1e-4)
