"""Replay human-rated dialogues through the real worker (local stack) and measure how its alerts
match the ratings: a customer turn is "dissatisfied" when its mean USS rating is below 3.

Only these output fields are read: events `conversation_id, turn_id, seq, role, score,
event_id`; alerts `alert_id, turn_id, conversation_id, rules`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer

from devstack.replay import Outgoing, conversation_messages, replay
from devstack.stack import start_stack
from training.data import Dialogue, Utterance, label_3
from worker.settings import Settings

KINDS = ("complaint", "neutral", "praise")


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _turn_ids(conversations: dict[str, list[Outgoing]]) -> set[str]:
    """The turn ids of every input turn (the end events have none)."""
    ids = set()
    for messages in conversations.values():
        for m in messages:
            doc = orjson.loads(m.value)
            if "turn_id" in doc:
                ids.add(doc["turn_id"])
    return ids


async def replay_collect(bootstrap: str, settings: Settings,
                         conversations: dict[str, list[Outgoing]],
                         timeout_s: float = 600) -> tuple[dict[str, dict], dict[str, dict]]:
    """Send every conversation as fast as possible and read the worker's outputs until each
    input turn has its enriched event. Returns (events by turn_id, alerts by turn_id), deduped
    (delivery is at-least-once); raises TimeoutError with the count still missing."""
    expected = _turn_ids(conversations)
    topics = (settings.topic_enriched, settings.topic_alerts)
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    events: dict[str, dict] = {}
    alerts: dict[str, dict] = {}
    seen: set[str] = set()  # event_id / alert_id
    sender = asyncio.create_task(replay(
        bootstrap, settings.topic_turns, list(conversations.values()), speed=0,
        concurrency=max(1, min(len(conversations), 1000))))

    async def poll() -> None:
        for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
            is_alert = tp.topic == settings.topic_alerts
            for m in messages:
                doc = orjson.loads(m.value)
                uid = doc["alert_id"] if is_alert else doc["event_id"]
                if doc.get("turn_id") in expected and uid not in seen:
                    seen.add(uid)
                    (alerts if is_alert else events)[doc["turn_id"]] = doc

    try:
        deadline = time.monotonic() + timeout_s
        while len(events) < len(expected):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(expected) - len(events)} of {len(expected)} turns "
                                   f"have no enriched event after {timeout_s:g}s")
            if sender.done():
                sender.result()  # a failed send raises here
            await poll()
        await sender
        # an alert is sent alongside its event and may land just after it: wait a moment,
        # then read the alert topic up to its end
        await asyncio.sleep(1.0)
        alert_parts = [tp for tp in consumer.assignment() if tp.topic == settings.topic_alerts]
        ends = await consumer.end_offsets(alert_parts)
        for tp, end in ends.items():
            while await consumer.position(tp) < end:
                await poll()
    finally:
        if not sender.done():
            sender.cancel()
        await consumer.stop()
    return events, alerts


def uss_conversations(dialogues: list[Dialogue], prefix: str) -> dict[str, list[Outgoing]]:
    """Input messages per conversation id; the turn id of utterance i is f"{prefix}{id}:{i}"."""
    return {f"{prefix}{d.id}": conversation_messages(d, prefix) for d in dialogues}


def is_dissatisfied(u: Utterance) -> bool:
    """A rated customer turn whose mean rating is below 3."""
    return u.role == "customer" and bool(u.scores) and label_3(u.scores) == 0


def alert_metrics(dialogues: list[Dialogue], prefix: str, events: dict[str, dict],
                  alerts: dict[str, dict], cooldown_turns: int) -> dict:
    """Alerts against ratings. precision: alerts on dissatisfied turns / alerts; recall:
    dissatisfied turns alerted, or within the next `cooldown_turns` customer turns after an
    alert on an earlier dissatisfied turn of the conversation / dissatisfied turns.
    `scored` is [(score, dissatisfied)] per customer turn with an event (low score = bad)."""
    n_alerts = on_bad = bad = alerted = covered = customer = 0
    conv_bad = conv_bad_alerted = conv_ok = conv_ok_alerted = 0
    rules: Counter[str] = Counter()
    scored: list[tuple[float, bool]] = []
    for d in dialogues:
        last_bad_alert: int | None = None  # customer-turn index of the last alert on a bad turn
        k = -1
        conv_alerts = conv_bad_turns = 0
        for i, u in enumerate(d.utterances):
            tid = f"{prefix}{d.id}:{i}"
            sad = is_dissatisfied(u)
            alert = alerts.get(tid)
            if alert is not None:
                n_alerts += 1
                conv_alerts += 1
                on_bad += sad
                rules.update(alert["rules"])
            if u.role != "customer":
                continue
            customer += 1
            k += 1
            if tid in events:
                scored.append((float(events[tid]["score"]), sad))
            if not sad:
                continue
            bad += 1
            conv_bad_turns += 1
            if alert is not None:
                alerted += 1
                last_bad_alert = k
            elif last_bad_alert is not None and k - last_bad_alert <= cooldown_turns:
                covered += 1
        if conv_bad_turns:
            conv_bad += 1
            conv_bad_alerted += conv_alerts > 0
        else:
            conv_ok += 1
            conv_ok_alerted += conv_alerts > 0
    return {
        "conversations": len(dialogues), "customer_turns": customer, "dissatisfied_turns": bad,
        "alerts": n_alerts, "alerts_on_dissatisfied": on_bad,
        "dissatisfied_alerted": alerted, "dissatisfied_in_cooldown": covered,
        "precision": _share(on_bad, n_alerts), "recall": _share(alerted + covered, bad),
        "conv_with_dissatisfied": conv_bad, "conv_without_dissatisfied": conv_ok,
        "conv_with_dissatisfied_alerted": _share(conv_bad_alerted, conv_bad),
        "conv_without_dissatisfied_alerted": _share(conv_ok_alerted, conv_ok),
        "alerts_by_rule": dict(sorted(rules.items())), "scored": scored,
    }


def _two_turn_dialogue(item: dict) -> Dialogue:
    return Dialogue(item["id"], (Utterance("agent", item["greeting"]),
                                 Utterance("customer", item["text"])))


def two_turn_conversations(items: list[dict], prefix: str) -> dict[str, list[Outgoing]]:
    """Hand-written checks: an agent greeting (seq 0), then the customer's text (seq 1)."""
    return uss_conversations([_two_turn_dialogue(it) for it in items], prefix)


