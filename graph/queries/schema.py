"""Schema: constraints, range indexes and the vector indexes (created if missing)."""

from __future__ import annotations

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
    "CREATE INDEX item_co_dirty IF NOT EXISTS FOR (i:Item) ON (i.co_dirty)",
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
