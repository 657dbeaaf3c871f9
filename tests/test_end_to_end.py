"""The live path on the real broker, real Triton and a real worker process."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter

import orjson
import pytest

from devstack.replay import conversation_messages, pick_dialogues, replay
from tests.conftest import send
from tests.helpers import turn
from worker.records import event_id
from worker.rules import AlertRules
from worker.schemas import validator

pytestmark = pytest.mark.integration


def in_conversations(prefix: str):
    return lambda d: (d.get("conversation_id") or "").startswith(prefix)


@pytest.fixture(scope="module")
def mixed(stack, outputs):
    """24 USS + MELD dialogues replayed interleaved, as fast as the producer goes."""
    dialogues = pick_dialogues(24, seed=11)
    messages = [conversation_messages(d, prefix="mix-") for d in dialogues]
    asyncio.run(replay(stack.bootstrap, stack.settings.topic_turns, messages, speed=0,
                       concurrency=24))
    turns = sum(len(d.utterances) for d in dialogues)
    events = outputs.wait("enriched", in_conversations("mix-"), turns, timeout=180)
    return dialogues, messages, events


def test_every_turn_gives_exactly_one_valid_event(mixed, outputs):
    dialogues, messages, events = mixed
    sent = {}
    for conversation in messages:
        for m in conversation[:-1]:  # the last message is the end event
            doc = orjson.loads(m.value)
            sent[doc["turn_id"]] = doc
    assert len(dialogues) >= 20 and len(sent) == sum(len(d.utterances) for d in dialogues)
    assert Counter(e["turn_id"] for e in events) == Counter(sent.keys())  # one each, no extra
    for e in events:
        validator("enriched_turn").validate(e)
        src = sent[e["turn_id"]]
        assert e["event_id"] == event_id(src["conversation_id"], src["turn_id"])
        assert (e["conversation_id"], e["seq"], e["role"]) == (
            src["conversation_id"], src["seq"], src["role"])
        assert abs(sum(e["probs"].values()) - 1.0) < 1e-4
        assert -1.0 <= e["score"] <= 1.0
    assert not outputs.select("dlq", in_conversations("mix-"))


def test_scores_are_the_same_alone_or_interleaved(stack, outputs, mixed):
    dialogues, _, events = mixed
    interleaved = {(e["conversation_id"].removeprefix("mix-"), e["seq"]): e["score"]
                   for e in events}
    for d in dialogues[:3]:  # replayed alone, one conversation at a time
        asyncio.run(replay(stack.bootstrap, stack.settings.topic_turns,
                           [conversation_messages(d, prefix="alone-")], speed=0))
        alone = outputs.wait("enriched", in_conversations(f"alone-{d.id}"), len(d.utterances))
        assert len(alone) == len(d.utterances)
        for e in alone:
            assert e["score"] == pytest.approx(interleaved[(d.id, e["seq"])], abs=1e-4)


def test_a_complaint_alerts_a_plain_request_does_not_and_agent_turns_never(stack, outputs,
                                                                          mixed):
    cid, calm = "neg-1", "calm-1"
    turns = [turn(cid, 0, "customer", "Hi, I need to change my booking."),
             turn(cid, 1, "agent", "I hate this stupid job and you are an idiot."),
             turn(cid, 2, "customer", "Unbelievable. I want a full refund right now, this is "
                                      "the worst service I've ever had."),
             turn(calm, 0, "agent", "Hello, thanks for contacting us, how can I help?"),
             turn(calm, 1, "customer", "I'd like to change the delivery address for my order.")]
    send(stack.bootstrap, stack.settings.topic_turns,
         [(t["conversation_id"].encode(), orjson.dumps(t)) for t in turns])
    events = outputs.wait("enriched", lambda d: d["conversation_id"] == cid, 3)
    by_seq = {e["seq"]: e for e in events}
    angry = by_seq[2]
    assert angry["sentiment"]["label"] == "negative" and angry["schema_version"] == 4
    assert angry["score"] <= AlertRules().level_threshold
    (alert,) = outputs.wait("alerts", lambda d: d["conversation_id"] == cid, 1)
    validator("alert").validate(alert)
    assert alert["seq"] == 2 and alert["event_id"] == angry["event_id"]
    assert alert["sentiment"] == "negative"
    (request,) = [e for e in outputs.wait("enriched", lambda d: d["conversation_id"] == calm, 2)
                  if e["seq"] == 1]
    assert request["score"] > AlertRules().level_threshold
    assert not outputs.select("alerts", lambda d: d["conversation_id"] == calm)
    # across everything this session produced: an alert is always a customer turn
    roles = {e["event_id"]: e["role"] for e in outputs.select("enriched", lambda d: True)}
    assert all(roles[a["event_id"]] == "customer" for a in outputs.select("alerts",
                                                                           lambda d: True))


def test_bad_input_goes_to_the_dlq_and_the_worker_keeps_going(stack, outputs):
    good = turn("bad-c", 0)
    bad = {
        "invalid_json": b'{"conversation_id": "bad-c", ',
        "invalid_utf8": b'{"conversation_id": "bad-c\xff"}',
        "missing_field": orjson.dumps({k: v for k, v in good.items() if k != "role"}),
        "wrong_type": orjson.dumps({**good, "seq": "zero"}),
        "unknown_role": orjson.dumps({**good, "role": "supervisor"}),
        "text_too_long": orjson.dumps({**good, "text": "a" * 12000}),
        "too_large": orjson.dumps({**good, "text": "b" * 70000}),
        "key_mismatch": orjson.dumps({**good, "conversation_id": "bad-other"}),
    }
    send(stack.bootstrap, stack.settings.topic_turns,
         [(b"bad-c", raw) for raw in bad.values()]
         + [(b"bad-c", orjson.dumps(turn("bad-c", s, text=f"still here {s}"))) for s in (0, 1)])
    originals = {raw: reason for reason, raw in bad.items()}
    dlq = outputs.wait("dlq", lambda d: base64.b64decode(d["original_b64"]) in originals,
                       len(bad))
    assert len(dlq) == len(bad)
    for d in dlq:
        validator("dead_letter").validate(d)
        assert d["reason"] == originals[base64.b64decode(d["original_b64"])]
        assert d["topic"] == stack.settings.topic_turns and d["offset"] >= 0
    events = outputs.wait("enriched", lambda d: d["conversation_id"] == "bad-c", 2)
    assert sorted(e["seq"] for e in events) == [0, 1]
    assert all(w.running for w in stack.workers)


def test_duplicated_turn_does_not_change_the_state(stack, outputs):
    texts = ["My package never arrived.", "Sorry to hear that, let me look.",
             "It has been two weeks!", "I can send a replacement today."]
    roles = ["customer", "agent", "customer", "agent"]

    def msgs(cid: str, order: list[int]) -> list[tuple[bytes, bytes]]:
        return [(cid.encode(), orjson.dumps(turn(cid, i, roles[i], texts[i]))) for i in order]

    send(stack.bootstrap, stack.settings.topic_turns, msgs("dup-a", [0, 1, 1, 2, 1, 3]))
    send(stack.bootstrap, stack.settings.topic_turns, msgs("dup-b", [0, 1, 2, 3]))
    a = outputs.wait("enriched", lambda d: d["conversation_id"] == "dup-a", 4)
    b = outputs.wait("enriched", lambda d: d["conversation_id"] == "dup-b", 4)
    assert sorted(e["seq"] for e in a) == [0, 1, 2, 3]  # no event for the duplicates
    score_b = {e["seq"]: e["score"] for e in b}
    for e in a:
        assert e["score"] == pytest.approx(score_b[e["seq"]], abs=1e-4)
    assert not outputs.select("dlq", lambda d: d.get("conversation_id") == "dup-a")
