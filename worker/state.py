"""Per-conversation dialogue state, kept in the worker's changelog-backed table (pure logic).

The served models are stateless: the head's recurrent state `h` is carried here and goes to
Triton and back as a tensor with every turn.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import orjson

RECENT_TURN_IDS = 16  # enough to tell a redelivered turn from an out-of-order one


@dataclass(slots=True)
class ConversationState:
    conversation_id: str
    last_seq: int = -1
    turns: int = 0
    h_b64: str | None = None  # float32 recurrent state, base64 (None = zeros)
    recent_turn_ids: list[str] = field(default_factory=list)
    customer_turns: int = 0
    running_score: float | None = None
    recent_scores: list[float] = field(default_factory=list)
    negative_streak: int = 0
    turns_since_alert: int | None = None  # customer turns since the last alert
    ended: bool = False
    # the last input message of this conversation already reflected here: after a restart,
    # messages at or before it are redeliveries, however many turns back they are
    last_partition: int = -1
    last_offset: int = -1
    updated_at: float = 0.0  # wall-clock seconds of the last message: idle expiry reads it

    def hidden(self, size: int) -> np.ndarray:
        if self.h_b64 is None:
            return np.zeros(size, dtype=np.float32)
        return np.frombuffer(base64.b64decode(self.h_b64), dtype=np.float32).copy()

    def set_hidden(self, h: np.ndarray) -> None:
        self.h_b64 = base64.b64encode(np.ascontiguousarray(h, dtype=np.float32).tobytes()).decode()

    def seen(self, turn_id: str) -> bool:
        return turn_id in self.recent_turn_ids

    def consumed(self, partition: int, offset: int) -> bool:
        """True for a message this state already reflects (redelivered after a restart)."""
        return partition == self.last_partition and offset <= self.last_offset

    def consume(self, partition: int, offset: int, now: float) -> None:
        self.last_partition, self.last_offset, self.updated_at = partition, offset, now

    def applied(self, turn_id: str, seq: int) -> None:
        """Record that a turn's effect is in this state (the idempotency check reads it)."""
        self.last_seq = seq
        self.turns += 1
        self.recent_turn_ids = [*self.recent_turn_ids[-(RECENT_TURN_IDS - 1):], turn_id]

    def end(self) -> None:
        """Keep a small marker so that late turns are recognised; drop the model state."""
        self.ended = True
        self.h_b64 = None
        self.recent_scores = []

    def dumps(self) -> bytes:
        # an exact-size copy: orjson's result keeps an ~8 KB buffer, and the table holds these
        # for every active conversation (measured: 8.3 KB vs 1.5 KB resident per conversation)
        return memoryview(orjson.dumps(asdict(self))).tobytes()

    @classmethod
    def loads(cls, raw: bytes) -> ConversationState:
        return cls(**orjson.loads(raw))


def expired(items: Iterable[tuple[bytes, bytes]], now: float, idle_s: float,
            partitions: set[int]) -> list[tuple[bytes, int]]:
    """(key, partition) of the states idle for `idle_s` or longer, among those whose input
    partition this worker owns (only the owner writes a partition's changelog)."""
    out = []
    for key, raw in items:
        state = ConversationState.loads(raw)
        if state.last_partition in partitions and now - state.updated_at >= idle_s:
            out.append((key, state.last_partition))
    return out
