"""Cypher fragments that several queries share: decay to ``$now`` and the strategies' filters.
Each is text of the statements that embed it, never a statement of its own."""

from __future__ import annotations


def decayed(strength: str, last_ts: str) -> str:
    """Cypher for ``strength`` decayed from ``last_ts`` to ``$now`` (``$half_life`` seconds)."""
    return (
        f"{strength} * 2.0 ^ (-(CASE WHEN $now > {last_ts} THEN $now - {last_ts} ELSE 0.0 END)"
        " / $half_life)"
    )


# Interest of an INTERESTED_IN edge `r`, and popularity of an item `i`, as of $now.
R_NOW = decayed("r.strength", "r.last_ts")

# The user's $history strongest items now (ties by id), one row each: u, j, and n, their count.
TOP_ITEMS = f"""MATCH (u:User {{user_id: $user_id}})-[r:INTERESTED_IN]->(j:Item)
WHERE r.strength > 0
WITH u, j, {R_NOW} AS w
ORDER BY w DESC, j.item_id
LIMIT $history
WITH u, collect(j) AS top, toFloat(count(*)) AS n
UNWIND top AS j"""
# co_engaged's sim(j -> i) from the stored edge `c` = sim(i -> j) (i's own CO_ENGAGED list holds
# j): the two differ only by (n_j / n_i) ^ (1 - 2 alpha), passed as $reverse (n: an item's users).
REVERSED_CO_ENGAGED = """c.score * (toFloat(COUNT { (j)<-[:INTERESTED_IN]-() })
     / toFloat(CASE WHEN COUNT { (i)<-[:INTERESTED_IN]-() } > 0
                    THEN COUNT { (i)<-[:INTERESTED_IN]-() } ELSE 1 END)) ^ $reverse"""
POP_NOW = decayed("coalesce(i.popularity, 0.0)", "coalesce(i.popularity_ts, $now)")
DISCOVERY_NOW = decayed("coalesce(i.discovery, 0.0)", "coalesce(i.discovery_ts, $now)")

# popularity_rank = log2(popularity) + popularity_ts / half_life orders items by their decayed
# popularity at any "now" (the decay factor is common to all), so a range index serves the top-k.
POPULARITY_RANK = "log(row.popularity) / log(2.0) + row.popularity_ts / $half_life"
DISCOVERY_RANK = "log(row.discovery) / log(2.0) + row.discovery_ts / $half_life"

# The filters every recommendation strategy applies (graph/queries/recommend.py): with
# $exclude_purchased = true, no item the user purchased; with $exclude_seen = true, no item they
# touched.
NOT_PURCHASED = (
    "($exclude_purchased = false"
    " OR NOT EXISTS { MATCH (u)-[p:INTERESTED_IN]->(i) WHERE coalesce(p.n_purchase, 0) > 0 })"
)
NOT_SEEN = "($exclude_seen = false OR NOT EXISTS { MATCH (u)-[:INTERESTED_IN]->(i) })"
# $within: null, or the only item ids a list may hold (e.g. the new arrivals of `evaluate
# --new-items`).
WITHIN = "($within IS NULL OR i.item_id IN $within)"
