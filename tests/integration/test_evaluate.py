"""`tastegraph evaluate` end to end on the real Neo4j and the real encoder, on a tiny generated
data set: the JSON has the protocol's shape and the baselines equal an independent computation."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from tools.datagen import generate_dataset, write_jsonl_gz

pytestmark = pytest.mark.integration

K = 5
TEST_DAYS = 4


def _day(ts: str) -> Any:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC).date()


def _cooc(i: str, hist: set[str], buyers: dict[str, set[str]]) -> float:
    total = 0.0
    for j in hist:
        if j != i and buyers[i] and buyers[j]:
            total += len(buyers[i] & buyers[j]) / math.sqrt(len(buyers[i]) * len(buyers[j]))
    return total


def independent_baselines(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Protocol v1's two baselines written out from the protocol text, plain Python, no numpy.

    Ties at the cut-off may fall either way, so each metric comes as (worst case, best case).
    """
    rows = [(e["user_id"], e["item_id"], _day(e["ts"]), e["type"]) for e in events]
    items = sorted({r[1] for r in rows})
    last = max(r[2] for r in rows)
    first_test = last - timedelta(days=TEST_DAYS - 1)
    test_days = sorted({r[2] for r in rows if r[2] >= first_test})
    out: dict[str, list[list[tuple[float, float, float]]]] = {"popular": [], "cooccurrence": []}
    for d in test_days:
        seen: dict[str, set[str]] = defaultdict(set)
        buyers: dict[str, set[str]] = defaultdict(set)
        pop: dict[str, float] = defaultdict(float)
        for u, i, day, t in rows:
            if day >= d:
                continue
            seen[u].add(i)
            if t == "purchase":
                buyers[i].add(u)
                if day >= d - timedelta(days=30):
                    pop[i] += 1
        today: dict[str, set[str]] = defaultdict(set)
        for u, i, day, t in rows:
            if day == d and t == "purchase":
                today[u].add(i)
        for u in sorted(today):
            targets = today[u] - seen[u]
            if not seen[u] or not targets:
                continue
            cands = [i for i in items if i not in seen[u]]
            scores = {
                "popular": {i: pop[i] for i in cands},
                "cooccurrence": {i: _cooc(i, seen[u], buyers) for i in cands},
            }
            for name, sc in scores.items():
                out[name].append(_bounds(sc, targets))
    result: dict[str, Any] = {"pairs": len(out["popular"])}
    for name, vals in out.items():
        n = len(vals)
        result[name] = [
            (sum(v[0][c] for v in vals) / n, sum(v[1][c] for v in vals) / n) for c in range(3)
        ]
    return result


def _metrics(ranked: list[str], targets: set[str]) -> tuple[float, float, float]:
    hits = [1 if i in targets else 0 for i in ranked[:K]]
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    ideal = min(K, len(targets))
    idcg = sum(1 / math.log2(r + 2) for r in range(ideal))
    return (1.0 if any(hits) else 0.0, sum(hits) / ideal, dcg / idcg)


def _bounds(scores: dict[str, float], targets: set[str]) -> list[tuple[float, float, float]]:
    """Metrics with the items tied at the cut-off ordered worst (targets last) and best."""
    ordered = sorted(scores.items(), key=lambda kv: -kv[1])
    if len(ordered) <= K:
        ranked = [i for i, _ in ordered]
        return [_metrics(ranked, targets)] * 2
    cut = ordered[K - 1][1]
    above = [i for i, s in ordered if s > cut]
    tied = [i for i, s in ordered if s == cut]
    by_rank: list[list[str]] = []
    for targets_first in (False, True):
        tied_sorted = sorted(tied, key=lambda i: (i in targets) != targets_first)
        groups = sorted(above, key=lambda i: -scores[i])
        by_rank.append(groups + tied_sorted)
    worst, best = (_metrics(r, targets) for r in by_rank)
    return [worst, best]


def test_evaluate_json_shape_and_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_graph: Any
) -> None:
    items, events = generate_dataset(
        5000, seed=11, users=60, items=150, days=16, embedded_share=1.0
    )
    write_jsonl_gz(tmp_path / "events.jsonl.gz", events)
    write_jsonl_gz(tmp_path / "items.jsonl.gz", items)
    args = [
        "evaluate",
        "--events", str(tmp_path / "events.jsonl.gz"),
        "--items", str(tmp_path / "items.jsonl.gz"),
        "--test-days", str(TEST_DAYS),
        "-k", str(K),
        "--json",
        "--no-progress",
    ]  # fmt: skip
    code = main([*args, "--report", str(tmp_path / "report")])
    assert code == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["protocol"] == "v1" and figures["k"] == K
    names = [
        "popular",
        "cooccurrence",
        "ease",
        "content",
        "profile",
        "collaborative",
        "co_engaged",
        "blend",
    ]
    assert list(figures["strategies"]) == names
    ndcg = {name: m[f"ndcg@{K}"] for name, m in figures["strategies"].items()}
    assert ndcg[figures["best_baseline"]] == max(ndcg[n] for n in names[:3])
    for m in figures["strategies"].values():
        assert set(m) == {f"hr@{K}", f"recall@{K}", f"ndcg@{K}"}
        assert all(0.0 <= v <= 1.0 for v in m.values())
    expected = independent_baselines(events)
    assert figures["pairs"] == expected["pairs"] > 10
    for name in ("popular", "cooccurrence"):
        got = figures["strategies"][name]
        for key, (low, high) in zip(("hr", "recall", "ndcg"), expected[name], strict=True):
            # equal when no target ties at the cut-off; the tool rounds to 4 digits
            assert low - 6e-5 <= got[f"{key}@{K}"] <= high + 6e-5, (name, key, low, high)
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.count("<svg") == 5
    data = json.loads((tmp_path / "report" / "figures.json").read_text())
    assert data["figures"] == figures
    # deterministic: a second run on the same input gives the very same figures
    saved = tmp_path / "components.jsonl.gz"
    assert main([*args, "--save-components", str(saved)]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again == figures
    # the saved components reproduce the blend offline, and other weights score differently
    assert main(["tune-blend", str(saved), "--grid", "co_engaged=0", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rows[0]["weights"]["co_engaged"] > 0
    assert rows[0]["ndcg"] == {saved.name: figures["strategies"]["blend"][f"ndcg@{K}"]}
    assert [r["weights"]["co_engaged"] for r in rows[1:]] == [0.0]
    # each other weight set with the bootstrap interval of its gain over the configured
    ci = rows[1]["gain_ci"][saved.name]
    assert ci["lower"] <= ci["gain"] <= ci["upper"]
    assert ci["gain"] == pytest.approx(
        rows[1]["ndcg"][saved.name] - rows[0]["ndcg"][saved.name], abs=1e-4
    )
    assert "gain_ci" not in rows[0]
    # new arrivals: a seeded share of the items, pairs scored on them only
    assert main([*args, "--new-items", "0.3", "--seed", "1"]) == 0
    fresh = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    launched = round(0.3 * len({e["item_id"] for e in events}))
    assert fresh["new_items"] == {"share": 0.3, "seed": 1, "launched": launched}
    assert 0 < fresh["pairs"] < figures["pairs"]
    assert list(fresh["strategies"]) == names
