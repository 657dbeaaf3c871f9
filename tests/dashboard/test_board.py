"""The dashboard's board: bounded, deduplicated, sorted by risk, fed by real event shapes."""

from __future__ import annotations

from typing import Any

from dashboard.board import Board


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def turn(cid: str, seq: int, score: float, role: str = "customer", text: str | None = "hi",
         **extra: Any) -> dict[str, Any]:
    doc = {"event_id": f"e-{cid}-{seq}", "conversation_id": cid, "turn_id": f"{cid}:{seq}",
           "seq": seq, "role": role, "ts": "2026-12-04T10:00:00.000Z", "label": "neutral",
           "probs": {"neutral": 1.0}, "score": score, "running_score": score,
           "trend": 0.0, "trend_label": "stable", "customer_turns": seq + 1,
           "topic_words": ["refund"], "model": "m", "schema_version": 2,
           "satisfaction": {"label": "negative", "probs": {"negative": 0.7}},
           "sentiment": {"label": "negative", "probs": {"negative": 0.8}}, **extra}
    if text is not None:
        doc["text"] = text
    return doc


def alert(cid: str, seq: int) -> dict[str, Any]:
    return {"alert_id": f"a-{cid}-{seq}", "event_id": f"e-{cid}-{seq}", "conversation_id": cid,
            "turn_id": f"{cid}:{seq}", "seq": seq, "ts": "2026-12-04T10:00:00.000Z",
            "rules": ["negative_level"], "score": -0.6, "running_score": -0.6,
            "label": "negative", "negative_streak": 1, "schema_version": 2,
            "satisfaction": "negative", "sentiment": "negative", "topic_words": ["refund"]}


def test_duplicates_are_applied_once():
    board = Board()
    assert board.add_turn(turn("c", 0, -0.2)) is not None
    assert board.add_turn(turn("c", 0, -0.2)) is None
    assert board.add_alert(alert("c", 0)) is not None
    assert board.add_alert(alert("c", 0)) is None
    assert len(board.detail("c")["turns"]) == 1 and len(board.snapshot()["alerts"]) == 1


def test_every_bound_holds():
    board = Board(max_conversations=3, max_turns=4, max_alerts=2)
    for c in range(6):
        for s in range(10):
            board.add_turn(turn(f"c{c}", s, 0.0))
        board.add_alert(alert(f"c{c}", 9))
    assert list(board.conversations) == ["c3", "c4", "c5"]  # least recently updated go first
    assert all(len(c.turns) == 4 for c in board.conversations.values())
    assert [a["conversation_id"] for a in board.snapshot()["alerts"]] == ["c5", "c4"]
    # the dedupe sets shrink with what they guard
    assert len(board._turn_ids) == 12 and len(board._alert_ids) == 2


def test_eviction_is_reported_to_the_page():
    board = Board(max_conversations=1)
    board.add_turn(turn("old", 0, 0.0))
    assert board.add_turn(turn("new", 0, 0.0))["evicted"] == ["old"]


def test_idle_conversations_expire():
    clock = Clock()
    board = Board(ttl_s=60, clock=clock)
    board.add_turn(turn("a", 0, 0.0))
    clock.t += 30
    board.add_turn(turn("b", 0, 0.0))
    clock.t += 40
    assert board.expire() == ["a"]
    assert list(board.conversations) == ["b"]


def test_risk_puts_recent_alerts_then_negative_scores_first():
    clock = Clock()
    board = Board(clock=clock)
    board.add_turn(turn("calm", 0, 0.5))
    board.add_turn(turn("sour", 0, -0.4))
    board.add_turn(turn("alerted", 0, 0.1))
    board.add_alert(alert("alerted", 0))
    assert [c["id"] for c in board.snapshot()["conversations"]] == ["alerted", "sour", "calm"]
    clock.t += 601  # the alert is no longer recent
    assert [c["id"] for c in board.snapshot()["conversations"]] == ["sour", "alerted", "calm"]


def test_running_score_and_sparkline_follow_customer_turns_only():
    board = Board()
    board.add_turn(turn("c", 0, -0.2))
    board.add_turn(turn("c", 1, 0.9, role="agent"))
    board.add_turn(turn("c", 2, -0.5))
    summary = board.snapshot()["conversations"][0]
    assert summary["scores"] == [-0.2, -0.5] and summary["running_score"] == -0.5
    assert summary["turns"] == 3


def test_an_alert_read_before_its_turn_gets_the_text_later():
    board = Board()
    board.add_turn(turn("c", 0, 0.0))
    assert board.add_alert(alert("c", 1))["alert"]["text"] is None
    update = board.add_turn(turn("c", 1, -0.6, text="I want a refund"))
    assert update["alert_texts"] == {"a-c-1": "I want a refund"}
    assert board.snapshot()["alerts"][0]["text"] == "I want a refund"


def test_without_echoed_text_only_what_the_event_carries_is_shown():
    board = Board()
    board.add_turn(turn("c", 0, -0.6, text=None))
    board.add_alert(alert("c", 0))
    assert board.detail("c")["turns"][0]["text"] is None
    assert board.snapshot()["alerts"][0]["text"] is None


def test_later_schema_fields_show_in_turns_and_alerts():
    board = Board()
    emotions = {"probs": {"anger": 0.9}, "labels": ["anger"]}
    aspects = [{"text": "refund", "start": 9, "end": 15, "polarity": "negative",
                "confidence": 0.8}]
    board.add_turn(turn("c", 0, -0.6, emotions=emotions, aspects=aspects))
    doc = alert("c", 0) | {"emotion": "anger", "aspect": "refund"}
    shown = board.add_alert(doc)["alert"]
    assert (shown["emotion"], shown["aspect"]) == ("anger", "refund")
    assert board.detail("c")["turns"][0]["aspects"] == aspects


def test_events_older_than_the_idle_limit_are_not_shown():
    """A restarted dashboard reads history back; what is already stale stays out."""
    clock = Clock()
    board = Board(ttl_s=60, clock=clock)
    assert board.add_turn(turn("old", 0, 0.0), at=clock.t - 61) is None
    assert board.add_alert(alert("old", 0), raised_ms=int((clock.t - 61) * 1000)) is None
    assert board.add_turn(turn("new", 0, 0.0), at=clock.t - 59) is not None
    assert list(board.conversations) == ["new"]
