"""Runs protocol v1: the baselines in memory, tastegraph's strategies on the real graph.

The graph side is built with the worker's own update code: events go to
``GraphStore.apply_batch`` in ``GraphBatch``es of ``graph.model.Event`` (partition -1: no Kafka
offsets, so only the event-id ledger applies), item embeddings come from the real encoder, and
``refresh_dirty`` recomputes user embeddings and similarity edges after each step, as the worker's
refresh loop does. Batches are fed to the update code directly, not through Kafka.
Recommendations are the Cypher queries users run (``GraphReads.recommend_many``, the same queries
as ``recommend``), asked with ``now`` = the start of the test day, so every decay is in event time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evaluation import BASELINES, GRAPH_STRATEGIES, PROTOCOL_VERSION
from evaluation.baselines import Baselines, top_k
from evaluation.components import ComponentsWriter, record_of
from evaluation.ease import Ease
from evaluation.metrics import Outcome, hit_ranks, summarise
from evaluation.protocol import (
    Interaction,
    Pair,
    SeenIndex,
    day_pairs,
    day_start,
    launch_items,
    restrict_pairs,
    split_days,
)
from graph.model import Event, ItemRecord, item_text

log = logging.getLogger("tastegraph.evaluate")

Progress = Callable[..., Any]  # tqdm-like factory: progress(total=, desc=, unit=) -> bar


class GraphRanker(Protocol):
    """The graph side of an evaluation (``GraphSide`` on Neo4j; a fake in unit tests)."""

    def load_items(self, items: Sequence[ItemRecord]) -> None: ...

    def apply(self, events: Sequence[Interaction]) -> None: ...

    def rank(
        self,
        pair: Pair,
        strategies: Sequence[str],
        k: int,
        now: float,
        within: frozenset[str] | None = None,
    ) -> dict[str, list[str]]: ...


@dataclass
class Evaluation:
    k: int
    test_days: list[date]
    strategies: list[str]
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    n_events: int = 0
    n_items: int = 0
    new_items: dict[str, Any] | None = None  # share, seed, launched (evaluate --new-items)

    @property
    def pairs(self) -> int:
        return len(next(iter(self.outcomes.values()), []))

    def figures(self) -> dict[str, Any]:
        """The protocol's JSON: ``{"protocol", "k", "pairs", "strategies": {name: metrics},
        "best_baseline": name}`` (the baseline with the best NDCG@k, ``null`` without one), plus
        ``"new_items"`` for a new-arrivals run."""
        summaries = {
            name: summarise(self.outcomes[name], self.k).summary() for name in self.strategies
        }
        ndcg = f"ndcg@{self.k}"
        baselines = [name for name in self.strategies if name in BASELINES]
        out: dict[str, Any] = {
            "protocol": PROTOCOL_VERSION,
            "k": self.k,
            "pairs": self.pairs,
            "strategies": summaries,
            "best_baseline": max(baselines, key=lambda n: summaries[n][ndcg], default=None),
        }
        if self.new_items is not None:
            out["new_items"] = self.new_items
        return out


def evaluate(
    events: Sequence[Interaction],
    items: Sequence[ItemRecord],
    *,
    k: int = 10,
    test_days: int = 30,
    strategies: Sequence[str] = BASELINES + GRAPH_STRATEGIES,
    graph: GraphRanker | None = None,
    progress: Progress | None = None,
    workers: int = 4,
    new_items: float = 0.0,
    seed: int = 0,
) -> Evaluation:
    """Protocol v1 over ``events``; graph strategies need ``graph``. Deterministic.

    ``new_items`` > 0: new arrivals (``protocol.launch_items``): that share of the items, drawn
    with ``seed``, is launched at the start of the test period; pairs are scored on their launched
    targets, and every list ranks launched items only."""
    unknown = [s for s in strategies if s not in BASELINES + GRAPH_STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}")
    graph_strategies = [s for s in strategies if s in GRAPH_STRATEGIES]
    if graph_strategies and graph is None:
        raise ValueError("graph strategies need a graph")
    t_start = time.perf_counter()
    launched: frozenset[str] | None = None
    if new_items > 0:
        launch = launch_items(events, new_items, seed, test_days)
        events, launched = launch.events, launch.items
    split = split_days(events, test_days)
    result = Evaluation(k, list(split.test_days), list(strategies), {s: [] for s in strategies})
    result.n_events = len(events)
    result.n_items = len({e.item_id for e in events})
    baselines = Baselines((e.item_id for e in events), (e.user_id for e in events))
    allowed = None
    if launched is not None:
        allowed = np.array([i in launched for i in baselines.items])
        result.new_items = {"share": new_items, "seed": seed, "launched": len(launched)}
    ease = Ease(baselines.item_index, baselines.user_index) if "ease" in strategies else None
    seen = SeenIndex()
    first_test = split.test_days[0]
    history = [d for d in split.days if d < first_test]
    timing = result.seconds

    def fold(days: Iterable[date]) -> None:
        chunk: list[Interaction] = []
        for d in days:
            baselines.add_day(d, split.by_day[d])
            seen.add(split.by_day[d])
            if ease is not None:
                ease.add(split.by_day[d])
            chunk.extend(split.by_day[d])
        if graph is not None and graph_strategies and chunk:
            t = time.perf_counter()
            graph.apply(chunk)
            timing["graph_apply"] = timing.get("graph_apply", 0.0) + time.perf_counter() - t

    if graph is not None and graph_strategies:
        t = time.perf_counter()
        graph.load_items(items)
        timing["items"] = time.perf_counter() - t
    fold(history)
    bar = progress(total=len(split.test_days), desc="test days", unit="day") if progress else None
    for index, d in enumerate(split.test_days):
        pairs = day_pairs(d, split.by_day[d], seen.items)
        if launched is not None:
            pairs = restrict_pairs(pairs, launched)
        t = time.perf_counter()
        baselines.prepare(d)
        ease_scores = None
        if ease is not None and pairs:
            t_ease = time.perf_counter()
            ease.prepare()
            ease_scores = ease.scores([p.user_id for p in pairs])
            timing["ease"] = timing.get("ease", 0.0) + time.perf_counter() - t_ease
        for row, p in enumerate(pairs):
            hist = baselines.history_indices(p.seen)
            lists = {}
            if "popular" in strategies:
                lists["popular"] = baselines.popular(hist, k, allowed)
            if "cooccurrence" in strategies:
                lists["cooccurrence"] = baselines.cooccurrence(hist, k, allowed)
            if ease_scores is not None:
                top = top_k(ease_scores[row], hist, k, allowed)
                lists["ease"] = [baselines.items[i] for i in top]
            for name, ranked in lists.items():
                result.outcomes[name].append(
                    Outcome(index, len(p.targets), hit_ranks(ranked[:k], p.targets))
                )
        timing["baselines"] = timing.get("baselines", 0.0) + time.perf_counter() - t
        if graph is not None and graph_strategies:
            t = time.perf_counter()
            now = day_start(d)
            # the day's queries only read the graph: ask them concurrently, record them in order
            with ThreadPoolExecutor(max(1, workers)) as pool:
                n = len(pairs)
                answers = list(
                    pool.map(
                        graph.rank,
                        pairs,
                        [graph_strategies] * n,
                        [k] * n,
                        [now] * n,
                        [launched] * n,
                    )
                )
            for p, ranked_by in zip(pairs, answers, strict=True):
                for name in graph_strategies:
                    ranked = [
                        i
                        for i in ranked_by[name]
                        if i not in p.seen and (launched is None or i in launched)
                    ][:k]
                    result.outcomes[name].append(
                        Outcome(index, len(p.targets), hit_ranks(ranked, p.targets))
                    )
            timing["graph_queries"] = timing.get("graph_queries", 0.0) + time.perf_counter() - t
        fold([d])
        if bar is not None:
            bar.set_postfix(pairs=sum(1 for o in result.outcomes[strategies[0]]))
            bar.update(1)
    if bar is not None:
        bar.close()
    timing["total"] = time.perf_counter() - t_start
    return result


# --- the graph side on Neo4j ---------------------------------------------------------------------
def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


class EmbeddingCache:
    """Item embeddings on disk, keyed by model version and the exact texts (re-runs skip it)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def path(self, version: str, texts: Sequence[str]) -> Path | None:
        if self.directory is None:
            return None
        h = hashlib.sha256(version.encode())
        for t in texts:
            h.update(t.encode())
            h.update(b"\x00")
        return self.directory / f"items-{h.hexdigest()[:24]}.npy"

    def load(self, version: str, texts: Sequence[str]) -> np.ndarray | None:
        p = self.path(version, texts)
        if p is None or not p.exists():
            return None
        arr = np.load(p)
        return arr if arr.shape[0] == len(texts) else None

    def save(self, version: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        p = self.path(version, texts)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(p)


class GraphSide:
    """Feeds the evaluation's events to the worker's update code and asks the users' queries."""

    def __init__(
        self,
        store: Any,
        encoder: Any,
        *,
        batch_size: int = 2000,
        weights: dict[str, float] | None = None,
        cache: EmbeddingCache | None = None,
        progress: Progress | None = None,
        components: ComponentsWriter | None = None,
    ) -> None:
        self.store = store
        self.components = components
        self.encoder = encoder
        self.batch_size = batch_size
        self.weights = weights
        self.cache = cache or EmbeddingCache(None)
        self.progress = progress
        self._next_id = 0

    def load_items(self, items: Sequence[ItemRecord]) -> None:
        """Catalogue records and their embeddings (items without any text get none)."""
        texts = {it.item_id: item_text(it.title, it.category, it.description) for it in items}
        with_text = [it for it in items if texts[it.item_id]]
        version = self.encoder.version
        ordered = [texts[it.item_id] for it in with_text]
        vectors = self.cache.load(version, ordered)
        if vectors is None and ordered:
            vectors = np.zeros((len(ordered), self.encoder.dim), dtype=np.float32)
            bar = self._bar(len(ordered), "encode items", "item")
            start = 0
            for chunk in _chunks(ordered, 512):
                vectors[start : start + len(chunk)] = self.encoder.encode(list(chunk))
                start += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
            self.cache.save(version, ordered, vectors)
        embeddings = (
            {it.item_id: vectors[n] for n, it in enumerate(with_text)}
            if vectors is not None
            else {}
        )
        bar = self._bar(len(items), "load items", "item")
        for chunk in _chunks(list(items), self.batch_size):
            vecs = {it.item_id: embeddings[it.item_id] for it in chunk if it.item_id in embeddings}
            self.store.apply_batch(
                _batch(events=[], items=list(chunk), item_embeddings=vecs, model_version=version)
            )
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        self.refresh()

    def apply(self, events: Sequence[Interaction]) -> None:
        bar = self._bar(len(events), "apply events", "ev") if len(events) > 5000 else None
        for chunk in _chunks(events, self.batch_size):
            batch = []
            for e in chunk:
                batch.append(
                    Event(
                        event_id=f"eval-{self._next_id}",
                        user_id=e.user_id,
                        item_id=e.item_id,
                        type=e.type,
                        ts=e.ts,
                        partition=-1,
                    )
                )
                self._next_id += 1
            self.store.apply_batch(_batch(events=batch, model_version=self.encoder.version))
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        self.refresh()

    def refresh(self) -> None:
        while self.store.refresh_dirty(self.encoder.version, limit=1000) > 0:
            pass

    def rank(
        self,
        pair: Pair,
        strategies: Sequence[str],
        k: int,
        now: float,
        within: frozenset[str] | None = None,
    ) -> dict[str, list[str]]:
        # exclude_seen: the query leaves out every item with an INTERESTED_IN edge from the user,
        # which are exactly the items they interacted with before the day (the caller re-checks).
        parts: dict[str, Any] | None = None
        if self.components is not None and "blend" in strategies:
            parts = {}
        ranked = self.store.recommend_many(
            pair.user_id,
            k=k,
            strategies=strategies,
            weights=self.weights,
            now=now,
            exclude_seen=True,
            within=within,
            parts_out=parts,
        )
        if parts is not None and self.components is not None:
            self.components.write(
                record_of(
                    pair.user_id,
                    now,
                    k,
                    frozenset(pair.targets),
                    lambda i: i in pair.seen or (within is not None and i not in within),
                    parts,
                )
            )
        return {name: [s.item_id for s in ranked[name]] for name in strategies}

    def _bar(self, total: int, desc: str, unit: str) -> Any:
        return self.progress(total=total, desc=desc, unit=unit) if self.progress else None


def _batch(**fields: Any) -> Any:
    from graph.store import GraphBatch

    return GraphBatch(**fields)
