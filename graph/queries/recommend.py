"""Recommendation strategies: one self-contained query each (graph/reads.py blends them)."""

from __future__ import annotations

from graph.queries.fragments import (
    DISCOVERY_NOW,
    NOT_PURCHASED,
    NOT_SEEN,
    POP_NOW,
    R_NOW,
    REVERSED_CO_ENGAGED,
    TOP_ITEMS,
    WITHIN,
)

# Tuned by the evaluation engineer (`tastegraph evaluate`, docs/evaluation.md): keep each
# strategy a self-contained query with the same parameters ($user_id, $fetch, $candidates,
# $exclude_purchased, $exclude_seen, $within, $now, $half_life, $neighbours and $shrinkage for
# co-interest, $history, $sharpen and $evidence for content)
# and the same columns (item_id, category, score).
# With $exclude_purchased = true every strategy leaves out items the user purchased (n_purchase > 0
# on their INTERESTED_IN edge); with $exclude_seen = true also every item the user has an
# INTERESTED_IN edge to (the offline protocol's "never interacted before"; `recommend --exclude`
# chooses: seen, purchased (the default) or none). $candidates (>= $fetch) is how deep the vector
# search and the popularity index are read before that filter.
# Popularity also answers for an unknown user (cold start), and reads the top of the
# popularity_rank index instead of scanning every item.
# `blend` is computed in graph/reads.py from these, normalised per user and weighted.

# Content, multi-interest: each of the user's $history strongest items (decayed interest now)
# votes for its content neighbours, the item SIMILAR_TO edges the refresh keeps (top
# TASTEGRAPH_SIMILAR_K by cosine, same embedding version): raw(i) = sum over the user's items j
# of s(u, j) * cos(j, i)^$sharpen. A user's several tastes each keep their own neighbours instead
# of blurring into one mean vector (RECOMMEND_PROFILE), and the sharpening lets close neighbours
# outvote many loose ones. Then, like co-interest, it is divided by the best raw score and shrunk
# by its evidence: confidence = followed / (n + $evidence), n the voting items, followed those
# with a text neighbour among the user's items first touched no later than they were (the user's
# history itself follows text similarity). Customers who buy along text neighbours (gift-shop
# ranges) get content at full weight; households whose texts say only "grocery" get little.
# The list itself is ordered by the raw votes, so a user without evidence yet (one item, say)
# still gets their content neighbours, at score 0: `--strategy content` serves them, the blend
# gives them no weight. A user whose items have no text neighbour above the threshold at all gets
# RECOMMEND_PROFILE's list instead, also at score 0 (graph/reads.py).
# Bounded: at most $history x k edges per user, whatever the history; incremental: the edges
# follow every refresh.
RECOMMEND_CONTENT = f"""MATCH (u:User {{user_id: $user_id}})-[r:INTERESTED_IN]->(j:Item)
WHERE r.strength > 0
WITH u, j, r.first_ts AS first, {R_NOW} AS w
ORDER BY w DESC, j.item_id
LIMIT $history
WITH u, j, w, EXISTS {{
  MATCH (j)-[:SIMILAR_TO]->(:Item)<-[p:INTERESTED_IN]-(u)
  WHERE p.first_ts <= first
}} AS followed
WITH u, collect([j, w]) AS top, sum(CASE WHEN followed THEN 1.0 ELSE 0.0 END) AS hits,
     count(*) AS n
WITH u, top, hits / (n + $evidence) AS confidence
UNWIND top AS t
WITH u, confidence, t[0] AS j, t[1] AS w
MATCH (j)-[s:SIMILAR_TO]->(i:Item)
WHERE s.score > 0
WITH u, confidence, i, sum(w * s.score ^ $sharpen) AS score
WHERE score > 0 AND coalesce(i.embedding_stale, false) = false
  AND {NOT_PURCHASED} AND {NOT_SEEN} AND {WITHIN}
WITH confidence, i, score
ORDER BY score DESC, i.item_id
LIMIT $fetch
WITH confidence, collect([i, score]) AS rows
WITH confidence, rows, rows[0][1] AS best
UNWIND rows AS row
WITH row[0] AS i, row[1] AS raw, confidence * row[1] / best AS score
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY raw DESC, item_id"""

