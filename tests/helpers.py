"""Shared test helpers: message builders and a deterministic Scorer double (unit tests only;
integration tests use the real Triton)."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import orjson

from worker.bow import BagOfWords
from worker.infer import Encoded, Explanation
from worker.pipeline import Message

_next_offset = 0


def turn(cid: str, seq: int, role: str = "customer", text: str = "hello", **extra) -> dict:
    return {"conversation_id": cid, "turn_id": f"{cid}:{seq}", "seq": seq, "role": role,
            "text": text, "ts": "2026-11-25T10:00:00Z", **extra}


def msg(doc: dict | bytes, key: bytes | None = None, offset: int | None = None) -> Message:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    if key is None and isinstance(doc, dict):
        key = doc["conversation_id"].encode()
    # each message gets the next offset unless told, as on a real partition
    global _next_offset
    _next_offset += 1
    return Message(raw, key, "chat.turns", 0, _next_offset if offset is None else offset)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class FakeScorer:
    """Deterministic stand-in for Triton: the embedding is a hash of the text; the step mixes
    it into the carried state, so scores depend on the whole history, like the real model.
    Texts containing 'awful' come out very negative. Topic words: the conversation's most
    frequent vocabulary words so far."""

    def __init__(self) -> None:
        self.state_spec = {"h": (np.float32, (4,)), "bow": (np.float32, (3,)),
                           "n": (np.int64, (1,))}
        self.bag_of_words = BagOfWords(["awful", "refund", "thanks"])
        self.encode_calls: list[int] = []
        self.step_calls: list[int] = []

    async def encode(self, texts: list[str]) -> np.ndarray:
        self.encode_calls.append(len(texts))
        out = np.zeros((len(texts), 3), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, 0] = (zlib.crc32(t.encode()) % 1000) / 1000.0
            out[i, 1] = 1.0 if "awful" in t else 0.0
        return out

    explains = False  # FakeExplainingScorer: True

    async def encode_turns(self, texts: list[str]) -> Encoded:
        return Encoded(await self.encode(texts))

    async def explain(self, encoded: Encoded, texts: list[str]) -> list[Explanation]:
        raise AssertionError("not an explaining scorer")

    async def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embedding, is_customer = inputs["embedding"], inputs["is_customer"]
        self.step_calls.append(len(embedding))
        new = 0.5 * inputs["h"] + np.concatenate([embedding, is_customer], axis=1)
        logits = np.stack([8 * embedding[:, 1], np.zeros(len(embedding)),
                           1.0 + new[:, 0], np.zeros(len(embedding)), np.zeros(len(embedding))],
                          axis=1)
        awful, zero = 8 * embedding[:, 1], np.zeros(len(embedding))
        satisfaction = np.stack([awful, zero, 1.0 + new[:, 0]], axis=1)
        sentiment = np.stack([awful, zero + 0.5, new[:, 0]], axis=1)
        bow = inputs["bow"] + inputs["turn_bow"]
        return {"probs": softmax(logits), "satisfaction": softmax(satisfaction),
                "sentiment": softmax(sentiment),
                # as the served step: -1 ("no word") while the bag of words is empty
                "topic_words": np.where(bow.any(axis=1, keepdims=True),
                                        np.argsort(-bow, axis=1, kind="stable")[:, :2], -1),
                "h": new.astype(np.float32), "bow": bow.astype(np.float32),
                "n": inputs["n"] + 1}


class FakeExplainingScorer(FakeScorer):
    """FakeScorer that also explains: 'awful' turns are angry; the word after 'the' is an
    aspect term, negative in an 'awful' turn."""

    explains = True

    def __init__(self) -> None:
        super().__init__()
        self.explain_calls: list[int] = []

    async def explain(self, encoded: Encoded, texts: list[str]) -> list[Explanation]:
        self.explain_calls.append(len(texts))
        out: list[Explanation] = []
        for t in texts:
            angry = "awful" in t
            emotions = {"probs": {"anger": 0.9 if angry else 0.1, "joy": 0.2},
                        "labels": ["anger"] if angry else []}
            words, aspects, at = t.split(" "), [], 0
            for w, nxt in itertools.pairwise(words):
                at = t.index(w, at)
                if w.lower() == "the" and nxt:
                    start = t.index(nxt, at + len(w))
                    aspects.append({"text": nxt, "start": start, "end": start + len(nxt),
                                    "polarity": "negative" if angry else "neutral",
                                    "confidence": 0.8})
            out.append((emotions, aspects))
        return out
