"""Derived data: user embeddings, the similarity lists (graph/refresh.py runs them) and the
re-embedding after a model swap."""

from __future__ import annotations

# --- refresh: user embeddings and similarity edges -------------------------------------------
# What a dirty user's embedding is computed from: their positive interests in current items.
_USER_EMBEDDING_INPUTS = """OPTIONAL MATCH (u)-[r:INTERESTED_IN]->(i:Item)
WHERE i.embedding_version = $version AND coalesce(i.embedding_stale, false) = false
  AND r.strength > 0
RETURN u.user_id AS user_id, u.text_vec AS text_vec, u.text_ts AS text_ts,
       u.text_version AS text_version, u.embedding AS embedding,
       u.embedding_version AS embedding_version, coalesce(u.resimilar, false) AS resimilar,
       collect([r.strength, r.last_ts, i.item_id]) AS edges"""

DIRTY_USERS = f"""MATCH (u:User)
WHERE u.dirty = true
WITH u ORDER BY u.user_id LIMIT $limit
{_USER_EMBEDDING_INPUTS}"""

# The same for given users (read again once they are locked: a batch may have changed them).
DIRTY_USERS_BY_ID = f"""UNWIND $ids AS id
MATCH (u:User {{user_id: id}})
WHERE u.dirty = true
{_USER_EMBEDDING_INPUTS}"""

# The embeddings of items, to tell whether one changed between a read and its lock.
ITEM_EMBEDDING_STAMPS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
RETURN i.item_id AS id, i.embedding AS embedding, i.embedding_version AS version"""

# Each distinct item's vector once (many dirty users share items).
ITEM_EMBEDDINGS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
RETURN i.item_id AS item_id, i.embedding AS embedding"""

SET_USER_EMBEDDINGS = """UNWIND $rows AS row
MATCH (u:User {user_id: row.user_id})
SET u.embedding = row.embedding, u.embedding_version = $version, u.dirty = false,
    u.resimilar = true"""

# The embedding barely moved: keep it (and the similarity edges computed from it).
MARK_USERS_CLEAN = """UNWIND $ids AS id
MATCH (u:User {user_id: id})
SET u.dirty = false"""

# A user with nothing to average: no embedding, no similarity edges either way; the users that
# pointed at them get their lists refilled (relist).
CLEAR_USER_EMBEDDINGS = """UNWIND $ids AS id
MATCH (u:User {user_id: id})
OPTIONAL MATCH (v:User)-[:SIMILAR_TO]->(u)
SET v.relist = true
WITH DISTINCT u
OPTIONAL MATCH (u)-[s:SIMILAR_TO]-(:User)
DELETE s
WITH DISTINCT u
REMOVE u.embedding, u.embedding_version, u.resimilar, u.relist
SET u.dirty = false"""

# Similarity lists (graph/similarity.py): the nodes whose list is to be recomputed (`moved`: users
# whose embedding changed, `resimilar`, and items newly embedded, `dirty`; or only their own list,
# because a node left it: `relist`), the candidates of each from the vector index, rescored
# exactly (Neo4j's cosine functions return (1 + cos) / 2, we store cos in [-1, 1]), and the
# current lists. The flags are set in the same transaction as what makes them necessary, so a
# crash loses none.
PENDING_SIMILAR_USERS = """CALL () {
  MATCH (u:User) WHERE u.resimilar = true RETURN u
  UNION
  MATCH (u:User) WHERE u.relist = true RETURN u
}
WITH u ORDER BY u.user_id LIMIT $limit
RETURN u.user_id AS id, coalesce(u.resimilar, false) AS moved"""

PENDING_SIMILAR_ITEMS = """CALL () {
  MATCH (i:Item) WHERE i.dirty = true AND i.embedding_version = $version RETURN i
  UNION
  MATCH (i:Item) WHERE i.relist = true RETURN i
}
WITH i ORDER BY i.item_id LIMIT $limit
RETURN i.item_id AS id, coalesce(i.dirty, false) AS moved"""

DIRTY_ITEMS = """MATCH (i:Item)
WHERE i.dirty = true AND i.embedding_version = $version
WITH i ORDER BY i.item_id LIMIT $limit
RETURN i.item_id AS id"""

# The users of items, and flagging users dirty (their embedding is to be recomputed).
USERS_OF_ITEMS = """UNWIND $ids AS id
MATCH (u:User)-[:INTERESTED_IN]->(:Item {item_id: id})
WHERE coalesce(u.dirty, false) = false
RETURN DISTINCT u.user_id AS id"""

MARK_USERS_DIRTY = """UNWIND $ids AS id
MATCH (u:User {user_id: id})
SET u.dirty = true"""

USER_SIMILARITY_CANDIDATES = """UNWIND $ids AS id
MATCH (u:User {user_id: id})
WHERE u.embedding IS NOT NULL AND u.embedding_version = $version
CALL (u) {
  CALL db.index.vector.queryNodes('user_embedding', $fetch, u.embedding) YIELD node
  WITH node
  WHERE node <> u AND node.embedding_version = u.embedding_version
  WITH node, 2.0 * vector.similarity.cosine(u.embedding, node.embedding) - 1.0 AS sim
  WHERE sim >= $threshold
  RETURN collect([node.user_id, sim]) AS candidates
}
RETURN id, candidates"""

