"""All of tastegraph's Cypher, as constants. Parameters only: values are never formatted into the
text; labels, relationship types and index names are fixed here.

Sections: schema, batch reads (inside the write transaction), batch writes, refresh (embeddings and
similarity), recommendation strategies, the other read queries, erasure and the canonical dump.
"""

from __future__ import annotations


def _decayed(strength: str, last_ts: str) -> str:
    """Cypher for ``strength`` decayed from ``last_ts`` to ``$now`` (``$half_life`` seconds)."""
    return (
        f"{strength} * 2.0 ^ (-(CASE WHEN $now > {last_ts} THEN $now - {last_ts} ELSE 0.0 END)"
        " / $half_life)"
    )


# Interest of an INTERESTED_IN edge `r`, and popularity of an item `i`, as of $now.
R_NOW = _decayed("r.strength", "r.last_ts")
POP_NOW = _decayed("coalesce(i.popularity, 0.0)", "coalesce(i.popularity_ts, $now)")
DISCOVERY_NOW = _decayed("coalesce(i.discovery, 0.0)", "coalesce(i.discovery_ts, $now)")

# --- schema ----------------------------------------------------------------------------------
SCHEMA_CONSTRAINTS = (
    "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.user_id IS UNIQUE",
    "CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.item_id IS UNIQUE",
    "CREATE CONSTRAINT category_name IF NOT EXISTS FOR (c:Category) REQUIRE c.name IS UNIQUE",
    "CREATE CONSTRAINT partition_offset_key IF NOT EXISTS "
    "FOR (p:PartitionOffset) REQUIRE p.key IS UNIQUE",
    "CREATE CONSTRAINT applied_event_id IF NOT EXISTS "
    "FOR (e:AppliedEvent) REQUIRE e.event_id IS UNIQUE",
)
SCHEMA_INDEXES = (
    "CREATE INDEX user_dirty IF NOT EXISTS FOR (u:User) ON (u.dirty)",
    "CREATE INDEX user_resimilar IF NOT EXISTS FOR (u:User) ON (u.resimilar)",
    "CREATE INDEX user_relist IF NOT EXISTS FOR (u:User) ON (u.relist)",
    "CREATE INDEX user_last_ts IF NOT EXISTS FOR (u:User) ON (u.last_ts)",
    "CREATE INDEX item_dirty IF NOT EXISTS FOR (i:Item) ON (i.dirty)",
    "CREATE INDEX item_relist IF NOT EXISTS FOR (i:Item) ON (i.relist)",
    "CREATE INDEX item_popularity_rank IF NOT EXISTS FOR (i:Item) ON (i.popularity_rank)",
    "CREATE INDEX item_discovery_rank IF NOT EXISTS FOR (i:Item) ON (i.discovery_rank)",
    "CREATE INDEX applied_event_ts IF NOT EXISTS FOR (e:AppliedEvent) ON (e.ts)",
)
# The dimension is an index option, passed as a parameter.
CREATE_USER_VECTOR_INDEX = (
    "CREATE VECTOR INDEX user_embedding IF NOT EXISTS FOR (u:User) ON (u.embedding) "
    "OPTIONS {indexConfig: {`vector.dimensions`: $dim, `vector.similarity_function`: 'cosine'}}"
)
CREATE_ITEM_VECTOR_INDEX = (
    "CREATE VECTOR INDEX item_embedding IF NOT EXISTS FOR (i:Item) ON (i.embedding) "
    "OPTIONS {indexConfig: {`vector.dimensions`: $dim, `vector.similarity_function`: 'cosine'}}"
)
VECTOR_INDEX_DIMENSIONS = (
    "SHOW VECTOR INDEXES YIELD name, options "
    "WHERE name IN ['user_embedding', 'item_embedding'] "
    "RETURN name, options.indexConfig.`vector.dimensions` AS dim"
)
AWAIT_INDEXES = "CALL db.awaitIndexes($timeout_s)"

# --- batch reads (inside the write transaction) ----------------------------------------------
# Take a write lock on each (topic, partition) offset node (sorted keys, no deadlocks), then read.
LOCK_OFFSETS = """UNWIND $rows AS row
MERGE (p:PartitionOffset {key: row.key})
ON CREATE SET p.topic = row.topic, p.partition = row.partition, p.offset = -1
SET p._lock = true
REMOVE p._lock
RETURN p.key AS key, p.offset AS offset"""

