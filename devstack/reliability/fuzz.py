"""The fuzz part: generated bad messages (devstack/fuzz.py) mixed into valid traffic. The worker
never crashes, every bad message is in the DLQ with the reason it deserves (traced by its
original bytes), every valid turn is enriched exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import orjson

from devstack import fuzz
from devstack.benchmark import fresh_topics
from devstack.reliability.common import (
    digest,
    http_get,
    log,
    metric,
    run_name,
    send_stream,
    stop_worker,
    worker_metrics,
)
from devstack.reliability.outputs import Collector
from devstack.reliability.scale import Scale
from devstack.stack import Stack
from worker.records import event_id


def fuzz_part(stack: Stack, scale: Scale, seed: int = 99) -> dict:
    env = fresh_topics(stack, "fuzz")
    worker = stack.start_worker(run_name("fuzz"), **env)
    collector = Collector(stack.bootstrap, env)
    try:
        t = fuzz.build(seed, scale.fuzz_bad, scale.fuzz_conversations, prefix="fz-",
                       faulted=scale.fuzz_conversations)
        log(f"fuzz: {len(t.bad)} bad messages, {len(t.valid)} valid turns, {len(t.faults)} "
            "protocol faults")
        asyncio.run(send_stream(stack.bootstrap, env["CHAT_TOPIC_TURNS"], t.traffic))
        asyncio.run(send_stream(stack.bootstrap, env["CHAT_TOPIC_TURNS"],
                                [f[:2] for f in t.faults]))
        expected = {digest(v): r for v, r in t.expected_dlq.items()}
        valid_ids = {event_id(v["conversation_id"], v["turn_id"]) for v in t.valid}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            seen = {d["digest"] for d in collector.select("dlq")}
            if set(expected) <= seen and valid_ids <= collector.ids():
                break
            if time.monotonic() - collector.last_arrival > 90 or not worker.running:
                break
            time.sleep(1.0)
        time.sleep(2.0)
        dlq: dict[str, list[str]] = defaultdict(list)
        for d in collector.select("dlq"):
            dlq[d["digest"]].append(d["reason"])
        events = collector.select("enriched")
        per_id: dict[str, int] = defaultdict(int)
        for e in events:
            per_id[e["event_id"]] += 1
        text = worker_metrics(worker)
        reasons: dict[str, int] = defaultdict(int)
        for r in expected.values():
            reasons[r] += 1
        return {
            "fuzz_inputs": len(t.bad) + sum(1 for f in t.faults if f[2]),
            "bad_generated": len(t.bad), "protocol_faults": len(t.faults),
            "valid_turns": len(t.valid), "messages": t.messages,
            "expected_by_reason": dict(sorted(reasons.items())),
            "bad_not_in_dlq": sum(1 for h in expected if h not in dlq),
            "wrong_reason": sum(1 for h, r in expected.items() if h in dlq and r not in dlq[h]),
            "valid_not_enriched": len(valid_ids - set(per_id)),
            "valid_enriched_twice": sum(1 for i in valid_ids if per_id.get(i, 0) > 1),
            "valid_in_dlq": sum(1 for v in t.valid
                                if digest(orjson.dumps(v)) in dlq),
            "crashes": 0 if worker.running else 1,
            "ready_at_end": http_get(worker.web_port, "/ready/")[0] == 200,
            "duplicates_skipped": metric(text, "chat_duplicate_turns_total"),
        }
    finally:
        collector.close()
        stop_worker(stack, worker)
