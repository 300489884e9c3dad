"""`tastegraph evaluate`: offline evaluation, protocol v1 (next-day discovery), against baselines.

Builds the graph in the configured Neo4j with the worker's update code (batches fed directly, not
through Kafka) and asks the users' Cypher queries; see docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from config.settings import Settings
from evaluation import ALL_STRATEGIES, BASELINES, GRAPH_STRATEGIES

log = logging.getLogger("tastegraph.evaluate")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=Path, required=True, help="events JSONL(.gz)")
    parser.add_argument("--items", type=Path, required=True, help="items JSONL(.gz)")
    parser.add_argument("--test-days", type=int, default=30, help="test period in days (30)")
    parser.add_argument("-k", type=int, default=10, help="list length K (10)")
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=ALL_STRATEGIES,
        default=list(ALL_STRATEGIES),
        metavar="NAME",
        help=f"strategies to evaluate (default all: {' '.join(ALL_STRATEGIES)})",
    )
    parser.add_argument(
        "--new-items",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="new arrivals: launch this share of the items (drawn with --seed) at the start of "
        "the test period, dropping their earlier events; pairs are scored on their launched "
        "targets and every list ranks launched items only (default 0: off)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the --new-items draw (default 0)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--report", type=Path, metavar="DIR", help="also write DIR/index.html")
    parser.add_argument(
        "--save-components",
        type=Path,
        metavar="FILE",
        help="also write the blend's component lists of every pair to FILE (JSON lines, gzip), "
        "for choosing blend weights offline with `tastegraph tune-blend`",
    )
    graph = parser.add_mutually_exclusive_group()
    graph.add_argument(
        "--keep-graph",
        action="store_true",
        help="do not empty the evaluation graph first (by default a graph an earlier evaluate "
        "built is emptied; any other non-empty graph is refused)",
    )
    graph.add_argument(
        "--wipe",
        action="store_true",
        help="empty the database even if evaluate did not build it (DELETES a worker's graph: "
        "use a private database)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (there are none when stderr is not a terminal)",
    )
    parser.add_argument(
        "--similar-search",
        choices=("exact", "index"),
        default="exact",
        help="candidates of the SIMILAR_TO lists: exact (default; every stored embedding, so two "
        "runs give the same figures) or index (Neo4j's approximate vector index, as the worker "
        "uses by default: TASTEGRAPH_SIMILAR_SEARCH)",
    )
    parser.add_argument(
        "--model",
        metavar="VERSION_OR_DIR",
        help="encoder: a model registry version ($TASTEGRAPH_HOME/models, e.g. ft-0001 or base) "
        "or a model directory (default: TASTEGRAPH_MODEL)",
    )


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    def bar(**kw: Any) -> Any:
        return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kw)

    return bar


def run(args: argparse.Namespace, settings: Settings) -> int:
    from config.exceptions import ConfigError
    from evaluation.data import read_events, read_items
    from evaluation.runner import evaluate

    if args.k < 1 or args.test_days < 1:
        raise ConfigError("-k and --test-days must be at least 1")
    if not 0.0 <= args.new_items <= 1.0:
        raise ConfigError("--new-items must be a share between 0 and 1")
    if args.model:
        settings = with_model(settings, args.model)
    settings = dataclasses.replace(settings, similar_search=args.similar_search)
    t0 = time.perf_counter()
    events = read_events(args.events)
    items = read_items(args.items)
    unknown = sorted({e.type for e in events} - set(settings.weights))
    if unknown:
        raise ConfigError(
            f"event types {unknown} have no weight; set TASTEGRAPH_WEIGHTS "
            "(see `tastegraph config`)"
        )
    strategies = [s for s in ALL_STRATEGIES if s in args.strategies]
    # bars only on a terminal: in a log file their carriage returns and escapes are noise
    progress = _progress(not args.no_progress and sys.stderr.isatty())
    graph = None
    driver = None
    writer = None
    try:
        if any(s in GRAPH_STRATEGIES for s in strategies):
            graph, driver = _open_graph(settings, progress, args.keep_graph, args.wipe)
            if args.save_components is not None:
                from evaluation.components import ComponentsWriter

                graph.components = writer = ComponentsWriter(args.save_components)
        result = evaluate(
            events,
            items,
            k=args.k,
            test_days=args.test_days,
            strategies=strategies,
            graph=graph,
            progress=progress,
            new_items=args.new_items,
            seed=args.seed,
        )
    finally:
        if driver is not None:
            driver.close()
        if writer is not None:
            writer.close()
            log.info("%d pairs' blend components written to %s", writer.records, writer.path)
    figures = result.figures()
    wall = time.perf_counter() - t0
    if args.report:
        from evaluation.report import write_report

        path = write_report(
            result, args.report, title=f"{args.events.parent.name}/{args.events.name}", wall_s=wall
        )
        log.info("report written to %s", path)
    if args.json:
        print(orjson.dumps(figures).decode())
    else:
        print(f"protocol {figures['protocol']}: {figures['pairs']} (user, day) pairs, K={args.k}")
        if "new_items" in figures:
            n = figures["new_items"]
            print(f"new arrivals: {n['launched']} items launched", end="")
            print(f" (share {n['share']}, seed {n['seed']})")
        keys = [f"hr@{args.k}", f"recall@{args.k}", f"ndcg@{args.k}"]
        ndcg = keys[-1]
        best_name = figures.get("best_baseline")
        best = figures["strategies"][best_name][ndcg] if best_name else 0.0
        print(f"{'strategy':<14}" + "".join(f"{key:>12}" for key in keys) + f"{'x best':>8}")
        for name, m in figures["strategies"].items():
            tag = " (baseline)" if name in BASELINES else ""
            ratio = f"{m[ndcg] / best:>8.2f}" if best > 0 else f"{'':>8}"
            print(f"{name:<14}" + "".join(f"{m[key]:>12.4f}" for key in keys) + ratio + tag)
        print(f"wall time {wall:.0f} s")
    return 0


def with_model(settings: Settings, name: str) -> Settings:
    """``settings`` whose ``model`` is ``name`` resolved: a registry version or a directory."""
    import dataclasses

    from config.exceptions import ConfigError
    from encoder.registry import RegistryError, resolve_model_ref
    from finetuning.stores import registry_for

    try:
        ref = resolve_model_ref(name, registry_for(settings))
    except RegistryError as e:
        raise ConfigError(f"--model: {e}") from e
    log.info("evaluating with model %s (%s)", name, ref)
    return dataclasses.replace(settings, model=ref)


def _open_graph(settings: Settings, progress: Any, keep: bool, wipe: bool) -> tuple[Any, Any]:
    from evaluation.runner import EmbeddingCache, GraphSide
    from graph.store import GraphStore
    from stream.runtime import interest_params, open_driver, open_encoder

    driver = open_driver(settings)
    try:
        store = GraphStore(driver, settings.neo4j_database, interest_params(settings))
        _claim_graph(store, settings, keep=keep, wipe=wipe)  # before the slow model load
        encoder = open_encoder(settings)
        store.ensure_schema(encoder.dim)
    except Exception:
        driver.close()
        raise
    side = GraphSide(
        store,
        encoder,
        batch_size=settings.max_batch,
        weights=dict(settings.blend_weights),
        cache=EmbeddingCache(settings.home / "eval-cache"),
        progress=progress,
    )
    return side, driver


def _claim_graph(store: Any, settings: Settings, keep: bool, wipe: bool) -> None:
    """Makes the database the evaluation's own: empty, or built by an earlier evaluate (its marker
    node), else refused unless ``wipe``; emptied unless ``keep``; marked."""
    from config.exceptions import ConfigError

    owner = store.owner()
    where = f"database {settings.neo4j_database!r} at {settings.neo4j_url}"
    if owner == "other" and not wipe:
        raise ConfigError(
            f"{where} holds a graph that evaluate did not build; point NEO4J_URI/NEO4J_DATABASE "
            "at a private database, or pass --wipe to delete that graph"
        )
    if owner != "empty" and not keep:
        log.info("emptying %s (owner: %s)", where, owner)
        store.wipe()
    store.mark_evaluation_graph(time.time())