# Claim the batch's event ids: MERGE on the unique key waits for a concurrent transaction that
# creates the same id, so exactly one claimant sees fresh = true (a file replayed twice). The claim
# token (random per transaction attempt) stays on the node: it is how this transaction knew the node
# was its own, not data (canonical dumps leave it out).
CLAIM_EVENTS = """UNWIND $rows AS row
MERGE (e:AppliedEvent {event_id: row.event_id})
ON CREATE SET e.ts = row.ts, e.claim = $claim
RETURN e.event_id AS event_id, coalesce(e.claim = $claim, false) AS fresh"""

# Write-lock the users and items a batch folds into (sorted ids), so two workers that share a user
# or an item (three event topics, several partitions) serialise their read-modify-write; each
# returns what the batch needs of the locked node in the same pass.
LOCK_READ_USERS = """UNWIND $rows AS row
MERGE (u:User {user_id: row.user_id})
SET u._lock = true
REMOVE u._lock
WITH u, row
WHERE row.text AND u.text_vec IS NOT NULL
RETURN u.user_id AS user_id, u.text_vec AS vector, u.text_ts AS ts, u.text_version AS version"""

LOCK_READ_ITEMS = """UNWIND $ids AS id
MERGE (i:Item {item_id: id})
SET i._lock = true
REMOVE i._lock
WITH i
OPTIONAL MATCH (i)-[:IN_CATEGORY]->(c:Category)
RETURN i.item_id AS item_id, coalesce(c.name, i.category) AS category, i.title AS title,
       i.description AS description, coalesce(i.popularity_raw, i.popularity) AS popularity,
       i.popularity_ts AS popularity_ts, i.discovery AS discovery, i.discovery_ts AS discovery_ts,
       i.embedding_version AS embedding_version, i.embedding_stale AS stale"""

READ_ITEM_EDGES = """UNWIND $rows AS row
MATCH (:User {user_id: row.user_id})-[r:INTERESTED_IN]->(:Item {item_id: row.item_id})
RETURN row.user_id AS user_id, row.item_id AS item_id, properties(r) AS props"""

# Items whose category this batch would set or change (`fill`: an event's category, which only
# fills a missing one), with their users: those users' category interest moves with the item, so
# they are locked with the batch's users. Read before any lock (the set is checked again after).
PLAN_CATEGORY_MOVES = """UNWIND $rows AS row
MATCH (i:Item {item_id: row.item_id})
OPTIONAL MATCH (i)-[:IN_CATEGORY]->(c:Category)
WITH i, row, coalesce(c.name, i.category) AS current
WHERE row.delete OR current IS NULL OR (NOT row.fill AND current <> row.category)
MATCH (u:User)-[:INTERESTED_IN]->(i)
RETURN row.item_id AS item_id, collect(u.user_id) AS users"""

# The users of items (locked: nobody adds an edge meanwhile).
READ_ITEM_USERS = """UNWIND $ids AS id
MATCH (u:User)-[:INTERESTED_IN]->(:Item {item_id: id})
RETURN id AS item_id, collect(u.user_id) AS users"""

# The items whose similarity lists include, or are included in, the lists of items to delete.
SIMILAR_ITEM_NEIGHBOURS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
RETURN [(i)-[:SIMILAR_TO]-(j:Item) | j.item_id] AS neighbours"""

# An item tombstone: the item leaves the graph with its edges (interest, category, similarity) and
# its embedding (hence its vector index entry); its users are refreshed (their embeddings averaged
# it) and the items that listed it as similar recompute their lists.
DELETE_ITEMS = """UNWIND $rows AS row
MATCH (i:Item {item_id: row.item_id})
OPTIONAL MATCH (u:User)-[:INTERESTED_IN]->(i)
SET u.dirty = true
WITH DISTINCT i
OPTIONAL MATCH (j:Item)-[:SIMILAR_TO]->(i)
SET j.relist = true
WITH DISTINCT i
DETACH DELETE i"""

# Write-lock the categories a batch writes edges to (sorted names, after the users and items).
LOCK_CATEGORIES = """UNWIND $names AS name
MERGE (c:Category {name: name})
SET c._lock = true
REMOVE c._lock"""

# A user's item edges over the items of a category (after this transaction's own writes): the
# category interest is their sum (graph/fold.py category_states).
READ_CATEGORY_MEMBERS = """UNWIND $rows AS row
MATCH (:User {user_id: row.user_id})-[r:INTERESTED_IN]->(i:Item)
      -[:IN_CATEGORY]->(:Category {name: row.category})
