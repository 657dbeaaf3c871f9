"""Bad input mixed into valid traffic (reduced for CI: 1,000 bad messages): the worker never
crashes, every bad message reaches the DLQ with its reason and original bytes, every valid turn
is enriched, and odd-but-valid text (emoji, RTL, zero-width characters) is scored."""

from __future__ import annotations

import base64
import random

import orjson
import pytest

from tests.conftest import send
from tests.helpers import turn

pytestmark = pytest.mark.integration

ODD_TEXT = ["I 💔 this app 😡😡", "\u200bhidden\u200b zero width", "مرحبا، طلبي متأخر",
            "Ünïcödé ñ façade — “quotes”", "tab\tand newline\nin text", "🙂" * 50]


def bad_message(rng: random.Random, i: int) -> tuple[bytes, bytes, str]:
    """(key, value, expected DLQ reason); each value is unique so it can be traced."""
    cid = f"fz-bad-{i % 40}"
    good = turn(cid, 1000 + i, text=f"bad {i}")
    kind = i % 12
    if kind == 0:
        return cid.encode(), b"\xff\xfe" + str(i).encode(), "invalid_utf8"
    if kind == 1:
        return cid.encode(), f'{{"conversation_id": "{cid}", "n": {i}'.encode(), "invalid_json"
    if kind == 2:
        return cid.encode(), orjson.dumps([i, "list"]), "not_an_object"
    if kind == 3:
        dropped = rng.choice(["turn_id", "role", "ts"])
        doc = {k: v for k, v in good.items() if k != dropped}
        return cid.encode(), orjson.dumps(doc), "missing_field"
    if kind == 4:
        return cid.encode(), orjson.dumps({**good, f"extra{i}": True}), "unexpected_field"
    if kind == 5:
        return cid.encode(), orjson.dumps({**good, "seq": str(i)}), "wrong_type"
    if kind == 6:
        return cid.encode(), orjson.dumps({**good, "seq": rng.choice([-i - 1, 10**9 + i])}), \
            "invalid_value"
    if kind == 7:
        return cid.encode(), orjson.dumps({**good, "role": f"bot{i}"}), "unknown_role"
    if kind == 8:
        return cid.encode(), orjson.dumps({**good, "text": ""}), "invalid_value"
    if kind == 9:
        return cid.encode(), orjson.dumps({**good, "text": "x" * 200_000}), "too_large"
    if kind == 10:
        raw = orjson.dumps(good)[:-1] + b', "ctrl": "\x01\x02"}'  # raw control characters
        return cid.encode(), raw, "invalid_json"
    return b"another-key", orjson.dumps(good), "key_mismatch"


def test_fuzzed_input_goes_to_the_dlq_and_valid_turns_are_enriched(stack, outputs):
    rng = random.Random(1234)
    valid, traffic = [], []
    for c in range(20):
        cid = f"fz-ok-{c}"
        for seq in range(15):
            text = rng.choice(ODD_TEXT) if seq % 5 == 4 else f"turn {seq} of {cid}"
            valid.append(turn(cid, seq, "customer" if seq % 2 == 0 else "agent", text))
    bad = [bad_message(rng, i) for i in range(1000)]
    # protocol faults on valid conversations: a duplicate, a late old turn, a turn after end
    faults = [(b"fz-ok-0", orjson.dumps(turn("fz-ok-0", 3, "agent", "turn 3 of fz-ok-0")),
               None),
              (b"fz-ok-1", orjson.dumps({**turn("fz-ok-1", 2), "turn_id": "late"}),
               "out_of_order"),
              (b"fz-ok-2", orjson.dumps({"type": "conversation_end", "conversation_id": "fz-ok-2",
                                         "ts": "2026-11-25T10:00:00Z"}), None),
              (b"fz-ok-2", orjson.dumps(turn("fz-ok-2", 99)), "conversation_ended")]
    bad_iter = iter(bad)
    for doc in valid:  # valid turns in order, bad messages between them
        traffic.append((doc["conversation_id"].encode(), orjson.dumps(doc)))
        traffic += [next(bad_iter)[:2] for _ in range(3) if rng.random() < 0.95]
    traffic += [b[:2] for b in bad_iter]
    send(stack.bootstrap, stack.settings.topic_turns, traffic)
    send(stack.bootstrap, stack.settings.topic_turns, [f[:2] for f in faults])

    expected = {value: reason for _, value, reason in bad + faults if reason}
    dlq = outputs.wait("dlq", lambda d: base64.b64decode(d["original_b64"]) in expected,
                       len(expected), timeout=240)
    seen: dict[bytes, str] = {}
    for d in dlq:
        seen[base64.b64decode(d["original_b64"])] = d["reason"]
    assert seen == expected  # every bad message, with the reason it deserves
    events = outputs.wait("enriched", lambda d: d["conversation_id"].startswith("fz-ok-"),
                          len(valid), timeout=240)
    assert sorted(e["turn_id"] for e in events) == sorted(v["turn_id"] for v in valid)
    odd = {v["turn_id"]: v["text"] for v in valid if v["text"] in ODD_TEXT}
    assert all(e["text"] == odd[e["turn_id"]] for e in events if e["turn_id"] in odd)
    assert all(w.running for w in stack.workers)
