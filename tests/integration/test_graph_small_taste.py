"""On a tiny, young graph one purchase must not make an item "most popular" and outrank what a
user's own fresh taste points to (issue 15, item 5): popularity and discovery are scaled by their
evidence (graph/scoring.py EVIDENCE_PRIORS), content by the user's (graph/queries/)."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import DEFAULT_WEIGHTS, Settings
from encoder.protocol import HashingEncoder
from graph.model import Event, ItemRecord, item_text
from graph.scoring import EVIDENCE_PRIORS
from graph.store import GraphBatch, GraphStore, InterestParams

pytestmark = pytest.mark.integration

DAY = 86400.0
NOW = 15 * DAY
ENC = HashingEncoder(dim=384)
CATALOGUE = [
    ItemRecord("tent1", "trail tent", "tents"),
    ItemRecord("tent2", "dome tent", "tents"),
    ItemRecord("tent3", "tunnel tent", "tents"),
    ItemRecord("tent4", "family tent", "tents"),  # nobody has it yet: erin's taste points here
    ItemRecord("book", "italian cook book", "books"),  # one purchase: the "most popular" item
]
# erin: a clear, fresh taste (three tents this week); frank: one book, once
EVENTS = [
    ("erin", "tent1", "purchase", 12),
    ("erin", "tent2", "purchase", 13),
    ("erin", "tent3", "purchase", 14),
    ("frank", "book", "purchase", 14),
]


def test_a_fresh_taste_beats_a_single_purchase(clean_graph: Any, settings: Settings) -> None:
    store = GraphStore(
        clean_graph,
        settings.neo4j_database,
        InterestParams(half_life_s=14 * DAY, weights=DEFAULT_WEIGHTS),
    )
    store.ensure_schema(ENC.dim)
    texts = [item_text(i.title, i.category, i.description) for i in CATALOGUE]
    vecs = dict(zip([i.item_id for i in CATALOGUE], ENC.encode(texts), strict=True))
    events = [Event(f"t{n}", u, i, t, d * DAY) for n, (u, i, t, d) in enumerate(EVENTS)]
    store.apply_batch(GraphBatch(events, CATALOGUE, vecs, {}, ENC.version))
    while store.refresh_dirty(ENC.version):
        pass
    recs = store.recommend("erin", k=2, now=NOW)
    assert [r.item_id for r in recs] == ["tent4", "book"]
    book = recs[1]
    # one purchase of weight 5, a day old: about 5 / (5 + 25) of its weight, not all of it
    popular = 5.0 * 2 ** (-1 / 14)
    assert book.parts["popular"] == pytest.approx(popular / (popular + EVIDENCE_PRIORS["popular"]))
    discovery = 2 ** (-1 / 14)
    assert book.parts["discovery"] == pytest.approx(
        discovery / (discovery + EVIDENCE_PRIORS["discovery"])
    )
    # content: two of erin's three tents followed a tent she had already bought
    assert recs[0].parts["content"] == pytest.approx(2 / (3 + 5))
    # a user with no history still gets the popular items
    assert [r.item_id for r in store.recommend("nobody", k=1, now=NOW)] == ["book"]