RETURN row.user_id AS user_id, row.category AS category, i.item_id AS item_id,
       properties(r) AS props"""

READ_ITEM_TEXTS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
OPTIONAL MATCH (i)-[:IN_CATEGORY]->(c:Category)
RETURN i.item_id AS item_id, coalesce(c.name, i.category) AS category, i.title AS title,
       i.description AS description"""

EMBEDDED_ITEMS = """UNWIND $ids AS id
MATCH (i:Item {item_id: id})
WHERE i.embedding_version = $version AND i.embedding IS NOT NULL
  AND coalesce(i.embedding_stale, false) = false
RETURN i.item_id AS item_id"""

# --- batch writes (absolute values: a retried transaction writes the same thing) ------------
# One row per user of the batch; the free-text state only where the batch changed it.
WRITE_USERS = """UNWIND $rows AS row
MERGE (u:User {user_id: row.user_id})
SET u.first_ts = CASE WHEN u.first_ts IS NULL OR row.first_ts < u.first_ts
                      THEN row.first_ts ELSE u.first_ts END,
    u.last_ts = CASE WHEN u.last_ts IS NULL OR row.last_ts > u.last_ts
                     THEN row.last_ts ELSE u.last_ts END,
    u.dirty = true
FOREACH (_ IN CASE WHEN row.vector IS NULL THEN [] ELSE [1] END |
  SET u.text_vec = row.vector, u.text_ts = row.text_ts, u.text_version = row.text_version)"""

# popularity_rank = log2(popularity) + popularity_ts / half_life orders items by their decayed
# popularity at any "now" (the decay factor is common to all), so a range index serves the top-k.
POPULARITY_RANK = "log(row.popularity) / log(2.0) + row.popularity_ts / $half_life"
DISCOVERY_RANK = "log(row.discovery) / log(2.0) + row.discovery_ts / $half_life"

# One row per item of the batch: its text fields (null: keep), popularity and new embedding (null:
# unchanged), then its category edge. A changed text marks the embedding stale unless the row
# brings the new one.
WRITE_ITEMS = f"""UNWIND $rows AS row
MERGE (i:Item {{item_id: row.item_id}})
FOREACH (_ IN CASE WHEN row.fields THEN [1] ELSE [] END |
  SET i.title = coalesce(row.title, i.title),
      i.description = coalesce(row.description, i.description),
      i.category = coalesce(row.category, i.category),
      i.embedding_stale = CASE WHEN row.text_changed THEN true ELSE i.embedding_stale END)
FOREACH (_ IN CASE WHEN row.popularity IS NULL THEN [] ELSE [1] END |
  SET i.popularity = row.popularity, i.popularity_raw = row.popularity_raw,
      i.popularity_ts = row.popularity_ts,
      i.popularity_rank = CASE WHEN row.popularity > 0 THEN {POPULARITY_RANK} END)
FOREACH (_ IN CASE WHEN row.discovery IS NULL THEN [] ELSE [1] END |
  SET i.discovery = row.discovery, i.discovery_ts = row.discovery_ts,
      i.discovery_rank = CASE WHEN row.discovery > 0 THEN {DISCOVERY_RANK} END)
FOREACH (_ IN CASE WHEN row.embedding IS NULL THEN [] ELSE [1] END |
  SET i.embedding = row.embedding, i.embedding_version = $version,
      i.embedding_stale = false, i.dirty = true)
WITH i, row
WHERE row.category IS NOT NULL
MERGE (c:Category {{name: row.category}})
WITH i, c
OPTIONAL MATCH (i)-[old:IN_CATEGORY]->(other:Category)
WHERE other <> c
DELETE old
WITH DISTINCT i, c
MERGE (i)-[:IN_CATEGORY]->(c)"""

# Item embeddings computed outside a batch (re-embedding after a model swap).
SET_ITEM_EMBEDDINGS = """UNWIND $rows AS row
MATCH (i:Item {item_id: row.item_id})
SET i.embedding = row.embedding, i.embedding_version = $version,
    i.embedding_stale = false, i.dirty = true"""

