"""One micro-batch of input messages -> dead letters, enriched turns, alerts and new states.

Pure apart from the `Scorer` calls, so it runs the same under Faust and in unit tests. Turns of
many conversations share one encoder call (length-bucketed); the step model then runs in
waves: the first new turn of every conversation in the batch, then the second, and so on,
because a turn needs the state its predecessor left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from worker.enrich import alert_explained, alert_for, enrich, with_explanation
from worker.infer import Explanation, Scorer
from worker.ingest import parse
from worker.records import Alert, ConversationEnd, DeadLetter, EnrichedTurn, Rejection, Turn
from worker.rules import AlertRules, apply_customer_score, signed, turn_score
from worker.state import ConversationState

Loader = Callable[[str], ConversationState | None]


@dataclass(frozen=True, slots=True)
class Message:
    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass
class BatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    enriched: list[EnrichedTurn] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    # conversation id -> (state to store, index of its last message in the batch)
    states: dict[str, tuple[ConversationState, int]] = field(default_factory=dict)
    duplicates: int = 0
    ended: int = 0

    def merge(self, part: BatchResult, index: int) -> None:
        """Add the result of a one-message batch that was message `index` of this batch."""
        self.dead_letters += part.dead_letters
        self.enriched += part.enriched
        self.alerts += part.alerts
        self.duplicates += part.duplicates
        self.ended += part.ended
        for cid, (state, _) in part.states.items():
            self.states[cid] = (state, index)


@dataclass
class TurnProcessor:
    scorer: Scorer
    rules: AlertRules
    model_name: str
    max_message_bytes: int = 65536
    echo_text: bool = True
    redact_pii: bool = False

    def dead_letter(self, result: BatchResult, msg: Message, rejection: Rejection) -> None:
        result.dead_letters.append(DeadLetter.of(rejection, msg.value, msg.key, msg.topic,
                                                 msg.partition, msg.offset))

    async def process(self, messages: list[Message], load: Loader) -> BatchResult:
        """`load` returns a fresh copy of a conversation's stored state (or None): nothing
        passed in is mutated, so a failed call can be retried as it is."""
        result = BatchResult()
        now = time.time()
        states: dict[str, ConversationState] = {}
        plans: dict[str, list[tuple[int, Turn]]] = {}
        ending: set[str] = set()
        planned_ids: dict[str, set[str]] = {}
        last_seq: dict[str, int] = {}

        for idx, msg in enumerate(messages):
            item = parse(msg.value, msg.key, self.max_message_bytes)
            if isinstance(item, Rejection):
                self.dead_letter(result, msg, item)
                continue
            cid = item.conversation_id
            if cid not in states:
                states[cid] = load(cid) or ConversationState(cid)
                plans[cid], planned_ids[cid] = [], set()
                last_seq[cid] = states[cid].last_seq
            state = states[cid]
            result.states[cid] = (state, idx)
            if state.consumed(msg.partition, msg.offset):
                result.duplicates += 1  # redelivered after a restart: already applied
                continue
            state.consume(msg.partition, msg.offset, now)
            if isinstance(item, ConversationEnd):
                if not state.ended:
                    ending.add(cid)
                continue
            if state.seen(item.turn_id) or item.turn_id in planned_ids[cid]:
                result.duplicates += 1  # sent twice: its event was emitted when first applied
            elif state.ended or cid in ending:
                self.dead_letter(result, msg, Rejection("conversation_ended",
                                                  "turn after the conversation's end event", cid))
            elif item.seq <= last_seq[cid]:
                self.dead_letter(result, msg, Rejection(
                    "out_of_order", f"seq {item.seq} <= last applied {last_seq[cid]}", cid))
            else:
                plans[cid].append((idx, item))
                planned_ids[cid].add(item.turn_id)
                last_seq[cid] = item.seq

        turns = [t for plan in plans.values() for _, t in plan]
        if turns:
            texts = [t.text for t in turns]
            encoded = await self.scorer.encode_turns(texts)
            # the explaining models run while the step waves do (both read the one encoder pass)
            explaining = (asyncio.ensure_future(self.scorer.explain(encoded, texts))
                          if self.scorer.explains else None)
            try:
                rows = await self._waves(result, states, plans, turns, texts, encoded.embeddings)
                if explaining is not None:
                    self._attach(result, rows, await explaining)
            finally:
                if explaining is not None and not explaining.done():
                    explaining.cancel()
                    with contextlib.suppress(BaseException):
                        await explaining

        for cid in ending:
            states[cid].end()
            result.ended += 1
        return result

    async def _waves(self, result: BatchResult, states: dict[str, ConversationState],
                     plans: dict[str, list[tuple[int, Turn]]], turns: list[Turn],
                     texts: list[str], embeddings: np.ndarray) -> list[int]:
        """The step model over the planned turns, wave by wave; returns, for each enriched
        event appended, its turn's row in `turns`."""
        event_rows: list[int] = []
        bows = self.scorer.bag_of_words.dense(texts)
        row_of = {id(t): i for i, t in enumerate(turns)}
        spec = self.scorer.state_spec
        waves = max(len(p) for p in plans.values())
        for w in range(waves):
            wave = [(cid, plan[w][1]) for cid, plan in plans.items() if len(plan) > w]
            rows = [row_of[id(t)] for _, t in wave]
            inputs = {
                "embedding": embeddings[rows],
                "is_customer": np.array([[1.0 if t.is_customer else 0.0] for _, t in wave],
                                        np.float32),
                "turn_bow": bows[rows],
                **{name: np.stack([states[cid].tensor(name, dtype, shape) for cid, _ in wave])
                   for name, (dtype, shape) in spec.items()}}
            out = await self.scorer.step(inputs)
            for i, (cid, turn) in enumerate(wave):
                self._apply(result, states[cid], turn,
                            {h: out[h][i] for h in ("probs", "satisfaction", "sentiment")},
                            self.scorer.bag_of_words.words(out["topic_words"][i]),
                            {name: out[name][i] for name in spec})
                event_rows.append(rows[i])
        return event_rows

    @staticmethod
    def _attach(result: BatchResult, event_rows: list[int],
                explanations: list[Explanation]) -> None:
        """Emotions and aspects into this batch's events, and the top ones into its alerts."""
        for i, row in enumerate(event_rows):
            result.enriched[i] = with_explanation(result.enriched[i], *explanations[row])
        by_event = {e.event_id: e for e in result.enriched}
        result.alerts = [alert_explained(a, by_event[a.event_id]) for a in result.alerts]

    def _apply(self, result: BatchResult, state: ConversationState, turn: Turn,
               heads: dict[str, np.ndarray], topic_words: list[str],
               tensors: dict[str, np.ndarray]) -> None:
        score = turn_score(heads["satisfaction"], heads["sentiment"])
        fired = (apply_customer_score(state, score, self.rules, signed(heads["sentiment"]))
                 if turn.is_customer else [])
        state.set_tensors(tensors)
        state.applied(turn.turn_id, turn.seq)
        event = enrich(turn, heads, score, topic_words, state, self.model_name, self.echo_text,
                       self.redact_pii)
        result.enriched.append(event)
        if fired:
            result.alerts.append(alert_for(event, fired, state))