def check_set_metrics(items: list[dict], prefix: str, events: dict[str, dict],
                      alerts: dict[str, dict]) -> dict:
    """Per kind (complaint, neutral, praise): n and share alerted on the customer turn; and
    per item its customer-turn score, whether it alerted and the rules."""
    rows = []
    for it in items:
        tid = f"{prefix}{it['id']}:1"
        event, alert = events.get(tid), alerts.get(tid)
        rows.append({"id": it["id"], "kind": it["kind"],
                     "score": None if event is None else event["score"],
                     "alerted": alert is not None, "rules": alert["rules"] if alert else []})
    kinds = [*KINDS, *sorted({r["kind"] for r in rows} - set(KINDS))]
    by_kind = {}
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {"n": len(mine),
                         "alerted": _share(sum(r["alerted"] for r in mine), len(mine))}
    return {"by_kind": by_kind, "items": rows}


def run(sets: dict[str, list[Dialogue]], cooldown_turns: int,
        worker_env: dict[str, str] | None = None,
        checks: list[dict] | None = None) -> dict[str, dict]:
    """Start the local stack and one worker (CHAT_ALERT_COOLDOWN_TURNS = `cooldown_turns`
    unless `worker_env` says otherwise), replay every set (prefix f"{name}-") and the optional
    two-turn `checks` (key "checks", prefix "checks-"), and return the metrics per set."""
    t0 = time.monotonic()
    settings = Settings(broker_profile="tansu")
    env = {"CHAT_ALERT_COOLDOWN_TURNS": str(cooldown_turns), **(worker_env or {})}
    stack = start_stack(settings, workers=0)
    try:
        stack.start_worker(f"alert-replay-{os.getpid()}", **env)
        conversations: dict[str, list[Outgoing]] = {}
        for name, dialogues in sets.items():
            conversations |= uss_conversations(dialogues, f"{name}-")
        if checks:
            conversations |= two_turn_conversations(checks, "checks-")
        t1 = time.monotonic()
        events, alerts = asyncio.run(replay_collect(stack.bootstrap, settings, conversations))
        replay_s = round(time.monotonic() - t1, 1)
    finally:
        stack.stop()
    seconds = round(time.monotonic() - t0, 1)
    out = {name: {**alert_metrics(dialogues, f"{name}-", events, alerts, cooldown_turns),
                  "seconds": seconds, "replay_seconds": replay_s}
           for name, dialogues in sets.items()}
    if checks:
        out["checks"] = check_set_metrics(checks, "checks-", events, alerts)
    out["_events"] = events  # every enriched event by turn id, for the caller's own figures
    return out