MERGE_ITEM_EDGES = """UNWIND $rows AS row
MATCH (u:User {user_id: row.user_id})
MATCH (i:Item {item_id: row.item_id})
MERGE (u)-[r:INTERESTED_IN]->(i)
SET r = row.props"""

MERGE_CATEGORY_EDGES = """UNWIND $rows AS row
MATCH (u:User {user_id: row.user_id})
MERGE (c:Category {name: row.category})
MERGE (u)-[r:INTERESTED_IN]->(c)
SET r = row.props"""

# A category the user has no item of any more (its items moved to another category).
DELETE_CATEGORY_EDGES = """UNWIND $rows AS row
MATCH (:User {user_id: row.user_id})-[r:INTERESTED_IN]->(:Category {name: row.category})
DELETE r"""

PRUNE_APPLIED_EVENTS = """MATCH (e:AppliedEvent)
WHERE e.ts < $before_ts
WITH e LIMIT $limit
DELETE e
RETURN count(*) AS deleted"""

SET_OFFSETS = """UNWIND $rows AS row
MATCH (p:PartitionOffset {key: row.key})
SET p.offset = CASE WHEN row.offset > p.offset THEN row.offset ELSE p.offset END"""

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

# --- recommendation strategies ---------------------------------------------------------------
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
NOT_PURCHASED = (
    "($exclude_purchased = false"
    " OR NOT EXISTS { MATCH (u)-[p:INTERESTED_IN]->(i) WHERE coalesce(p.n_purchase, 0) > 0 })"
)
NOT_SEEN = "($exclude_seen = false OR NOT EXISTS { MATCH (u)-[:INTERESTED_IN]->(i) })"
# $within: null, or the only item ids a list may hold (e.g. the new arrivals of `evaluate
# --new-items`).
WITHIN = "($within IS NULL OR i.item_id IN $within)"

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

# --- other read queries ----------------------------------------------------------------------
EXPLAIN_DIRECT = f"""MATCH (u:User {{user_id: $user_id}})
MATCH (u)-[r:INTERESTED_IN]->(i:Item {{item_id: $item_id}})
RETURN {R_NOW} AS strength, properties(r) AS props"""

# The multi-interest content score of one item (RECOMMEND_CONTENT's sum), vote by vote.
EXPLAIN_CONTENT = f"""MATCH (u:User {{user_id: $user_id}})-[r:INTERESTED_IN]->(j:Item)
WHERE r.strength > 0
WITH j, {R_NOW} AS w
ORDER BY w DESC, j.item_id
LIMIT $history
MATCH (j)-[s:SIMILAR_TO]->(:Item {{item_id: $item_id}})
WHERE s.score > 0
RETURN j.item_id AS item_id, s.score AS similarity, w AS strength,
       w * s.score ^ $sharpen AS contribution
ORDER BY contribution DESC, item_id"""

EXPLAIN_SIMILAR_USERS = f"""MATCH (u:User {{user_id: $user_id}})-[s:SIMILAR_TO]->(v:User)
MATCH (v)-[r:INTERESTED_IN]->(i:Item {{item_id: $item_id}})
WITH v, s, {R_NOW} AS strength
RETURN v.user_id AS user_id, s.score AS similarity, strength, s.score * strength AS contribution
ORDER BY contribution DESC, user_id"""

EXPLAIN_CATEGORY = f"""MATCH (i:Item {{item_id: $item_id}})-[:IN_CATEGORY]->(c:Category)
OPTIONAL MATCH (:User {{user_id: $user_id}})-[r:INTERESTED_IN]->(c)
RETURN c.name AS category, CASE WHEN r IS NULL THEN 0.0 ELSE {R_NOW} END AS strength"""

EXPLAIN_SIMILAR_ITEMS = f"""MATCH (u:User {{user_id: $user_id}})-[r:INTERESTED_IN]->(j:Item)
MATCH (j)-[s:SIMILAR_TO]->(i:Item {{item_id: $item_id}})
WITH j, s, {R_NOW} AS strength
RETURN j.item_id AS item_id, s.score AS similarity, strength
ORDER BY similarity * strength DESC, item_id"""

