"""(turn, probabilities, state after the turn, fired rules) -> EnrichedTurn and Alert (pure)."""

from __future__ import annotations

import numpy as np

from worker.records import LEVELS, Alert, EnrichedTurn, Turn, event_id
from worker.redact import redact
from worker.rules import trend_of
from worker.state import ConversationState


def enrich(turn: Turn, probs: np.ndarray, score: float, topic_words: list[str],
           state: ConversationState, model: str, echo_text: bool,
           redact_pii: bool = False) -> EnrichedTurn:
    slope, word = trend_of(state.recent_scores)
    p = probs.astype(np.float64)
    p = p / p.sum()
    return EnrichedTurn(
        event_id=event_id(turn.conversation_id, turn.turn_id),
        conversation_id=turn.conversation_id,
        turn_id=turn.turn_id,
        seq=turn.seq,
        role=turn.role,
        ts=turn.ts,
        label=LEVELS[int(p.argmax())],
        probs={name: round(float(v), 6) for name, v in zip(LEVELS, p, strict=True)},
        score=round(score, 6),
        running_score=None if state.running_score is None else round(state.running_score, 6),
        trend=round(slope, 6),
        trend_label=word,
        customer_turns=state.customer_turns,
        topic_words=topic_words,
        model=model,
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
        channel=event.channel,
        tenant=event.tenant,
    )

