"""What the dashboard holds: recent conversations and alerts, bounded in count, turns and age.
Pure: fed with enriched events and alerts, read as JSON-ready dicts."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

ALERT_RISK_S = 600.0  # a conversation alerted this recently sorts above the others


@dataclass
class Conversation:
    id: str
    tenant: str | None = None
    channel: str | None = None
    turns: deque[dict[str, Any]] = field(default_factory=deque)
    scores: deque[float] = field(default_factory=deque)  # running score after each customer turn
    running_score: float | None = None
    trend_label: str = "stable"
    customer_turns: int = 0
    topic_words: list[str] = field(default_factory=list)
    alerts: int = 0
    last_alert_at: float | None = None
    seen_at: float = 0.0  # time of the newest event (its Kafka timestamp), epoch seconds

    def risk(self, now: float) -> float:
        """Higher is worse: the negated running score, plus 1 while an alert is recent."""
        base = -(self.running_score or 0.0)
        recent = self.last_alert_at is not None and now - self.last_alert_at < ALERT_RISK_S
        return round(base + (1.0 if recent else 0.0), 4)

    def summary(self, now: float) -> dict[str, Any]:
        last = self.turns[-1] if self.turns else {}
        return {"id": self.id, "tenant": self.tenant, "channel": self.channel,
                "risk": self.risk(now), "running_score": self.running_score,
                "trend_label": self.trend_label, "customer_turns": self.customer_turns,
                "turns": last.get("seq", -1) + 1, "scores": list(self.scores),
                "topic_words": self.topic_words, "alerts": self.alerts,
                "last_label": last.get("satisfaction"), "last_ts": last.get("ts")}


def turn_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields of an enriched event the page shows for one turn (text only if echoed)."""
    sat = doc.get("satisfaction") or {}
    sent = doc.get("sentiment") or {}
    view = {"seq": doc["seq"], "turn_id": doc["turn_id"], "role": doc["role"], "ts": doc["ts"],
            "score": doc["score"], "running_score": doc.get("running_score"),
            "label": doc["label"], "probs": doc["probs"],
            "satisfaction": sat.get("label"), "satisfaction_probs": sat.get("probs"),
            "sentiment": sent.get("label"), "sentiment_probs": sent.get("probs"),
            "topic_words": doc.get("topic_words", []), "text": doc.get("text")}
    for extra in ("emotions", "aspects"):  # later schema versions: shown when present
        if extra in doc:
            view[extra] = doc[extra]
    return view


def alert_view(doc: dict[str, Any], text: str | None,
               raised_ms: int | None = None) -> dict[str, Any]:
    """`raised_ms`: the alert record's Kafka timestamp (when the worker produced it)."""
    return {"alert_id": doc["alert_id"], "raised_ms": raised_ms,
            "conversation_id": doc["conversation_id"], "seq": doc["seq"], "ts": doc["ts"],
            "rules": doc["rules"], "score": doc["score"],
            "running_score": doc.get("running_score"),
            "satisfaction": doc.get("satisfaction"), "sentiment": doc.get("sentiment"),
            "topic_words": doc.get("topic_words", []), "text": text,
            "emotion": doc.get("emotion"), "aspect": doc.get("aspect")}