EXPLAIN_NODES = f"""OPTIONAL MATCH (u:User {{user_id: $user_id}})
OPTIONAL MATCH (i:Item {{item_id: $item_id}})
RETURN u.embedding AS user_embedding, u.embedding_version AS user_version,
       i.embedding AS item_embedding, i.embedding_version AS item_version,
       i.item_id IS NOT NULL AS item_exists, u.user_id IS NOT NULL AS user_exists,
       CASE WHEN i IS NULL THEN 0.0 ELSE {POP_NOW} END AS popularity,
       CASE WHEN i IS NULL THEN 0.0 ELSE {DISCOVERY_NOW} END AS discovery"""

SIMILAR_USERS = """MATCH (u:User {user_id: $user_id})-[s:SIMILAR_TO]->(v:User)
RETURN v.user_id AS user_id, s.score AS score
ORDER BY score DESC, user_id
LIMIT $k"""

AUDIENCE_CATEGORY = f"""MATCH (u:User)-[r:INTERESTED_IN]->(:Category {{name: $category}})
WITH u, {R_NOW} AS score
WHERE score > 0
RETURN u.user_id AS user_id, score
ORDER BY score DESC, user_id
LIMIT $k"""

AUDIENCE_ITEM = f"""MATCH (u:User)-[r:INTERESTED_IN]->(:Item {{item_id: $item_id}})
WITH u, {R_NOW} AS score
WHERE score > 0
RETURN u.user_id AS user_id, score
ORDER BY score DESC, user_id
LIMIT $k"""

# Co-interest: the $max_users users most interested in the cart's items, what else they like.
CART_CO_INTEREST = f"""MATCH (c:Item)<-[r1:INTERESTED_IN]-(u:User)
WHERE c.item_id IN $item_ids AND r1.strength > 0
WITH u, sum({_decayed("r1.strength", "r1.last_ts")}) AS cart_interest
ORDER BY cart_interest DESC, u.user_id LIMIT $max_users
MATCH (u)-[r:INTERESTED_IN]->(i:Item)
WHERE NOT i.item_id IN $item_ids AND r.strength > 0
WITH i, sum(sqrt(cart_interest * {R_NOW})) AS score
WHERE score > 0
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY score DESC, item_id
LIMIT $fetch"""

CART_SIMILAR_ITEMS = """MATCH (c:Item)-[s:SIMILAR_TO]->(i:Item)
WHERE c.item_id IN $item_ids AND NOT i.item_id IN $item_ids
WITH i, max(s.score) AS score
RETURN i.item_id AS item_id, i.category AS category, score
ORDER BY score DESC, item_id
LIMIT $fetch"""

# Per category: weight of the user's events in [now - window, now) against the window before.
INTEREST_TRENDS = f"""MATCH (u:User {{user_id: $user_id}})-[r:INTERESTED_IN]->(c:Category)
WITH c, r, {R_NOW} AS strength,
     [k IN range(0, size(coalesce(r.day_index, [])) - 1)
      | [r.day_index[k], r.day_weight[k]]] AS days
WITH c, strength,
     reduce(a = 0.0, d IN days | a + CASE WHEN d[0] > $today - $window_days
                                          AND d[0] <= $today THEN d[1] ELSE 0.0 END) AS recent,
     reduce(a = 0.0, d IN days | a + CASE WHEN d[0] > $today - 2 * $window_days
                                          AND d[0] <= $today - $window_days
                                          THEN d[1] ELSE 0.0 END) AS previous
RETURN c.name AS category, recent, previous, recent - previous AS change, strength
ORDER BY change DESC, category"""

CHURN_RISK = f"""MATCH (u:User)
WHERE u.last_ts < $now - $inactive_s
OPTIONAL MATCH (u)-[r:INTERESTED_IN]->(:Item)
WITH u, sum(CASE WHEN r IS NULL THEN 0.0 ELSE {R_NOW} END) AS interest
WHERE interest < $threshold
RETURN u.user_id AS user_id, interest, u.last_ts AS last_ts
ORDER BY interest ASC, user_id
LIMIT $limit"""

# --- erasure ---------------------------------------------------------------------------------
# Benchmarks and tests write users and items whose ids share a run prefix; this removes them (and
# their edges and ledger entries) in chunks. An implicit transaction: run with session.run.
DELETE_BY_ID_PREFIX = """MATCH (n)
WHERE (n:User AND n.user_id STARTS WITH $prefix) OR (n:Item AND n.item_id STARTS WITH $prefix)
   OR (n:AppliedEvent AND n.event_id STARTS WITH $prefix)
CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS"""

