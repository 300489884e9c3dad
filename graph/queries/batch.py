"""The batch write path: the reads inside the write transaction (locks in the project's order,
the exactly-once bookkeeping, the stored state the fold needs), then the writes, absolute values
computed from those reads (graph/batch.py runs them)."""

from __future__ import annotations

from graph.queries.fragments import DISCOVERY_RANK, POPULARITY_RANK

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

# One row per item of the batch: its text fields (null: keep), popularity and new embedding (null:
# unchanged), then its category edge. A changed text marks the embedding stale unless the row
# brings the new one. The ranks: graph/queries/fragments.py.
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

# A new edge changes the item's engagers: its CO_ENGAGED list is recomputed (graph/refresh.py).
MERGE_ITEM_EDGES = """UNWIND $rows AS row
MATCH (u:User {user_id: row.user_id})
MATCH (i:Item {item_id: row.item_id})
MERGE (u)-[r:INTERESTED_IN]->(i)
ON CREATE SET i.co_dirty = true
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
