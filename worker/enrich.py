"""(turn, probabilities, state after the turn, fired rules) -> EnrichedTurn and Alert (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from worker.explain import top_aspect, top_emotion
from worker.records import CLASSES, LEVELS, Alert, EnrichedTurn, Turn, event_id
from worker.redact import redact
from worker.rules import trend_of
from worker.state import ConversationState


def distribution(probs: np.ndarray, names: tuple[str, ...]) -> dict:
    p = probs.astype(np.float64)
    p = p / p.sum()
    return {"label": names[int(p.argmax())],
            "probs": {n: round(float(v), 6) for n, v in zip(names, p, strict=True)}}


def enrich(turn: Turn, heads: dict[str, np.ndarray], score: float, topic_words: list[str],
           state: ConversationState, model: str, echo_text: bool,
           redact_pii: bool = False) -> EnrichedTurn:
    """`heads`: the step model's calibrated "probs" (5 levels), "satisfaction", "sentiment"."""
    slope, word = trend_of(state.recent_scores)
    levels = distribution(heads["probs"], LEVELS)
    return EnrichedTurn(
        event_id=event_id(turn.conversation_id, turn.turn_id),
        conversation_id=turn.conversation_id,
        turn_id=turn.turn_id,
        seq=turn.seq,
        role=turn.role,
        ts=turn.ts,
        label=levels["label"],
        probs=levels["probs"],
        score=round(score, 6),
        running_score=None if state.running_score is None else round(state.running_score, 6),
        trend=round(slope, 6),
        trend_label=word,
        customer_turns=state.customer_turns,
        topic_words=topic_words,
        model=model,
        satisfaction=distribution(heads["satisfaction"], CLASSES),
        sentiment=distribution(heads["sentiment"], CLASSES),
        text=(redact(turn.text) if redact_pii else turn.text) if echo_text else None,
        channel=turn.channel,
        tenant=turn.tenant,
    )


def alert_for(event: EnrichedTurn, rules: list[str], state: ConversationState) -> Alert:
    return Alert(
        alert_id=event_id(event.conversation_id, event.turn_id, kind="alert"),
        event_id=event.event_id,
        conversation_id=event.conversation_id,
        turn_id=event.turn_id,
        seq=event.seq,
        ts=event.ts,
        rules=rules,
        score=event.score,
        running_score=event.running_score,
        label=event.label,
        negative_streak=state.negative_streak,
        satisfaction=event.satisfaction["label"],
        sentiment=event.sentiment["label"],
        topic_words=event.topic_words,
        channel=event.channel,
        tenant=event.tenant,
    )



def with_explanation(event: EnrichedTurn, emotions: dict[str, Any] | None,
                     aspects: list[dict[str, Any]] | None) -> EnrichedTurn:
    return replace(event, emotions=emotions, aspects=aspects)


def alert_explained(alert: Alert, event: EnrichedTurn) -> Alert:
    """The alert names its turn's top emotion and aspect ("anger · refund")."""
    return replace(alert, emotion=top_emotion(event.emotions), aspect=top_aspect(event.aspects))
