"""The Cypher of graph/queries/: exact text of the write queries, parameters only."""

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


def test_write_users_keeps_the_earliest_first_and_latest_last_timestamp() -> None:
    text = q.WRITE_USERS
    assert text.startswith("UNWIND $rows AS row\nMERGE (u:User {user_id: row.user_id})\n")
    assert "CASE WHEN u.first_ts IS NULL OR row.first_ts < u.first_ts" in text
    assert "CASE WHEN u.last_ts IS NULL OR row.last_ts > u.last_ts" in text
    assert "u.dirty = true" in text
    # the free-text state is written only for rows that bring one
    assert "FOREACH (_ IN CASE WHEN row.vector IS NULL THEN [] ELSE [1] END |" in text


def test_write_items_text_popularity_embedding_then_category() -> None:
    text = q.WRITE_ITEMS
    assert text.startswith("UNWIND $rows AS row\nMERGE (i:Item {item_id: row.item_id})\n")
    parts = [
        "i.title = coalesce(row.title, i.title)",
        "i.embedding_stale = CASE WHEN row.text_changed THEN true ELSE i.embedding_stale END",
        "i.popularity = row.popularity",
        "log(row.popularity) / log(2.0) + row.popularity_ts / $half_life",
        "i.embedding = row.embedding, i.embedding_version = $version",
        "MERGE (c:Category {name: row.category})",
        "WHERE other <> c\nDELETE old",
        "MERGE (i)-[:IN_CATEGORY]->(c)",
    ]
    at = [text.index(p) for p in parts]
    assert at == sorted(at)  # a new embedding clears the staleness a changed text just set


def test_interest_edges_are_written_as_absolute_values() -> None:
    assert q.MERGE_ITEM_EDGES == (
        "UNWIND $rows AS row\n"
        "MATCH (u:User {user_id: row.user_id})\n"
        "MATCH (i:Item {item_id: row.item_id})\n"
        "MERGE (u)-[r:INTERESTED_IN]->(i)\n"
        "ON CREATE SET i.co_dirty = true\n"  # a new engager: the item's CO_ENGAGED list is redone
        "SET r = row.props"
    )
    assert q.MERGE_CATEGORY_EDGES == (
        "UNWIND $rows AS row\n"
        "MATCH (u:User {user_id: row.user_id})\n"
        "MERGE (c:Category {name: row.category})\n"
        "MERGE (u)-[r:INTERESTED_IN]->(c)\n"
        "SET r = row.props"
    )
    # every property at once: a count that drops to nothing (an item moved out) goes too
    assert q.DELETE_CATEGORY_EDGES.endswith("DELETE r")


def test_reembedding_sets_the_version_with_the_vector() -> None:
    assert q.SET_ITEM_EMBEDDINGS == (
        "UNWIND $rows AS row\n"
        "MATCH (i:Item {item_id: row.item_id})\n"
        "SET i.embedding = row.embedding, i.embedding_version = $version,\n"
        "    i.embedding_stale = false, i.dirty = true"
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
    assert "SET c._lock = true" in q.LOCK_CATEGORIES
    for lock in (q.LOCK_READ_USERS, q.LOCK_READ_ITEMS):
        # the lock is taken (a write) before anything of the node is read
        assert lock.index("SET u._lock = true" if "User" in lock else "SET i._lock = true") < (
            lock.index("RETURN")
        )


def test_writes_use_unwind_and_merge_on_stable_keys() -> None:
    writes = [
        q.WRITE_USERS,
        q.WRITE_ITEMS,
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
    assert "WHERE (coalesce(p.n_purchase, 0) > 0 AND $exclude_purchased) OR $exclude_seen" in (
        q.RECOMMEND_POPULAR
    )
    assert q.NOT_PURCHASED.startswith("($exclude_purchased = false OR NOT EXISTS")
    for text in (q.RECOMMEND_CONTENT, q.RECOMMEND_COLLABORATIVE, q.RECOMMEND_POPULAR):
        assert "RETURN i.item_id AS item_id, i.category AS category, score" in text