# Content, single profile (the strategy before multi-interest, kept for comparison): vector
# search from the user's embedding (the strength-weighted mean of their items' embeddings).
RECOMMEND_PROFILE = f"""MATCH (u:User {{user_id: $user_id}})
WHERE u.embedding IS NOT NULL
CALL db.index.vector.queryNodes('item_embedding', $candidates, u.embedding) YIELD node AS i
WITH u, i, 2.0 * vector.similarity.cosine(u.embedding, i.embedding) - 1.0 AS score
WHERE i.embedding_version = u.embedding_version AND coalesce(i.embedding_stale, false) = false
  AND {NOT_PURCHASED} AND {NOT_SEEN} AND {WITHIN}
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY score DESC, item_id
LIMIT $fetch"""

# Co-engaged (item-kNN): each of the user's $history strongest items j votes, with weight 1, for
# its CO_ENGAGED neighbours (top 10 by co-engagement, graph/queries/refresh.py); an item's score is
# the mean over those items of sim(j -> i). Not rescaled: sim already carries its evidence (the
# co / (co + shrinkage) factor), so a user whose items have few co-buyers gets small scores and
# the blend leans on the other components. Bounded: at most $history x 10 edges per user.
RECOMMEND_CO_ENGAGED = f"""{TOP_ITEMS}
MATCH (j)-[c:CO_ENGAGED]->(i:Item)
WITH u, n, i, sum(c.score) AS raw
WHERE {NOT_PURCHASED} AND {NOT_SEEN} AND {WITHIN}
RETURN i.item_id AS item_id, i.category AS category, raw / n AS score
ORDER BY score DESC, item_id
LIMIT $fetch"""

# Co-engagement read from the other end: items whose own CO_ENGAGED list (their 10 nearest by
# co-engagement) holds one of the user's strongest items j, where j's list does not hold them. A
# young item (a new arrival) rarely makes the list of an established item, but its own list points
# at the established items its first users also had. The stored score is sim(i -> j); sim(j -> i)
# differs from it only by (n_j / n_i) ^ (1 - 2 alpha) ($reverse), so this is co_engaged's own
# score for the pairs its edges miss. Bounded: the $inbound best such edges per item j.
RECOMMEND_CO_ENGAGED_IN = f"""{TOP_ITEMS}
CALL (j) {{
  MATCH (i:Item)-[c:CO_ENGAGED]->(j)
  WHERE NOT EXISTS {{ (j)-[:CO_ENGAGED]->(i) }} AND {WITHIN}
  WITH i, c ORDER BY c.score DESC, i.item_id LIMIT $inbound
  RETURN i, {REVERSED_CO_ENGAGED} AS sim
}}
WITH u, n, i, sum(sim) AS raw
WHERE {NOT_PURCHASED} AND {NOT_SEEN}
RETURN i.item_id AS item_id, i.category AS category, raw / n AS score
ORDER BY score DESC, item_id
LIMIT $fetch"""

# Co-engagement carried to text neighbours: the items that the user's strongest items are
# engaged together with (CO_ENGAGED, item-kNN) pass their share on to their own text neighbours
# (SIMILAR_TO, cos^$sharpen). An item nobody has engaged with yet (a new arrival) has no
# CO_ENGAGED edges of its own but has text neighbours from its first hour, so it inherits the
# co-engagement of the established items it reads like. Bounded: $history x 10 x 20 paths.
RECOMMEND_CO_SIMILAR = f"""{TOP_ITEMS}
MATCH (j)-[c:CO_ENGAGED]->(:Item)-[s:SIMILAR_TO]->(i:Item)
WHERE s.score > 0 AND i <> j
WITH u, n, i, sum(c.score * s.score ^ $sharpen) AS raw
WHERE coalesce(i.embedding_stale, false) = false
  AND {NOT_PURCHASED} AND {NOT_SEEN} AND {WITHIN}
RETURN i.item_id AS item_id, i.category AS category, raw / n AS score
ORDER BY score DESC, item_id
LIMIT $fetch"""

