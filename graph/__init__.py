"""The interest graph: decay math, Cypher query library and the Neo4j store. No Kafka, no torch."""
