"""The local Apache Kafka (KRaft, one node) and Neo4j Community that `tastegraph services` runs.

Both run on the machine's JDK from Maven Central artifacts (no Docker). Everything they need or
write lives under ``settings.home / "services"``; every port derives from
``settings.local_kafka_port`` and ``settings.local_neo4j_port``, so instances with distinct homes
and ports never collide.
"""

from services.control import ServiceState, down, status, up

__all__ = ["ServiceState", "down", "status", "up"]