RECOMMEND_COLLABORATIVE = f"""MATCH (u:User {{user_id: $user_id}})-[s:SIMILAR_TO]->(v:User)
MATCH (v)-[r:INTERESTED_IN]->(i:Item)
WHERE r.strength > 0
WITH u, i, sum(s.score * {R_NOW}) AS score
WHERE score > 0 AND {NOT_PURCHASED} AND {NOT_SEEN} AND {WITHIN}
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY score DESC, item_id
LIMIT $fetch"""

# Co-interest (user-kNN through shared items, a 2-hop path). The $neighbours users v who share the
# most items with u, sim(u, v) = shared(u, v) / sqrt(v's item degree) (so heavy users do not win on
# volume alone); an item's raw score is the sum of sim(u, v) * s(v, i) now, divided by the best
# raw score. It is then shrunk by the evidence behind it: confidence = o / (o + $shrinkage), o the
# mean number of items u shares with those neighbours. A user with many shared items (a regular
# customer of a shop with dense baskets) gets neighbours' tastes at full weight; a user who shares
# one or two staples with others gets little, and the blend leans on popularity instead. Scores are
# in [0, confidence]; the blend takes them as they are. Live, so it follows every batch.
RECOMMEND_CO_INTEREST = f"""MATCH (u:User {{user_id: $user_id}})-[:INTERESTED_IN]->(:Item)
      <-[:INTERESTED_IN]-(v:User)
WHERE v <> u
WITH u, v, count(*) AS shared
WITH u, v, shared, shared / sqrt(toFloat(COUNT {{ (v)-[:INTERESTED_IN]->(:Item) }})) AS sim
ORDER BY sim DESC, v.user_id
LIMIT $neighbours
WITH u, collect([v, sim]) AS nbrs, avg(toFloat(shared)) AS overlap
WITH u, nbrs, overlap / (overlap + $shrinkage) AS confidence
UNWIND nbrs AS nb
WITH u, confidence, nb[0] AS v, nb[1] AS sim
MATCH (v)-[r:INTERESTED_IN]->(i:Item)
WHERE r.strength > 0
WITH u, confidence, i, sum(sim * {R_NOW}) AS score
WHERE score > 0 AND {NOT_PURCHASED} AND {NOT_SEEN} AND {WITHIN}
WITH confidence, i, score
ORDER BY score DESC, i.item_id
LIMIT $fetch
WITH confidence, collect([i, score]) AS rows
WITH confidence, rows, rows[0][1] AS best
UNWIND rows AS row
WITH row[0] AS i, confidence * row[1] / best AS score
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY score DESC, item_id"""


def _ranked_top(rank: str, score: str) -> str:
    """The top ``$fetch`` items by an index-backed ``rank`` property (a decayed value's log2 plus
    its time over the half-life: the same order at any ``now``), leaving out what the user bought
    (and with ``$exclude_seen`` everything they touched), scored ``score`` as of ``$now``."""
    return f"""OPTIONAL MATCH (u:User {{user_id: $user_id}})
OPTIONAL MATCH (u)-[p:INTERESTED_IN]->(b:Item)
WHERE (coalesce(p.n_purchase, 0) > 0 AND $exclude_purchased) OR $exclude_seen
WITH collect(b) AS excluded
MATCH (i:Item)
WHERE i.{rank} IS NOT NULL
WITH i, excluded ORDER BY i.{rank} DESC
WHERE NOT i IN excluded AND {WITHIN}
WITH i LIMIT $fetch
WITH i, {score} AS score
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY score DESC, item_id"""


RECOMMEND_POPULAR = _ranked_top("popularity_rank", POP_NOW)

# Discovery popularity: items that recently won new buyers. The write path keeps, per item, the
# decayed number of its buyers, each counted once at their first interaction with the item
# (i.discovery, graph/fold.py fold_discovery): staples that the same customers buy again and again
# count once per customer, when they took them up, so this ranks what people newly try, which is
# what a recommendation is for. Read like popularity: the top of the discovery_rank index.
RECOMMEND_DISCOVERY = _ranked_top("discovery_rank", DISCOVERY_NOW)