class Board:
    """Conversations (least recently updated evicted first), each with its last turns, and the
    newest alerts. Every bound is a setting; `expire` drops conversations idle for `ttl_s`."""

    def __init__(self, max_conversations: int = 500, max_turns: int = 200,
                 max_alerts: int = 200, ttl_s: float = 1800.0,
                 clock: Any = time.time) -> None:
        self.max_conversations = max_conversations
        self.max_turns = max_turns
        self.ttl_s = ttl_s
        self.clock = clock
        self.conversations: OrderedDict[str, Conversation] = OrderedDict()
        self.alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self._alert_ids: set[str] = set()
        self._turn_ids: set[str] = set()

    def _conversation(self, cid: str, at: float) -> tuple[Conversation, list[str]]:
        conv = self.conversations.get(cid)
        evicted: list[str] = []
        if conv is None:
            conv = self.conversations[cid] = Conversation(
                cid, turns=deque(maxlen=self.max_turns), scores=deque(maxlen=self.max_turns))
            while len(self.conversations) > self.max_conversations:
                evicted.append(self._drop(next(iter(self.conversations))))
        self.conversations.move_to_end(cid)
        conv.seen_at = max(conv.seen_at, at)
        return conv, evicted

    def _stale(self, at: float) -> bool:
        """An event older than the idle limit (read back after a restart) is not shown."""
        return at < self.clock() - self.ttl_s

    def _drop(self, cid: str) -> str:
        conv = self.conversations.pop(cid)
        self._turn_ids.difference_update(t["turn_id"] for t in conv.turns)
        return cid

    def add_turn(self, doc: dict[str, Any], at: float | None = None) -> dict[str, Any] | None:
        """Apply one enriched event produced at `at` (default now); return the update for the
        page, or None for a duplicate or a stale event."""
        at = self.clock() if at is None else at
        if doc["turn_id"] in self._turn_ids or self._stale(at):
            return None  # at-least-once delivery: the worker may emit a turn twice
        conv, evicted = self._conversation(doc["conversation_id"], at)
        if conv.turns and len(conv.turns) == conv.turns.maxlen:
            self._turn_ids.discard(conv.turns[0]["turn_id"])
        turn = turn_view(doc)
        conv.turns.append(turn)
        # an alert read before its turn (another topic) gets the turn's text now
        texted = [a for a in self.alerts if a["text"] is None and a["seq"] == turn["seq"]
                  and a["conversation_id"] == conv.id and turn["text"] is not None]
        for a in texted:
            a["text"] = turn["text"]
        self._turn_ids.add(doc["turn_id"])
        conv.tenant, conv.channel = doc.get("tenant"), doc.get("channel")
        conv.topic_words = doc.get("topic_words", [])
        conv.trend_label = doc.get("trend_label", "stable")
        if doc["role"] == "customer" and doc.get("running_score") is not None:
            conv.running_score = doc["running_score"]
            conv.customer_turns = doc.get("customer_turns", conv.customer_turns)
            conv.scores.append(round(doc["running_score"], 4))
        now = self.clock()
        return {"conversation": conv.summary(now), "turn": turn, "evicted": evicted,
                "alert_texts": {a["alert_id"]: a["text"] for a in texted}}

    def add_alert(self, doc: dict[str, Any], raised_ms: int | None = None
                  ) -> dict[str, Any] | None:
        at = self.clock() if raised_ms is None else raised_ms / 1000
        if doc["alert_id"] in self._alert_ids or self._stale(at):
            return None
        conv, evicted = self._conversation(doc["conversation_id"], at)
        text = next((t.get("text") for t in reversed(conv.turns) if t["seq"] == doc["seq"]), None)
        if len(self.alerts) == self.alerts.maxlen:
            self._alert_ids.discard(self.alerts[0]["alert_id"])
        alert = alert_view(doc, text, raised_ms)
        self.alerts.append(alert)
        self._alert_ids.add(doc["alert_id"])
        conv.alerts += 1
        conv.last_alert_at = max(conv.last_alert_at or 0.0, at)
        return {"conversation": conv.summary(self.clock()), "alert": alert,
                "evicted": evicted}

    def expire(self) -> list[str]:
        """Drop conversations without an event for `ttl_s`; return their ids."""
        cutoff = self.clock() - self.ttl_s
        gone = [cid for cid, c in self.conversations.items() if c.seen_at < cutoff]
        return [self._drop(cid) for cid in gone]

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        convs = sorted((c.summary(now) for c in self.conversations.values()),
                       key=lambda s: -s["risk"])
        return {"conversations": convs, "alerts": list(reversed(self.alerts))}

    def detail(self, cid: str) -> dict[str, Any] | None:
        conv = self.conversations.get(cid)
        if conv is None:
            return None
        return {"conversation": conv.summary(self.clock()), "turns": list(conv.turns)}
