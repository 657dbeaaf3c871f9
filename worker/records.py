"""Event types of the worker, one place. Each output type has a JSON Schema in schemas/."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LEVELS = ("very_negative", "negative", "neutral", "positive", "very_positive")
CLASSES = ("negative", "neutral", "positive")  # satisfaction and sentiment
# 2: satisfaction, sentiment, schema_version; score from both heads. 3: emotions, aspects
# (enriched turns), emotion, aspect (alerts); null where those models are not served.
# 4: the alert rule negative_sentiment (a plain complaint, read by the sentiment view)
SCHEMA_VERSION = 4
# Fixed namespace: event ids are uuid5(namespace, "<conversation_id>/<turn_id>[/alert]").
EVENT_NAMESPACE = uuid.UUID("5f0f2a64-3c1d-4c8e-9a55-0c6a4e1f7b21")


def event_id(conversation_id: str, turn_id: str, kind: str = "turn") -> str:
    """Deterministic id: replaying the same turn always produces the same event id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{kind}\x1f{conversation_id}\x1f{turn_id}"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Turn:
    conversation_id: str
    turn_id: str
    seq: int
    role: str  # "customer" | "agent"
    text: str
    ts: str
    channel: str | None = None
    tenant: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def is_customer(self) -> bool:
        return self.role == "customer"


@dataclass(frozen=True, slots=True)
class ConversationEnd:
    conversation_id: str
    ts: str
    reason: str | None = None
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input message cannot be used: `reason` is a machine-readable code."""

    reason: str
    detail: str
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key_b64: str | None
    original_b64: str
    conversation_id: str | None
    received_at: str = field(default_factory=now_iso)

    @classmethod
    def of(cls, rejection: Rejection, raw: bytes | None, key: bytes | None, topic: str,
           partition: int, offset: int) -> DeadLetter:
        return cls(
            reason=rejection.reason,
            detail=rejection.detail,
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=None if key is None else base64.b64encode(key).decode(),
            original_b64=base64.b64encode(raw or b"").decode(),
            conversation_id=rejection.conversation_id,
        )


@dataclass(frozen=True, slots=True)
class EnrichedTurn:
    event_id: str
    conversation_id: str
    turn_id: str
    seq: int
    role: str
    ts: str
    label: str
    probs: dict[str, float]
    score: float
    running_score: float | None
    trend: float
    trend_label: str
    customer_turns: int
    topic_words: list[str]
    model: str
    satisfaction: dict[str, Any]  # {"label", "probs"}: USS 3 classes
    sentiment: dict[str, Any]  # {"label", "probs"}: explicit sentiment
    schema_version: int = SCHEMA_VERSION
    text: str | None = None
    channel: str | None = None
    tenant: str | None = None
    # {"probs": label -> probability, "labels": above threshold}; SemEval-2018 E-c labels
    emotions: dict[str, Any] | None = None
    # [{"text", "start", "end", "polarity", "confidence"}]: offsets index `text` (code points)
    aspects: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    event_id: str
    conversation_id: str
    turn_id: str
    seq: int
    ts: str
    rules: list[str]
    score: float
    running_score: float | None
    label: str
    negative_streak: int
    satisfaction: str  # the turn's satisfaction label
    sentiment: str  # the turn's sentiment label
    topic_words: list[str]
    schema_version: int = SCHEMA_VERSION
    channel: str | None = None
    tenant: str | None = None
    emotion: str | None = None  # the turn's top emotion, if any is above its threshold
    aspect: str | None = None  # the turn's top aspect term (a negative one first)
