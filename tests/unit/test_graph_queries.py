"""The Cypher of graph/queries.py: exact text of the write queries, parameters only."""

from __future__ import annotations

import re

from graph import queries as q


def all_queries() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in vars(q).items():
        if name.isupper() and isinstance(value, str) and not name.endswith("_INDEX"):
            out[name] = value
        elif name.isupper() and isinstance(value, tuple):
            out.update({f"{name}[{i}]": v for i, v in enumerate(value)})
    return out


def test_merge_users() -> None:
    assert q.MERGE_USERS == (
        "UNWIND $rows AS row\n"
        "MERGE (u:User {user_id: row.user_id})\n"
        "SET u.first_ts = CASE WHEN u.first_ts IS NULL OR row.first_ts < u.first_ts\n"
        "                      THEN row.first_ts ELSE u.first_ts END,\n"
        "    u.last_ts = CASE WHEN u.last_ts IS NULL OR row.last_ts > u.last_ts\n"
        "                     THEN row.last_ts ELSE u.last_ts END,\n"
        "    u.dirty = true"
    )


def test_merge_items() -> None:
    assert q.MERGE_ITEMS == (
        "UNWIND $rows AS row\n"
        "MERGE (i:Item {item_id: row.item_id})\n"
        "SET i.title = coalesce(row.title, i.title),\n"
        "    i.description = coalesce(row.description, i.description),\n"
        "    i.category = coalesce(row.category, i.category),\n"
        "    i.embedding_stale = CASE WHEN row.text_changed THEN true ELSE i.embedding_stale END"
    )


def test_item_category_replaces_the_old_edge() -> None:
    assert q.SET_ITEM_CATEGORY == (
        "UNWIND $rows AS row\n"
        "MATCH (i:Item {item_id: row.item_id})\n"
        "MERGE (c:Category {name: row.category})\n"
        "WITH i, c\n"
        "OPTIONAL MATCH (i)-[old:IN_CATEGORY]->(other:Category)\n"
        "WHERE other <> c\n"
        "DELETE old\n"
        "WITH DISTINCT i, c\n"
        "MERGE (i)-[:IN_CATEGORY]->(c)"
    )


def test_interest_edges_are_written_as_absolute_values() -> None:
    assert q.MERGE_ITEM_EDGES == (
        "UNWIND $rows AS row\n"
        "MATCH (u:User {user_id: row.user_id})\n"
        "MATCH (i:Item {item_id: row.item_id})\n"
        "MERGE (u)-[r:INTERESTED_IN]->(i)\n"
        "SET r.strength = row.strength, r.last_ts = row.last_ts, r.first_ts = row.first_ts,\n"
        "    r += row.counts"
    )
    assert q.MERGE_CATEGORY_EDGES == (
        "UNWIND $rows AS row\n"
        "MATCH (u:User {user_id: row.user_id})\n"
        "MERGE (c:Category {name: row.category})\n"
        "MERGE (u)-[r:INTERESTED_IN]->(c)\n"
        "SET r.strength = row.strength, r.last_ts = row.last_ts, r.first_ts = row.first_ts,\n"
        "    r.day_index = row.day_index, r.day_weight = row.day_weight,\n"
        "    r += row.counts"
    )


def test_item_popularity_embeddings_and_user_text() -> None:
    assert q.SET_ITEM_POPULARITY == (
        "UNWIND $rows AS row\n"
        "MATCH (i:Item {item_id: row.item_id})\n"
        "SET i.popularity = row.popularity, i.popularity_ts = row.ts,\n"
        "    i.popularity_rank = CASE WHEN row.popularity > 0 THEN "
        "log(row.popularity) / log(2.0) + row.ts / $half_life END"
    )
    assert q.SET_ITEM_EMBEDDINGS == (
        "UNWIND $rows AS row\n"
        "MATCH (i:Item {item_id: row.item_id})\n"
        "SET i.embedding = row.embedding, i.embedding_version = $version,\n"
        "    i.embedding_stale = false, i.dirty = true"
    )
    assert q.SET_USER_TEXT == (
        "UNWIND $rows AS row\n"
        "MATCH (u:User {user_id: row.user_id})\n"
        "SET u.text_vec = row.vector, u.text_ts = row.ts, u.text_version = row.version"
    )


