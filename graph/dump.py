"""A canonical dump of the whole graph: nodes, relationships and properties, sorted.

Two graphs are the same when their dumps are equal. Used by the replay and crash/restart tests:
``canonical_dump(driver, database) == canonical_dump(...)`` after two runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from graph import queries as q

# The stable key of each label (what MERGE matches on).
NODE_KEYS = {
    "User": "user_id",
    "Item": "item_id",
    "Category": "name",
    "PartitionOffset": "key",
    "AppliedEvent": "event_id",
}
# Derived from the interest state by refresh_dirty; their exact values depend on when refreshes
# ran, so crash tests may leave them out with ``derived=False``.
DERIVED_TYPES = frozenset({"SIMILAR_TO", "CO_ENGAGED"})
# Bookkeeping that is not data: the random token of the transaction that claimed an event id.
TOKEN_PROPERTIES = {"AppliedEvent": frozenset({"claim"})}
DERIVED_PROPERTIES = {
    "User": frozenset({"embedding", "embedding_version", "dirty", "resimilar", "relist"}),
    "Item": frozenset({"dirty", "relist", "co_dirty"}),
}


def node_ref(labels: Iterable[str], props: dict[str, Any]) -> str:
    """``Label:key`` for a node with a known label, else its sorted labels and properties."""
    for label in sorted(labels):
        if label in NODE_KEYS:
            return f"{label}:{props.get(NODE_KEYS[label])}"
    return json.dumps([sorted(labels), props], sort_keys=True, default=str)


def canonical_dump(
    driver: Any,
    database: str,
    *,
    derived: bool = True,
    exclude_properties: Iterable[str] = (),
    exclude_labels: Iterable[str] = (),
) -> dict[str, list[str]]:
    """``{"nodes": [...], "relationships": [...]}``, each a sorted list of JSON lines.

    ``derived=False`` leaves out SIMILAR_TO and CO_ENGAGED edges, the User embedding and the
    refresh flags (``dirty``, ``resimilar``, ``relist``, ``co_dirty``); Item embeddings come from
    the encoder and stay.
    ``exclude_labels`` drops whole node kinds (for example ``AppliedEvent``) and the relationships
    touching them.
    """
    skip_props = set(exclude_properties)
    skip_labels = set(exclude_labels)

    def clean(labels: list[str], props: dict[str, Any]) -> dict[str, Any]:
        drop = set(skip_props)
        for label in labels:
            drop |= TOKEN_PROPERTIES.get(label, frozenset())
        if not derived:
            for label in labels:
                drop |= DERIVED_PROPERTIES.get(label, frozenset())
        return {k: v for k, v in sorted(props.items()) if k not in drop}

    nodes_rec, _, _ = driver.execute_query(q.DUMP_NODES, database_=database, routing_="r")
    rels_rec, _, _ = driver.execute_query(q.DUMP_RELATIONSHIPS, database_=database, routing_="r")
    nodes = []
    for r in nodes_rec:
        if skip_labels & set(r["labels"]):
            continue
        node = {"labels": sorted(r["labels"]), "props": clean(r["labels"], r["props"])}
        nodes.append(json.dumps(node, sort_keys=True, default=str))
    rels = []
    for r in rels_rec:
        if skip_labels & (set(r["a_labels"]) | set(r["b_labels"])):
            continue
        if not derived and r["type"] in DERIVED_TYPES:
            continue
        line = {
            "type": r["type"],
            "from": node_ref(r["a_labels"], r["a_props"]),
            "to": node_ref(r["b_labels"], r["b_props"]),
            "props": {k: v for k, v in sorted(r["props"].items()) if k not in skip_props},
        }
        rels.append(json.dumps(line, sort_keys=True, default=str))
    return {"nodes": sorted(nodes), "relationships": sorted(rels)}
