"""Prometheus metrics of the worker, served at /metrics on the health port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

MESSAGES_IN = Counter("chat_messages_in_total", "input messages consumed", registry=REGISTRY)
TURNS_ENRICHED = Counter("chat_turns_enriched_total", "enriched turns emitted",
                         registry=REGISTRY)
DEAD_LETTERS = Counter("chat_dead_letters_total", "messages sent to the dead-letter topic",
                       ["reason"], registry=REGISTRY)
DUPLICATES = Counter("chat_duplicate_turns_total", "redelivered turns skipped",
                     registry=REGISTRY)
ALERTS = Counter("chat_alerts_total", "alerts raised, by rule", ["rule"], registry=REGISTRY)
CONVERSATIONS_ENDED = Counter("chat_conversations_ended_total", "end-of-conversation events",
                              registry=REGISTRY)
STATES_EXPIRED = Counter("chat_states_expired_total", "idle conversation states dropped",
                         registry=REGISTRY)
RETRIES = Counter("chat_triton_retries_total", "retried Triton calls", ["kind"],
                  registry=REGISTRY)
BATCH_SIZE = Histogram("chat_batch_messages", "messages per micro-batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=REGISTRY)
TRITON_SECONDS = Histogram("chat_triton_call_seconds", "Triton call time", ["model"],
                           buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                           registry=REGISTRY)
TURN_TO_EVENT_SECONDS = Histogram(
    "chat_turn_to_event_seconds", "turn timestamp to enriched event sent",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
ACTIVE_CONVERSATIONS = Gauge("chat_active_conversations",
                             "conversations with state in this worker's table partitions",
                             registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "chat_consumer_lag", "input messages not yet processed and committed: the partition's "
    "highwater minus the committed offset (minus the read position before the first commit)",
    ["topic", "partition"], registry=REGISTRY)
TRITON_HEALTHY = Gauge("chat_triton_healthy", "1 while Triton calls succeed",
                       registry=REGISTRY)
