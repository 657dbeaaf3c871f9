"""Bad input mixed into valid traffic (reduced for CI: 1,000 bad messages): the worker never
crashes, every bad message reaches the DLQ with its reason and original bytes, every valid turn
is enriched, and odd-but-valid text (emoji, RTL, zero-width characters) is scored."""

from __future__ import annotations

import base64

import pytest

from devstack import fuzz
from tests.conftest import send

pytestmark = pytest.mark.integration


def test_fuzzed_input_goes_to_the_dlq_and_valid_turns_are_enriched(stack, outputs):
    # the generator is shared with `python -m devstack reliability` (devstack/fuzz.py)
    t = fuzz.build(seed=1234, n_bad=1000, conversations=20, turns=15, prefix="fz-")
    valid = t.valid
    send(stack.bootstrap, stack.settings.topic_turns, t.traffic)
    send(stack.bootstrap, stack.settings.topic_turns, [f[:2] for f in t.faults])

    expected = t.expected_dlq
    dlq = outputs.wait("dlq", lambda d: base64.b64decode(d["original_b64"]) in expected,
                       len(expected), timeout=240)
    seen: dict[bytes, str] = {}
    for d in dlq:
        seen[base64.b64decode(d["original_b64"])] = d["reason"]
    assert seen == expected  # every bad message, with the reason it deserves
    events = outputs.wait("enriched", lambda d: d["conversation_id"].startswith("fz-ok-"),
                          len(valid), timeout=240)
    assert sorted(e["turn_id"] for e in events) == sorted(v["turn_id"] for v in valid)
    odd = {v["turn_id"]: v["text"] for v in valid if v["text"] in fuzz.ODD_TEXT}
    assert all(e["text"] == odd[e["turn_id"]] for e in events if e["turn_id"] in odd)
    assert all(w.running for w in stack.workers)
