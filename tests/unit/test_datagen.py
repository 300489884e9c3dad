"""The generated data set: repeatable, valid under the event contract, and carrying the structure
it claims to plant (tastes, funnels, drift, search texts, new items)."""

from __future__ import annotations

import calendar
import gzip
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest

from config.settings import Settings
from stream.validation import event_from_mapping, item_from_mapping
from tools.datagen import generate_dataset, iter_dataset, write_dataset
from tools.fuzz import MUTATIONS, invalid_records, mutated_messages
from tools.recording import route
from tools.sessions import generate_events
from tools.shop import CATEGORIES, DAY, DatasetConfig, generate_items, generate_users

S = Settings()
CFG = DatasetConfig(users=200, items=400, days=30, events=20_000, seed=3)


def epoch(iso: str) -> float:
    return float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


@pytest.fixture(scope="module")
def dataset() -> tuple[list[dict], list[dict]]:
    items, events = iter_dataset(CFG)
    return items, list(events)


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    small = DatasetConfig(users=50, items=80, days=10, events=3000, seed=5)
    a = write_dataset(tmp_path / "a", small)
    b = write_dataset(tmp_path / "b", small)
    write_dataset(tmp_path / "c", DatasetConfig(**{**small.__dict__, "seed": 6}))
    for name in ("events.jsonl.gz", "items.jsonl.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.jsonl.gz").read_bytes() != (
        tmp_path / "c" / "events.jsonl.gz"
    ).read_bytes()
    assert a == {**b, "events_path": a["events_path"], "items_path": a["items_path"]}
    lines = gzip.decompress((tmp_path / "a" / "events.jsonl.gz").read_bytes()).splitlines()
    assert len(lines) == a["events"] == 3000
    assert sum(a["by_type"].values()) == 3000


def test_every_event_and_item_is_valid_and_routable(dataset: tuple[list, list]) -> None:
    items, events = dataset
    catalogue = {item_from_mapping(it, S).item_id for it in items}
    assert len(catalogue) == CFG.items
    now = CFG.start + 400 * DAY
    for raw in events:
        event = event_from_mapping(raw, S, route(S, raw["type"]), now=now)
        assert event.item_id in catalogue
    assert len(events) == CFG.events
    assert len({e["event_id"] for e in events}) == CFG.events


def test_items_have_categories_and_vocabulary_titles(dataset: tuple[list, list]) -> None:
    items, _ = dataset
    assert set(Counter(it["category"] for it in items)) == set(CATEGORIES)
    assert all(set(it) == {"item_id", "title", "category", "description"} for it in items)
    assert len({it["title"] for it in items}) > 0.9 * len(items)
    assert generate_items(CFG) == items


def test_events_are_sorted_and_fill_the_period(dataset: tuple[list, list]) -> None:
    _, events = dataset
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    assert all(t.endswith("Z") for t in ts)
    days = {t[:10] for t in ts}
    assert len(days) >= CFG.days - 1
    last = epoch(ts[-1])
    assert last <= CFG.start + (CFG.days + 3) * DAY


def test_funnels_narrow_and_every_later_step_follows_an_earlier_one(
    dataset: tuple[list, list],
) -> None:
    _, events = dataset
    counts = Counter(e["type"] for e in events)
    assert counts["browse"] > counts["click"] > counts["add_to_cart"] > counts["purchase"]
    assert 0 < counts["return"] < counts["purchase"] * 0.2
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    previous = {"click": "browse", "add_to_cart": "click", "purchase": "add_to_cart"}
    for e in events:
        key = (e["user_id"], e["item_id"])
        if e["type"] in previous:
            assert key in seen[previous[e["type"]]]
        if e["type"] == "return":
            assert key in seen["purchase"]
        seen[e["type"]].add(key)


def test_users_buy_mostly_in_their_hidden_favourite_categories(
    dataset: tuple[list, list],
) -> None:
    items, events = dataset
    category = {it["item_id"]: it["category"] for it in items}
    tastes = {u.user_id: u for u in generate_users(CFG)}
    hits = total = 0
    for e in events:
        taste = tastes[e["user_id"]]
        weights = taste.at(epoch(e["ts"]))
        top = sorted(range(len(CATEGORIES)), key=lambda i: -weights[i])[:3]
        hits += category[e["item_id"]] in {CATEGORIES[i] for i in top}
        total += 1
    # the floor on other categories is small: most activity is in the top three
    assert hits / total > 0.75


def test_drifting_users_change_favourites() -> None:
    users = generate_users(CFG)
    drifting = [u for u in users if u.after is not u.before]
    assert 0.3 * len(users) < len(drifting) < 0.7 * len(users)
    changed = [
        u for u in drifting if u.favourites(CFG.start, 1) != u.favourites(u.drift_end + 1, 1)
    ]
    assert len(changed) > 0.5 * len(drifting)
    u = drifting[0]
    mid = u.at((u.drift_start + u.drift_end) / 2)
    assert mid == pytest.approx([(b + a) / 2 for b, a in zip(u.before, u.after, strict=True)])


