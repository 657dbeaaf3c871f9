"""Streaming sentiment worker: Kafka turns -> dialogue state -> Triton -> enriched events."""
