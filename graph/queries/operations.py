"""Operations on the whole graph or a user: erasure (forget, prefix delete, wipe), the evaluation
graph's marker, the password change and the canonical dump."""

from __future__ import annotations

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
OPTIONAL MATCH (u)-[:INTERESTED_IN]->(i:Item)
SET i.co_dirty = true
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
