"""The design article's path, measured by the pipeline benchmark against the worker: each event
encoded on its own and written in its own Neo4j transaction, in this process, without Kafka.
"""

from __future__ import annotations

import dataclasses
import time

from config.settings import Settings
from graph.model import Event


def naive_path(settings: Settings, events: list[tuple[str, dict]], items: dict[str, dict]) -> float:
    """The design article's path: one encoder call and one write transaction per event."""
    from graph.model import item_text
    from graph.store import GraphBatch
    from stream.runtime import open_runtime

    # no embedding cache: the article's path encodes every event's text
    rt = open_runtime(dataclasses.replace(settings, encoder_cache_size=0), serve_metrics=False)
    try:
        start = time.perf_counter()
        for i, (_, e) in enumerate(events):
            # a catalogue item's text, else the text a new item's event carries
            it = items.get(e["item_id"]) or e
            text = item_text(it.get("title"), it.get("category"), it.get("description"))
            vec = rt.encoder.encoder.encode([text])[0]
            ev = Event(
                event_id=e["event_id"],
                user_id=e["user_id"],
                item_id=e["item_id"],
                type=e["type"],
                ts=time.time(),
                title=e.get("title"),
                category=e.get("category"),
                description=e.get("description"),
                topic="naive",
                partition=0,
                offset=i,
            )
            rt.store.apply_batch(
                GraphBatch(
                    events=[ev],
                    items=[],
                    item_embeddings={ev.item_id: vec},
                    text_embeddings={},
                    model_version=rt.encoder.version,
                )
            )
        return len(events) / (time.perf_counter() - start)
    finally:
        rt.close()
