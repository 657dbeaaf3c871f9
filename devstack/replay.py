"""Publish USS and MELD dialogues as live turns: many conversations interleaved, paced like
people typing, sped up by a factor. Key = conversation id; each conversation ends with an
end-of-conversation event."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from training.data import Dialogue, Utterance, load_meld, load_uss, uss_split
from worker.records import now_iso


@dataclass(frozen=True)
class Outgoing:
    key: bytes
    value: bytes
    delay_s: float  # typing time before this message, at speed 1
    stamp: bool = True  # False: send `value` as it is, its own `ts` kept

    def stamped(self) -> bytes:
        """The message with `ts` set to now: the send time (turn -> event latency reads it)."""
        if not self.stamp:
            return self.value
        try:
            doc = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return self.value  # deliberately malformed messages go out as they are
        doc["ts"] = now_iso()
        return orjson.dumps(doc)


def typing_delay(role: str, text: str) -> float:
    """Seconds before a turn is sent, at speed 1: customers type about 4 characters a second,
    agents (with macros) about 10."""
    return (1.5 + len(text) / 4) if role == "customer" else (1.0 + len(text) / 10)


END_DELAY_S = 2.0  # before a conversation's end event, at speed 1


def conversation_messages(dialogue: Dialogue, prefix: str = "",
                          tenant: str = "demo") -> list[Outgoing]:
    """The turns of one dialogue as input messages, then its end event."""
    cid = f"{prefix}{dialogue.id}"
    out = []
    for seq, u in enumerate(dialogue.utterances):
        delay = typing_delay(u.role, u.text)
        turn = {"conversation_id": cid, "turn_id": f"{cid}:{seq}", "seq": seq, "role": u.role,
                "text": u.text, "ts": now_iso(), "channel": "chat", "tenant": tenant}
        out.append(Outgoing(cid.encode(), orjson.dumps(turn), delay))
    end = {"type": "conversation_end", "conversation_id": cid, "ts": now_iso(),
           "reason": "resolved", "tenant": tenant}
    out.append(Outgoing(cid.encode(), orjson.dumps(end), END_DELAY_S))
    return out


def pick_dialogues(n: int, sources: tuple[str, ...] = ("uss", "meld"), seed: int = 7,
                   min_turns: int = 4, max_turns: int = 30) -> list[Dialogue]:
    """`n` dialogues drawn from the held-out splits (USS test, MELD test), mixed by source."""
    pools: list[list[Dialogue]] = []
    if "uss" in sources:
        for corpus in ("MWOZ", "SGD"):
            dialogues = load_uss(corpus)
            pools.append([dialogues[i] for i in uss_split(corpus)["test"]])
    if "meld" in sources:
        pools.append(load_meld("test"))
    rng = random.Random(seed)
    pools = [[d for d in p if min_turns <= len(d.utterances) <= max_turns] for p in pools]
    for p in pools:
        rng.shuffle(p)
    picked: list[Dialogue] = []
    while len(picked) < n and any(pools):
        for p in pools:
            if p and len(picked) < n:
                picked.append(p.pop())
    return picked


SERVICE_DEMO = Path(__file__).parent / "examples" / "service_demo.json"


def service_dialogues(path: Path = SERVICE_DEMO) -> list[Dialogue]:
    """The demo's written service chats (devstack/examples/service_demo.json)."""
    return [Dialogue(d["id"], tuple(Utterance(role, text) for role, text in d["turns"]))
            for d in json.loads(path.read_text(encoding="utf-8"))["dialogues"]]


async def replay(bootstrap: str, topic: str, conversations: list[list[Outgoing]],
                 speed: float = 10.0, concurrency: int = 50, stagger_s: float = 1.0,
                 on_sent: Callable[[], None] | None = None) -> int:
    """Send every conversation, at most `concurrency` at once; returns messages sent.
    speed=0 sends as fast as possible (tests, load). `on_sent` is called after each ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    gate = asyncio.Semaphore(concurrency)
    sent = 0

    async def one(index: int, messages: list[Outgoing]) -> None:
        nonlocal sent
        async with gate:
            if speed > 0:
                await asyncio.sleep(random.random() * stagger_s * min(index, concurrency) / speed)
            for m in messages:
                if speed > 0:
                    await asyncio.sleep(m.delay_s / speed)
                await producer.send_and_wait(topic, key=m.key, value=m.stamped())
                sent += 1
                if on_sent is not None:
                    on_sent()

    try:
        await asyncio.gather(*(one(i, c) for i, c in enumerate(conversations)))
    finally:
        await producer.stop()
    return sent
