"""The query commands: recommend, explain, similar-users, audience, cart-complements, trends,
churn-risk and forget. One module serves all of them (``configure_command``); each reads the
graph through ``graph.store.GraphStore`` and prints a table, or one JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from cli.times import parse_time
from config.exceptions import ConfigError
from config.settings import Settings


def configure_command(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    if name in (
        "recommend",
        "explain",
        "trends",
        "audience",
        "cart-complements",
        "churn-risk",
        "prune-ledger",
    ):
        parser.add_argument(
            "--now",
            type=parse_time,
            default=None,
            help=(
                "count the days back from this time"
                if name == "prune-ledger"
                else "evaluate decayed strengths at this time"
            )
            + " (epoch seconds or ISO-8601; default: the wall clock)",
        )
    if name == "recommend":
        parser.add_argument("user_id", metavar="USER_ID")
        parser.add_argument("-k", type=int, default=10, help="how many items (default 10)")
        parser.add_argument(
            "--strategy",
            choices=("content", "profile", "collaborative", "co_engaged", "blend"),
            default="blend",
            help="content: multi-interest, each of the user's strongest items votes for its "
            "content neighbours; profile: vector search from the user's mean embedding; "
            "collaborative: items liked by similar users; co_engaged: the items most engaged "
            "together with the user's strongest items (item-kNN); blend (default): co-interest "
            "(users sharing items), co-engaged, decayed popularity, discovery popularity (new "
            "buyers), content and collaborative, weighted by TASTEGRAPH_BLEND_WEIGHTS",
        )
        parser.add_argument(
            "--exclude",
            choices=("seen", "purchased", "none"),
            default="purchased",
            help="leave out the items the user interacted with in any way (seen), the items they "
            "bought (purchased, the default: clicked items may come back) or nothing (none)",
        )
        parser.add_argument(
            "--category-cap",
            type=int,
            default=None,
            help="at most this many items per category (env TASTEGRAPH_CATEGORY_CAP; 0: no cap)",
        )
    elif name == "explain":
        parser.add_argument("user_id", metavar="USER_ID")
        parser.add_argument("item_id", metavar="ITEM_ID")
    elif name == "similar-users":
        parser.add_argument("user_id", metavar="USER_ID")
        parser.add_argument("-k", type=int, default=10, help="how many users (default 10)")
    elif name == "audience":
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--category", help="users most interested in this category")
        target.add_argument("--item", dest="item_id", help="users most interested in this item")
        parser.add_argument("-k", type=int, default=100, help="how many users (default 100)")
    elif name == "cart-complements":
        parser.add_argument("item_ids", metavar="ITEM_ID", nargs="+")
        parser.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    elif name == "trends":
        parser.add_argument("user_id", metavar="USER_ID")
        parser.add_argument(
            "--window-days",
            type=int,
            default=7,
            help="compare the last N days with the N days before (default 7)",
        )
    elif name == "churn-risk":
        parser.add_argument(
            "--threshold",
            type=float,
            default=1.0,
            help="total decayed interest below this (default 1.0)",
        )
        parser.add_argument(
            "--inactive-days",
            type=float,
            default=30.0,
            help="and no event for this many days (default 30)",
        )
        parser.add_argument("--limit", type=int, default=1000, help="at most this many users")
    elif name == "forget":
        parser.add_argument("user_id", metavar="USER_ID")
        parser.epilog = (
            "Exit status: 0 the user was erased, 1 the user was not in the graph (nothing erased), "
            "2 an error."
        )
    elif name == "prune-ledger":
        parser.add_argument(
            "--older-than-days",
            type=float,
            required=True,
            metavar="D",
            help="drop ledger entries of events whose event time is more than D days before now;"
            " such an event arriving again with a new offset would be applied again",
        )
    else:
        raise ValueError(f"cli.queries does not serve {name!r}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from stream.runtime import open_store

    driver, store = open_store(settings)
    try:
        # fails at once on a wrong password or an unreachable server (a query would retry for
        # 30 s); cli/main.py turns either into one sentence
        driver.verify_connectivity()
        result = _query(args, settings, store)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    finally:
        driver.close()
    if args.json:
        print(orjson.dumps(result, default=_plain, option=orjson.OPT_INDENT_2).decode())
    else:
        _print_table(args.command, result)
    if (
        args.command == "forget"
        and not result["forgotten"]
        and not result["finetune_examples_removed"]
    ):
        # nothing to erase: say so and exit 1, so that a typo in the id does not pass for success
        print(
            f"tastegraph: user {args.user_id!r} is not in the graph: nothing erased",
            file=sys.stderr,
        )
        return 1
    return 0


def _query(args: argparse.Namespace, settings: Settings, store: Any) -> Any:
    cmd = args.command
    if cmd == "recommend":
        cap = settings.category_cap if args.category_cap is None else args.category_cap
        recs = store.recommend(
            args.user_id,
            k=args.k,
            strategy=args.strategy,
            weights=settings.blend_weights,
            category_cap=cap,
            now=args.now,
            exclude_seen=args.exclude == "seen",
            exclude_purchased=args.exclude != "none",
        )
        return [dataclasses.asdict(r) for r in recs]
    if cmd == "explain":
        return store.explain(args.user_id, args.item_id, now=args.now)
    if cmd == "similar-users":
        return store.similar_users(args.user_id, k=args.k)
    if cmd == "audience":
        return store.audience(category=args.category, item_id=args.item_id, k=args.k, now=args.now)
    if cmd == "cart-complements":
        return [
            dataclasses.asdict(r)
            for r in store.cart_complements(args.item_ids, k=args.k, now=args.now)
        ]
    if cmd == "trends":
        return store.interest_trends(args.user_id, now=args.now, window_days=args.window_days)
    if cmd == "churn-risk":
        return store.churn_risk(args.threshold, args.inactive_days, now=args.now, limit=args.limit)
    if cmd == "forget":
        forgotten = store.forget(args.user_id)
        return {
            "user_id": args.user_id,
            "forgotten": forgotten,
            "finetune_examples_removed": _forget_examples(settings, args.user_id),
        }
    if cmd == "prune-ledger":
        if args.older_than_days < 0:
            raise ValueError("--older-than-days must be >= 0")
        now = time.time() if args.now is None else args.now
        before = now - args.older_than_days * 86400.0
        deleted, limit = 0, 10_000
        while (n := store.prune_applied_events(before_ts=before, limit=limit)) > 0:
            deleted += n
            if n < limit:
                break
        return {"deleted": deleted, "before_ts": before}
    raise ValueError(f"unknown command {cmd!r}")


def _forget_examples(settings: Settings, user_id: str) -> int:
    """Drop the user's fine-tuning examples from the worker's durable example store."""
    from finetuning.stores import default_examples_path, example_collector_for

    if not default_examples_path(settings).exists():
        return 0
    collector = example_collector_for(settings)
    with collector.store:
        return int(collector.forget(user_id))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _print_table(command: str, result: Any) -> None:
    if command == "explain":
        _print_explain(result)
        return
    if isinstance(result, dict):
        result = [result]
    if not result:
        print("(nothing)")
        return
    rows: Sequence[dict[str, Any]] = [{k: v for k, v in r.items() if k != "parts"} for r in result]
    columns = list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _print_explain(e: dict[str, Any]) -> None:
    print(f"user {e['user_id']} -> item {e['item_id']}")
    if not e["user_exists"] or not e["item_exists"]:
        print("  (user or item not in the graph)")
    if e["interest"]:
        i = e["interest"]
        print(f"  direct interest {i['strength']:.4f}  counts {i['counts']}")
    print(f"  purchased: {'yes' if e['purchased'] else 'no'}")
    print(f"  content score (votes of the user's items, similarity^3) {e['content_score']:.4f}")
    for v in e["content_votes"]:
        print(
            f"    vote of {v['item_id']}: interest {v['strength']:.4f} x similarity "
            f"{v['similarity']:.4f}^3 = {v['contribution']:.4f}"
        )
    if e["content_similarity"] is not None:
        print(
            f"  profile similarity (user embedding . item embedding) {e['content_similarity']:.4f}"
        )
    print(
        "  co-engaged score (mean over the user's strongest items; co_engaged + co_engaged_in) "
        f"{e['co_engaged_score']:.4f}"
    )
    for v in e["co_engaged_votes"]:
        print(
            f"    engaged together with {v['item_id']}: similarity {v['similarity']:.4f}, "
            f"share {v['contribution']:.4f} ({v['via']})"
        )
    print(
        f"  collaborative score {e['collaborative_score']:.4f}  popularity {e['popularity']:.4f}"
        f"  discovery {e['discovery']:.4f}"
    )
    for u in e["similar_users"]:
        print(
            f"  via similar user {u['user_id']}: similarity {u['similarity']:.4f} x interest "
            f"{u['strength']:.4f} = {u['contribution']:.4f}"
        )
    for c in e["categories"]:
        print(f"  via category {c['category']}: interest {c['strength']:.4f}")
    for j in e["similar_items"]:
        print(
            f"  via similar item {j['item_id']}: similarity {j['similarity']:.4f}, "
            f"interest in it {j['strength']:.4f}"
        )