def test_exactly_once_bookkeeping() -> None:
    assert q.LOCK_OFFSETS == (
        "UNWIND $rows AS row\n"
        "MERGE (p:PartitionOffset {key: row.key})\n"
        "ON CREATE SET p.topic = row.topic, p.partition = row.partition, p.offset = -1\n"
        "SET p._lock = true\n"
        "REMOVE p._lock\n"
        "RETURN p.key AS key, p.offset AS offset"
    )
    assert q.SET_OFFSETS == (
        "UNWIND $rows AS row\n"
        "MATCH (p:PartitionOffset {key: row.key})\n"
        "SET p.offset = CASE WHEN row.offset > p.offset THEN row.offset ELSE p.offset END"
    )
    assert q.CLAIM_EVENTS == (
        "UNWIND $rows AS row\n"
        "MERGE (e:AppliedEvent {event_id: row.event_id})\n"
        "ON CREATE SET e.ts = row.ts, e.claim = $claim\n"
        "RETURN e.event_id AS event_id, coalesce(e.claim = $claim, false) AS fresh"
    )
    assert q.RELEASE_CLAIMS == (
        "UNWIND $ids AS id\nMATCH (e:AppliedEvent {event_id: id})\nREMOVE e.claim"
    )
    assert q.LOCK_USERS == (
        "UNWIND $ids AS id\nMERGE (u:User {user_id: id})\nSET u._lock = true\nREMOVE u._lock"
    )
    assert q.LOCK_ITEMS == (
        "UNWIND $ids AS id\nMERGE (i:Item {item_id: id})\nSET i._lock = true\nREMOVE i._lock"
    )


def test_writes_use_unwind_and_merge_on_stable_keys() -> None:
    writes = [
        q.MERGE_USERS,
        q.MERGE_ITEMS,
        q.MERGE_ITEM_EDGES,
        q.MERGE_CATEGORY_EDGES,
        q.CLAIM_EVENTS,
        q.LOCK_OFFSETS,
    ]
    for text in writes:
        assert text.startswith("UNWIND $rows AS row\n")
        assert "MERGE" in text
        assert re.search(r"\bCREATE\s*\(", text) is None  # never CREATE: replays must not duplicate


def test_no_literal_values_in_queries() -> None:
    """Values come in as parameters; the only string literals are fixed index names and options."""
    allowed = {"'user_embedding'", "'item_embedding'", "'cosine'"}
    for name, text in all_queries().items():
        literals = set(re.findall(r"'[^']*'|\"[^\"]*\"", text))
        assert literals <= allowed, (name, literals)


def test_decay_to_now_is_the_same_expression_everywhere() -> None:
    assert q.R_NOW == (
        "r.strength * 2.0 ^ (-(CASE WHEN $now > r.last_ts THEN $now - r.last_ts ELSE 0.0 END)"
        " / $half_life)"
    )
    for text in (q.RECOMMEND_COLLABORATIVE, q.AUDIENCE_CATEGORY, q.CHURN_RISK, q.INTEREST_TRENDS):
        assert q.R_NOW in text


def test_every_strategy_excludes_purchases() -> None:
    for text in (q.RECOMMEND_CONTENT, q.RECOMMEND_COLLABORATIVE):
        assert q.NOT_PURCHASED in text
    assert "WHERE coalesce(p.n_purchase, 0) > 0" in q.RECOMMEND_POPULAR
    for text in (q.RECOMMEND_CONTENT, q.RECOMMEND_COLLABORATIVE, q.RECOMMEND_POPULAR):
        assert "RETURN i.item_id AS item_id, i.category AS category, score" in text