ITEM_SIMILARITY_CANDIDATES = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
WHERE i.embedding IS NOT NULL AND i.embedding_version = $version
  AND coalesce(i.embedding_stale, false) = false
CALL (i) {
  CALL db.index.vector.queryNodes('item_embedding', $fetch, i.embedding) YIELD node
  WITH node
  WHERE node <> i AND node.embedding_version = i.embedding_version
    AND coalesce(node.embedding_stale, false) = false
  WITH node, 2.0 * vector.similarity.cosine(i.embedding, node.embedding) - 1.0 AS sim
  WHERE sim >= $threshold
  RETURN collect([node.item_id, sim]) AS candidates
}
RETURN id, candidates"""

# Exact search (TASTEGRAPH_SIMILAR_SEARCH=exact): every current embedding of the kind, the same
# nodes the vector index's candidates are filtered to; graph/similarity.py `nearest` ranks them.
USER_EMBEDDINGS_ALL = """MATCH (n:User)
WHERE n.embedding IS NOT NULL AND n.embedding_version = $version
RETURN n.user_id AS id, n.embedding AS embedding"""

ITEM_EMBEDDINGS_ALL = """MATCH (n:Item)
WHERE n.embedding IS NOT NULL AND n.embedding_version = $version
  AND coalesce(n.embedding_stale, false) = false
RETURN n.item_id AS id, n.embedding AS embedding"""

# Co-engagement lists (item-kNN on the interest edges): an item whose engagers changed
# (`co_dirty`, set by a new INTERESTED_IN edge or an erasure) gets its CO_ENGAGED out-list
# recomputed: its top $k other items i by
#   sim(j -> i) = co / (n_j ^ $alpha * n_i ^ (1 - $alpha)) * co / (co + $shrinkage),
# co = users interested in both, n = an item's users (its INTERESTED_IN in-degree); alpha < 0.5
# discounts popular targets more than popular sources, and the shrinkage distrusts a handful of
# co-buyers. The walk goes through the item's $engagers most recent users (by the edge's last_ts;
# n_j stays its full count), so one recompute costs at most $engagers x their degrees, however
# popular the item.
PENDING_CO_ENGAGED = """MATCH (i:Item)
WHERE i.co_dirty = true
WITH i ORDER BY i.item_id LIMIT $limit
RETURN i.item_id AS id"""

CO_ENGAGED_ROWS = """UNWIND $ids AS id
MATCH (j:Item {item_id: id})
WITH id, j, toFloat(COUNT { (j)<-[:INTERESTED_IN]-() }) AS nj
CALL (j, nj) {
  MATCH (j)<-[e:INTERESTED_IN]-(v:User)
  WITH v ORDER BY e.last_ts DESC, v.user_id LIMIT $engagers
  MATCH (v)-[:INTERESTED_IN]->(i:Item)
  WHERE i <> j
  WITH i, toFloat(count(*)) AS co
  WITH i, co * co / (co + $shrinkage)
          / (nj ^ $alpha * toFloat(COUNT { (i)<-[:INTERESTED_IN]-() }) ^ (1.0 - $alpha)) AS score
  ORDER BY score DESC, i.item_id
  LIMIT $k
  RETURN collect([i.item_id, score]) AS top
}
RETURN id, toInteger(nj) AS users, top, [(j)-[:CO_ENGAGED]->(o:Item) | o.item_id] AS old"""

# Written once the items are locked. The flag stays when the item's users changed since the list
# was read (a batch committed in between): the next round computes it again.
WRITE_CO_ENGAGED = """UNWIND $rows AS row
MATCH (j:Item {item_id: row.id})
OPTIONAL MATCH (j)-[old:CO_ENGAGED]->(:Item)
DELETE old
WITH DISTINCT j, row
FOREACH (_ IN CASE WHEN COUNT { (j)<-[:INTERESTED_IN]-() } = row.users THEN [1] ELSE [] END |
  REMOVE j.co_dirty)
WITH j, row
UNWIND row.top AS t
MATCH (i:Item {item_id: t[0]})
CREATE (j)-[:CO_ENGAGED {score: t[1]}]->(i)"""

USER_SIMILAR_LISTS = """UNWIND $ids AS id
MATCH (u:User {user_id: id})
RETURN id, [(u)-[s:SIMILAR_TO]->(v:User) | [v.user_id, s.score]] AS out,
       [(w:User)-[:SIMILAR_TO]->(u) | w.user_id] AS pointing"""

ITEM_SIMILAR_LISTS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
RETURN id, [(i)-[s:SIMILAR_TO]->(j:Item) | [j.item_id, s.score]] AS out,
       [(w:Item)-[:SIMILAR_TO]->(i) | w.item_id] AS pointing"""

