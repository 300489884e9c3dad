"""Text encoders: BERT-family sentence embeddings, batched by token budget. No Kafka, no Neo4j."""
