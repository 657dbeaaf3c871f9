import orjson
import pytest

from tests.helpers import turn
from worker.ingest import parse
from worker.records import ConversationEnd, Rejection, Turn

LIMIT = 65536


def reason(raw: bytes, key: bytes | None = b"c1") -> str:
    out = parse(raw, key, LIMIT)
    assert isinstance(out, Rejection)
    return out.reason


def test_valid_turn_and_end():
    t = parse(orjson.dumps(turn("c1", 0, tenant="acme", metadata={"x": 1})), b"c1", LIMIT)
    assert isinstance(t, Turn) and t.seq == 0 and t.is_customer and t.tenant == "acme"
    end = parse(orjson.dumps({"type": "conversation_end", "conversation_id": "c1",
                              "ts": "2026-11-25T10:00:00+01:00"}), b"c1", LIMIT)
    assert isinstance(end, ConversationEnd) and end.conversation_id == "c1"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"", "invalid_json"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"{not json", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (orjson.dumps({"type": "poll", "conversation_id": "c1"}), "unknown_type"),
    (orjson.dumps({k: v for k, v in turn("c1", 0).items() if k != "text"}), "missing_field"),
    (orjson.dumps({**turn("c1", 0), "mood": "x"}), "unexpected_field"),
    (orjson.dumps({**turn("c1", 0), "seq": "3"}), "wrong_type"),
    (orjson.dumps({**turn("c1", 0), "seq": -1}), "invalid_value"),
    (orjson.dumps({**turn("c1", 0), "role": "bot"}), "unknown_role"),
    (orjson.dumps({**turn("c1", 0), "text": ""}), "invalid_value"),
    (orjson.dumps({**turn("c1", 0), "text": "x" * 10001}), "text_too_long"),
    (orjson.dumps({**turn("c1", 0), "ts": "yesterday"}), "invalid_value"),
    (orjson.dumps(turn("c1", 0, text="y" * 70000)), "too_large"),
])
def test_bad_input_is_rejected_with_its_reason(raw, expected):
    assert reason(raw) == expected


def test_key_must_match_conversation_id():
    out = parse(orjson.dumps(turn("c1", 0)), b"other", LIMIT)
    assert isinstance(out, Rejection) and out.reason == "key_mismatch"
    assert out.conversation_id == "c1"
