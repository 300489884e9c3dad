"""The read queries besides the recommendations: explain, similar users, audiences, the cart,
interest trends and churn risk."""

from __future__ import annotations

from graph.queries.fragments import (
    DISCOVERY_NOW,
    POP_NOW,
    R_NOW,
    REVERSED_CO_ENGAGED,
    TOP_ITEMS,
    decayed,
)

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

# The co-engaged score's terms: each of the user's $history strongest items engaged together
# with the item, its similarity and its share of the mean, through its own CO_ENGAGED list
# (RECOMMEND_CO_ENGAGED) or, where that list misses the item, through the item's list
# (RECOMMEND_CO_ENGAGED_IN; its cap of $inbound lists per user item is not applied here).
EXPLAIN_CO_ENGAGED = f"""{TOP_ITEMS}
MATCH (i:Item {{item_id: $item_id}})
CALL (j, i) {{
  MATCH (j)-[c:CO_ENGAGED]->(i)
  RETURN c.score AS similarity, false AS from_item
  UNION
  MATCH (i)-[c:CO_ENGAGED]->(j)
  WHERE NOT EXISTS {{ (j)-[:CO_ENGAGED]->(i) }}
  RETURN {REVERSED_CO_ENGAGED} AS similarity, true AS from_item
}}
RETURN j.item_id AS item_id, similarity, similarity / n AS contribution, from_item
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
WITH u, sum({decayed("r1.strength", "r1.last_ts")}) AS cart_interest
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