# Subtract the user's share from item popularity, flag the users whose similarity lists pointed
# at them (refresh_dirty refills those), then delete the user and every edge they had.
FORGET_POPULARITY = """MATCH (u:User {user_id: $user_id})-[r:INTERESTED_IN]->(i:Item)
WITH i, coalesce(r.raw, r.strength) * 2.0 ^ (-(CASE WHEN i.popularity_ts > r.last_ts
                                     THEN i.popularity_ts - r.last_ts ELSE 0.0 END)
                             / $half_life) AS share
WITH i, coalesce(i.popularity_raw, i.popularity, 0.0) - share AS raw
WITH i, raw, CASE WHEN raw > 1e-9 THEN raw ELSE 0.0 END AS popularity
SET i.popularity = popularity, i.popularity_raw = raw,
    i.popularity_rank = CASE WHEN popularity > 0
                             THEN log(popularity) / log(2.0) + i.popularity_ts / $half_life END"""

# What forgetting a user writes to, for the lock order (users, items, categories; sorted).
FORGET_LOCKS = """MATCH (u:User {user_id: $user_id})
RETURN [u.user_id] + [(u)-[:SIMILAR_TO]-(v:User) | v.user_id] AS users,
       [(u)-[:INTERESTED_IN]->(i:Item) | i.item_id] AS items,
       [(u)-[:INTERESTED_IN]->(c:Category) | c.name] AS categories"""

# The user's share of discovery popularity: 1 at first_ts for each item they bought.
FORGET_DISCOVERY = """MATCH (u:User {user_id: $user_id})-[r:INTERESTED_IN]->(i:Item)
WHERE coalesce(r.n_purchase, 0) > 0 AND i.discovery IS NOT NULL
WITH i, 2.0 ^ (-(CASE WHEN i.discovery_ts > r.first_ts
                      THEN i.discovery_ts - r.first_ts ELSE 0.0 END) / $half_life) AS share
WITH i, CASE WHEN i.discovery - share > 1e-9 THEN i.discovery - share ELSE 0.0 END AS discovery
SET i.discovery = discovery,
    i.discovery_rank = CASE WHEN discovery > 0
                            THEN log(discovery) / log(2.0) + i.discovery_ts / $half_life END"""

FORGET_USER = """MATCH (u:User {user_id: $user_id})
OPTIONAL MATCH (v:User)-[:SIMILAR_TO]->(u)
SET v.relist = true
WITH DISTINCT u
DETACH DELETE u
RETURN count(u) AS deleted"""

# Starting a graph over (`tastegraph evaluate`, `tastegraph graph reset`): relationships first, in
# small transactions, so that no single transaction holds a node with all its edges. Implicit
# transactions: run with session.run. Indexes and constraints stay.
WIPE_RELATIONSHIPS = "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 20000 ROWS"
WIPE_NODES = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS"

# Who made this graph: `tastegraph evaluate` leaves one marker node in the graphs it builds, and
# touches only an empty graph or one holding that marker (unless told --wipe).
GRAPH_OWNER = """OPTIONAL MATCH (m:TastegraphEvaluationGraph)
WITH count(m) AS markers
OPTIONAL MATCH (n) WHERE NOT n:TastegraphEvaluationGraph
WITH markers, n LIMIT 1
RETURN markers, count(n) AS others"""
MARK_EVALUATION_GRAPH = """MERGE (m:TastegraphEvaluationGraph)
ON CREATE SET m.created_ts = $now"""

# The connected user's own password (`tastegraph graph rotate-password`; on the system database).
CHANGE_OWN_PASSWORD = "ALTER CURRENT USER SET PASSWORD FROM $old TO $new"

# --- canonical dump (tests: replay and crash comparisons) ------------------------------------
DUMP_NODES = """MATCH (n)
RETURN labels(n) AS labels, properties(n) AS props"""

DUMP_RELATIONSHIPS = """MATCH (a)-[r]->(b)
RETURN type(r) AS type, labels(a) AS a_labels, properties(a) AS a_props,
       labels(b) AS b_labels, properties(b) AS b_props, properties(r) AS props"""

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
