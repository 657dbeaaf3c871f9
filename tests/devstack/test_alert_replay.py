"""Alert metrics against human ratings: hand-computed unit cases, and one run on the real stack."""

import math

import orjson
import pytest

from devstack.alert_replay import (
    alert_metrics,
    check_set_metrics,
    run,
    two_turn_conversations,
    uss_conversations,
)
from devstack.replay import conversation_messages
from training.data import Dialogue, Utterance, load_uss, uss_split


def c(scores: tuple[int, ...]) -> Utterance:
    return Utterance("customer", "text", scores)


AGENT = Utterance("agent", "text")
DIALOGUES = [
    # 1 bad+alert, 3 bad (cool-down of 1: covered), 4 fine, 5 bad 3 customer turns later: missed
    Dialogue("a", (AGENT, c((1, 2)), AGENT, c((2, 2)), c((3, 3)), c((1, 1)))),
    # an alert on a fine turn does not cover the bad turn after it
    Dialogue("b", (c((4, 4)), c((2, 1)))),
    Dialogue("c", (c((3, 4)),)),  # no bad turn, no alert
    Dialogue("d", (c((5, 5)),)),  # no bad turn, alerted anyway
]
SCORES = {"a:0": 0.0, "a:1": -0.8, "a:2": 0.0, "a:3": -0.3, "a:4": 0.1, "a:5": -0.1,
          "b:0": 0.2, "b:1": -0.5, "c:0": 0.5}  # d:0 has no event (yet)


def ev(tid: str, score: float) -> dict:
    cid, seq = tid.rsplit(":", 1)
    return {"event_id": f"e-{tid}", "turn_id": tid, "conversation_id": cid, "seq": int(seq),
            "role": "customer", "score": score}


def al(tid: str, *rules: str) -> dict:
    return {"alert_id": f"a-{tid}", "turn_id": tid, "conversation_id": tid.split(":")[0],
            "rules": list(rules)}


def test_alert_metrics_hand_computed():
    p = "t-"
    events = {p + t: ev(p + t, s) for t, s in SCORES.items()}
    alerts = {a["turn_id"]: a for a in [
        al(p + "a:1", "negative_level"), al(p + "b:0", "sharp_drop"),
        al(p + "d:0", "negative_level", "negative_streak"),
        al("other-a:1", "negative_level")]}  # another set's alert: ignored
    m = alert_metrics(DIALOGUES, p, events, alerts, cooldown_turns=2)
    assert (m["conversations"], m["customer_turns"], m["dissatisfied_turns"]) == (4, 8, 4)
    assert (m["alerts"], m["alerts_on_dissatisfied"]) == (3, 1)
    assert (m["dissatisfied_alerted"], m["dissatisfied_in_cooldown"]) == (1, 1)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == 0.5  # a:1 alerted, a:3 in its cool-down; a:5 and b:1 missed
    assert m["conv_with_dissatisfied_alerted"] == 1.0  # a and b
    assert m["conv_without_dissatisfied_alerted"] == 0.5  # d of c, d
    assert m["alerts_by_rule"] == {"negative_level": 2, "negative_streak": 1, "sharp_drop": 1}
    assert m["scored"] == [(-0.8, True), (-0.3, True), (0.1, False), (-0.1, True),
                           (0.2, False), (-0.5, True), (0.5, False)]
    # a longer cool-down also covers a:5 (3 customer turns after a:1)
    assert alert_metrics(DIALOGUES, p, events, alerts, cooldown_turns=3)["recall"] == 0.75
    assert alert_metrics(DIALOGUES, p, events, alerts, cooldown_turns=0)["recall"] == 0.25


def test_alert_metrics_without_alerts_or_bad_turns():
    m = alert_metrics([Dialogue("c", (c((3, 4)),))], "", {}, {}, cooldown_turns=3)
    assert m["precision"] is None and m["recall"] is None and m["scored"] == []
    assert m["conv_with_dissatisfied_alerted"] is None
    assert m["conv_without_dissatisfied_alerted"] == 0.0