# Exact scores of given pairs (a node that moved and one pointing at it that the vector index
# did not return among its candidates).
USER_PAIR_SCORES = """UNWIND $pairs AS p
MATCH (a:User {user_id: p[0]})
MATCH (b:User {user_id: p[1]})
WHERE a.embedding IS NOT NULL AND b.embedding_version = a.embedding_version
RETURN p[0] AS a, p[1] AS b,
       2.0 * vector.similarity.cosine(a.embedding, b.embedding) - 1.0 AS sim"""

ITEM_PAIR_SCORES = """UNWIND $pairs AS p
MATCH (a:Item {item_id: p[0]})
MATCH (b:Item {item_id: p[1]})
WHERE a.embedding IS NOT NULL AND b.embedding_version = a.embedding_version
  AND coalesce(b.embedding_stale, false) = false
RETURN p[0] AS a, p[1] AS b,
       2.0 * vector.similarity.cosine(a.embedding, b.embedding) - 1.0 AS sim"""

# Write-lock nodes in sorted order before changing their edges (the project's lock order).
LOCK_USERS = """UNWIND $ids AS id
MATCH (u:User {user_id: id})
SET u._lock = true
REMOVE u._lock"""

LOCK_ITEMS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
SET i._lock = true
REMOVE i._lock"""

DELETE_USER_SIMILAR = """UNWIND $rows AS row
MATCH (:User {user_id: row.a})-[s:SIMILAR_TO]->(:User {user_id: row.b})
DELETE s"""

DELETE_ITEM_SIMILAR = """UNWIND $rows AS row
MATCH (:Item {item_id: row.a})-[s:SIMILAR_TO]->(:Item {item_id: row.b})
DELETE s"""

MERGE_USER_SIMILAR = """UNWIND $rows AS row
MATCH (a:User {user_id: row.a})
MATCH (b:User {user_id: row.b})
MERGE (a)-[s:SIMILAR_TO]->(b)
SET s.score = row.score, s.updated_at = a.last_ts"""

MERGE_ITEM_SIMILAR = """UNWIND $rows AS row
MATCH (a:Item {item_id: row.a})
MATCH (b:Item {item_id: row.b})
MERGE (a)-[s:SIMILAR_TO]->(b)
SET s.score = row.score"""

# `moved`: the nodes that moved and whose lists were updated; `relisted`: those whose own list
# was recomputed (a `moved` flag set meanwhile stays); `again`: those whose own list is to be
# recomputed.
USERS_SIMILAR_DONE = """UNWIND $moved AS id
MATCH (u:User {user_id: id})
REMOVE u.resimilar, u.relist
WITH count(*) AS _
UNWIND $relisted AS id
MATCH (u:User {user_id: id})
REMOVE u.relist
WITH count(*) AS _
UNWIND $again AS id
MATCH (u:User {user_id: id})
SET u.relist = true"""

ITEMS_SIMILAR_DONE = """UNWIND $moved AS id
MATCH (i:Item {item_id: id})
SET i.dirty = false
REMOVE i.relist
WITH count(*) AS _
UNWIND $relisted AS id
MATCH (i:Item {item_id: id})
REMOVE i.relist
WITH count(*) AS _
UNWIND $again AS id
MATCH (i:Item {item_id: id})
SET i.relist = true"""

# --- re-embedding after a model swap ---------------------------------------------------------
# Items embedded by another model version that have text to embed again (bounded by $limit).
STALE_ITEMS = """MATCH (i:Item)
WHERE i.embedding_version IS NOT NULL AND i.embedding_version <> $version
  AND (i.title IS NOT NULL OR i.description IS NOT NULL OR i.category IS NOT NULL
       OR EXISTS { (i)-[:IN_CATEGORY]->(:Category) })
WITH i ORDER BY i.item_id LIMIT $limit
OPTIONAL MATCH (i)-[:IN_CATEGORY]->(c:Category)
WITH i, head(collect(c.name)) AS category_name
RETURN i.item_id AS item_id, i.title AS title, coalesce(category_name, i.category) AS category,
       i.description AS description"""

# Users without a $version embedding who have an interest in a $version item: dirty, so
# refresh_dirty recomputes them. That includes users whose embedding a refresh cleared during the
# transition (refreshed while none of their items had a $version embedding yet).
MARK_STALE_USERS_DIRTY = """MATCH (u:User)
WHERE (u.embedding_version IS NULL OR u.embedding_version <> $version)
  AND coalesce(u.dirty, false) = false
  AND EXISTS {
    MATCH (u)-[r:INTERESTED_IN]->(i:Item)
    WHERE i.embedding_version = $version AND coalesce(i.embedding_stale, false) = false
      AND r.strength > 0
  }
WITH u ORDER BY u.user_id LIMIT $limit
SET u.dirty = true
RETURN count(u) AS marked"""

# Item embeddings computed outside a batch (re-embedding after a model swap).
SET_ITEM_EMBEDDINGS = """UNWIND $rows AS row
MATCH (i:Item {item_id: row.item_id})
SET i.embedding = row.embedding, i.embedding_version = $version,
    i.embedding_stale = false, i.dirty = true"""