def test_search_queries_are_free_text_on_browses(dataset: tuple[list, list]) -> None:
    _, events = dataset
    with_text = [e for e in events if "text" in e]
    assert with_text and all(e["type"] == "browse" for e in with_text)
    assert 0.03 < len(with_text) / len(events) < 0.2


def test_embedded_share_puts_the_rest_on_new_items_that_carry_their_text() -> None:
    cfg = DatasetConfig(users=100, items=200, days=10, events=10_000, seed=1, embedded_share=0.9)
    items = generate_items(cfg)
    catalogue = {it["item_id"] for it in items}
    events = list(generate_events(cfg, items))
    on_new = [e for e in events if e["item_id"] not in catalogue]
    # a new item is picked for ~10 % of picks; funnels and revisits reuse it, so 8-20 %
    assert 0.06 < len(on_new) / len(events) < 0.2
    assert all(e["item_id"].startswith("new-1-") and e["title"] and e["category"] for e in on_new)
    assert all("title" not in e for e in events if e["item_id"] in catalogue)


def test_item_fields_option_copies_item_text_into_events() -> None:
    _, events = generate_dataset(500, seed=2, users=20, items=40, days=3, item_fields=True)
    assert all(e["title"] and e["category"] and e["description"] for e in events)


def test_fast_enough_for_the_benchmark() -> None:
    t0 = time.process_time()
    _, events = generate_dataset(50_000, seed=9)
    assert len(events) == 50_000
    assert time.process_time() - t0 < 5.0  # ~1 s on one core


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        next(generate_events(DatasetConfig(users=0)))


def test_jsonl_lines_are_the_shared_format(tmp_path: Path) -> None:
    write_dataset(tmp_path, DatasetConfig(users=5, items=12, days=2, events=50, seed=4))
    first = orjson.loads(
        gzip.decompress((tmp_path / "events.jsonl.gz").read_bytes()).split(b"\n")[0]
    )
    assert {"event_id", "user_id", "item_id", "type", "ts"} <= set(first)


def test_the_demo_sample_is_what_its_readme_command_writes(tmp_path: Path) -> None:
    """deploy/demo/README.md: `tastegraph generate --out deploy/demo --users 300 --items 500
    --events 20000 --days 60 --seed 7`. Changing the generator means regenerating the sample."""
    demo = Path(__file__).parents[2] / "deploy" / "demo"
    write_dataset(tmp_path, DatasetConfig(users=300, items=500, days=60, events=20_000, seed=7))
    for name in ("events.jsonl.gz", "items.jsonl.gz"):
        assert (tmp_path / name).read_bytes() == (demo / name).read_bytes(), (
            f"deploy/demo/{name} is stale: rerun the command in deploy/demo/README.md"
        )


def test_mutated_messages_cover_every_reason_and_never_crash_validation() -> None:
    from stream.exceptions import InvalidEvent
    from stream.validation import REASONS, parse_event

    _, events = generate_dataset(200, seed=1, users=10, items=20, days=2)
    outcomes: Counter[str] = Counter()
    first = list(mutated_messages(events, 3000, seed=4))
    assert first == list(mutated_messages(events, 3000, seed=4))  # seeded
    now = CFG.start + 90 * DAY
    for how, raw in first:
        try:
            event = parse_event(raw, S, "", now=now)
        except InvalidEvent as e:
            assert how != "keep" and e.reason in REASONS
            outcomes[e.reason] += 1
        else:
            outcomes["valid"] += 1
            assert event.user_id
    assert set(outcomes) >= set(REASONS) - {"empty", "too_large", "wrong_topic"}
    assert 0.05 < outcomes["valid"] / 3000 < 0.4


def test_invalid_records_are_replayable_record_lines() -> None:
    from tools.recording import EventIds, records_from_line

    _, events = generate_dataset(100, seed=1, users=5, items=10, days=2)
    lines = list(invalid_records(events, 300, ("c", "b", "p"), seed=2))
    assert Counter(line["topic"] for line in lines).keys() == {"c", "b", "p"}
    ids = EventIds()
    records = [records_from_line(orjson.dumps(line), S, ids) for line in lines]
    assert all(r is not None and r.kind == "record" and r.value for r in records)
    assert any("value_b64" in line for line in lines)
    assert {line["mutation"] for line in lines} == set(MUTATIONS)


def test_users_favour_one_brand_per_category(dataset: tuple[list, list]) -> None:
    items, events = dataset
    title = {it["item_id"]: it["title"] for it in items}
    category = {it["item_id"]: it["category"] for it in items}
    tastes = {u.user_id: u for u in generate_users(CFG)}
    hits = total = 0
    for e in events:
        if e["type"] == "browse":
            total += 1
            hits += tastes[e["user_id"]].brand(category[e["item_id"]]) in title[e["item_id"]]
    # four brands per category: 25 % by chance, ~40 % of sessions are brand-loyal on top
    assert hits / total > 0.45