def test_uss_conversations_keys_and_turn_ids():
    convs = uss_conversations(DIALOGUES[:2], "x-")
    assert list(convs) == ["x-a", "x-b"]
    docs = [orjson.loads(m.value) for m in convs["x-a"]]
    assert [d.get("turn_id") for d in docs] == [f"x-a:{i}" for i in range(6)] + [None]


ITEMS = [
    {"id": "c1", "kind": "complaint", "greeting": "Hi, how can I help?", "text": "Awful."},
    {"id": "c2", "kind": "complaint", "greeting": "Hi, how can I help?", "text": "Bad."},
    {"id": "n1", "kind": "neutral", "greeting": "Hello!", "text": "What time is it?"},
    {"id": "p1", "kind": "praise", "greeting": "Hello!", "text": "Thanks, great help."},
]


def test_two_turn_conversations_have_the_replay_shape():
    convs = two_turn_conversations(ITEMS[:1], "k-")
    turns = (Utterance("agent", "Hi, how can I help?"), Utterance("customer", "Awful."))
    reference = conversation_messages(Dialogue("c1", turns), "k-")
    got = [orjson.loads(m.value) for m in convs["k-c1"]]
    want = [orjson.loads(m.value) for m in reference]
    assert [{k: v for k, v in d.items() if k != "ts"} for d in got] == [
        {k: v for k, v in d.items() if k != "ts"} for d in want]
    assert [(d.get("seq"), d.get("role")) for d in got] == [(0, "agent"), (1, "customer"),
                                                            (None, None)]
    assert got[-1]["type"] == "conversation_end"


def test_check_set_metrics():
    p = "k-"
    events = {f"{p}{it['id']}:1": ev(f"{p}{it['id']}:1", s)
              for it, s in zip(ITEMS, [-0.9, -0.1, 0.0, 0.8], strict=True)}
    alerts = {f"{p}c1:1": al(f"{p}c1:1", "negative_level"),
              f"{p}n1:0": al(f"{p}n1:0", "negative_level")}  # not the customer turn
    m = check_set_metrics(ITEMS, p, events, alerts)
    assert m["by_kind"] == {"complaint": {"n": 2, "alerted": 0.5},
                            "neutral": {"n": 1, "alerted": 0.0},
                            "praise": {"n": 1, "alerted": 0.0}}
    assert [(r["id"], r["score"], r["alerted"], r["rules"]) for r in m["items"]] == [
        ("c1", -0.9, True, ["negative_level"]), ("c2", -0.1, False, []),
        ("n1", 0.0, False, []), ("p1", 0.8, False, [])]


@pytest.mark.integration
def test_run_on_the_real_stack():
    """3 short USS test dialogues (two with dissatisfied turns) and 3 checks, one worker."""
    picked = []
    for corpus, names in (("MWOZ", ("mwoz-0167", "mwoz-0695")), ("SGD", ("sgd-0605",))):
        dialogues = load_uss(corpus)
        test = [dialogues[i] for i in uss_split(corpus)["test"]]
        picked += [d for d in test if d.id in names]
    out = run({"uss": picked}, cooldown_turns=3, checks=ITEMS[::2])
    print({k: v for k, v in out["uss"].items() if k != "scored"}, out["checks"])
    m = out["uss"]
    customers = sum(u.role == "customer" for d in picked for u in d.utterances)
    assert m["conversations"] == 3 and m["customer_turns"] == customers
    assert m["dissatisfied_turns"] == 7 and m["conv_with_dissatisfied"] == 2
    assert len(m["scored"]) == customers  # every customer turn got its event
    assert sum(bad for _, bad in m["scored"]) == 7
    assert all(-1 <= s <= 1 for s, _ in m["scored"])
    for key in ("precision", "recall"):
        assert m[key] is None or 0 <= m[key] <= 1
    assert m["alerts"] <= sum(m["alerts_by_rule"].values())  # an alert may fire several rules
    assert {r["id"] for r in out["checks"]["items"]} == {"c1", "n1"}
    assert all(not math.isnan(r["score"]) for r in out["checks"]["items"])
    assert m["seconds"] < 120
