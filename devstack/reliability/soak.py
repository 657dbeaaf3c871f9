"""The soak part: `soak_conversations` concurrent conversations at a modest rate for
`soak_minutes` (conversations end, or are abandoned and expire by idle time). The worker's
resident memory and table size are sampled; rss_growth_pct compares the first sample after the
warm-up with the last."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import orjson
from aiokafka import AIOKafkaProducer

from devstack.benchmark import fresh_topics
from devstack.reliability.common import (
    dialogue_pool,
    log,
    metric,
    rss_bytes,
    run_name,
    stop_worker,
    worker_metrics,
)
from devstack.reliability.outputs import Collector
from devstack.reliability.scale import Scale
from devstack.stack import Stack
from training.data import Dialogue
from worker.records import event_id, now_iso


class SoakSchedule:
    """Input of many concurrent conversations at a steady total rate. `slots` conversations
    are live at any time; message n goes to slot n % slots, so each conversation gets a turn
    every slots / rate seconds. When a conversation runs out of turns, its slot starts a new one
    (new id). Every `abandon_every`-th conversation stops without an end event, so its state is
    only dropped by idle expiry. The first conversation of each slot starts at a random turn,
    so conversations end at a steady pace from the start (no synchronised wave)."""

    def __init__(self, pool: list[Dialogue], slots: int, seed: int, prefix: str = "soak-",
                 abandon_every: int = 10) -> None:
        self.pool, self.slots, self.prefix = pool, slots, prefix
        self.abandon_every = abandon_every
        self.rng = random.Random(seed)
        self.queues: list[list[dict]] = [[] for _ in range(slots)]
        self.generation = [0] * slots
        self.started = self.ended = self.abandoned = self.turns = 0
        self.n = 0

    def _new(self, slot: int) -> list[dict]:
        d = self.pool[self.rng.randrange(len(self.pool))]
        cid = f"{self.prefix}{slot}-{self.generation[slot]}"
        first = self.rng.randrange(len(d.utterances)) if self.generation[slot] == 0 else 0
        self.generation[slot] += 1
        self.started += 1
        docs: list[dict] = [
            {"conversation_id": cid, "turn_id": f"{cid}:{seq}", "seq": seq, "role": u.role,
             "text": u.text, "ts": "", "channel": "chat", "tenant": "soak"}
            for seq, u in enumerate(d.utterances) if seq >= first]
        if self.started % self.abandon_every:
            docs.append({"type": "conversation_end", "conversation_id": cid, "ts": "",
                         "reason": "resolved", "tenant": "soak"})
        else:
            self.abandoned += 1
        return docs

    def next(self) -> tuple[bytes, dict]:
        slot = self.n % self.slots
        self.n += 1
        if not self.queues[slot]:
            self.queues[slot] = self._new(slot)
        doc = self.queues[slot].pop(0)
        if doc.get("type") == "conversation_end":
            self.ended += 1
        else:
            self.turns += 1
        return doc["conversation_id"].encode(), doc


async def soak_send(bootstrap: str, topic: str, schedule: SoakSchedule, rate: float,
                    seconds: float, sent_ids: set[str], stop: threading.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    t0 = time.perf_counter()
    try:
        n = 0
        while not stop.is_set():
            at = t0 + n / rate
            if at - t0 > seconds:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, doc = schedule.next()
            doc["ts"] = now_iso()
            await producer.send_and_wait(topic, key=key, value=orjson.dumps(doc))
            if "turn_id" in doc:
                sent_ids.add(event_id(doc["conversation_id"], doc["turn_id"]))
            n += 1
    finally:
        await producer.stop()


def growth_pct(first: float | None, last: float | None) -> float | None:
    if not first or last is None:
        return None
    return round(100.0 * (last - first) / first, 2)


def soak(stack: Stack, scale: Scale, minutes: float | None = None,
         conversations: int | None = None, seed: int = 11) -> dict:
    minutes = scale.soak_minutes if minutes is None else minutes
    slots = scale.soak_conversations if conversations is None else conversations
    env = fresh_topics(stack, "soak")
    worker = stack.start_worker(run_name("soak"), CHAT_STATE_IDLE_S=str(scale.soak_idle_s),
                                CHAT_STATE_SWEEP_S=str(scale.soak_sweep_s),
                                CHAT_LOG_LEVEL="WARNING", **env)
    collector = Collector(stack.bootstrap, env, slim=True)
    schedule = SoakSchedule(dialogue_pool(seed), slots, seed)
    sent_ids: set[str] = set()
    stop = threading.Event()
    seconds = minutes * 60
    log(f"soak: {slots} concurrent conversations, {scale.soak_rate:g} messages/s, "
        f"{minutes:g} min (a turn per conversation every {slots / scale.soak_rate:.0f}s; "
        f"idle expiry {scale.soak_idle_s:g}s); worker pid {worker.proc.pid}")
    sender = threading.Thread(target=lambda: asyncio.run(soak_send(
        stack.bootstrap, env["CHAT_TOPIC_TURNS"], schedule, scale.soak_rate, seconds,
        sent_ids, stop)), daemon=True)
    samples: list[dict] = []
    t0 = time.monotonic()
    sender.start()
    try:
        while True:
            elapsed = time.monotonic() - t0
            text = worker_metrics(worker)
            sample = {
                "minute": round(elapsed / 60, 2),
                "rss_mb": round((rss_bytes(worker.proc.pid) or 0) / 2**20, 1),
                "active_conversations": metric(text, "chat_active_conversations"),
                "messages_in": metric(text, "chat_messages_in_total"),
                "turns_enriched": metric(text, "chat_turns_enriched_total"),
                "conversations_ended": metric(text, "chat_conversations_ended_total"),
                "states_expired": metric(text, "chat_states_expired_total"),
                "consumer_lag": metric(text, "chat_consumer_lag"),
                "broker_rss_mb": round((rss_bytes(stack.broker.server.proc.pid) or 0) / 2**20,
                                       1),
                "sent": schedule.n,
            }
            samples.append(sample)
            if len(samples) % 4 == 1 or elapsed >= seconds:
                log("soak: " + json.dumps(sample))
            if elapsed >= seconds or not worker.running or not sender.is_alive():
                break
            time.sleep(min(scale.soak_sample_s, max(0.0, seconds - elapsed) + 0.01))
        sender.join(60)
        missing = collector.wait_ids(set(sent_ids), timeout=300, quiet_s=60)
        warm = [s for s in samples if s["minute"] >= scale.soak_warmup_minutes] or samples[-1:]
        first, last = warm[0], samples[-1]
        tables = [s["active_conversations"] for s in warm if s["active_conversations"]
                  is not None]
        rss = [s["rss_mb"] for s in warm]
        return {
            "soak_minutes": round((time.monotonic() - t0) / 60, 1),
            "soak_conversations": slots, "rate_messages_per_s": scale.soak_rate,
            "warmup_minutes": scale.soak_warmup_minutes, "idle_expiry_s": scale.soak_idle_s,
            "messages_sent": schedule.n, "turns_sent": schedule.turns,
            "conversations_started": schedule.started, "conversations_ended_sent":
            schedule.ended, "conversations_abandoned": schedule.abandoned,
            "turns_missing": len(missing),
            "rss_mb_first_after_warmup": first["rss_mb"], "rss_mb_last": last["rss_mb"],
            "rss_mb_min_after_warmup": min(rss), "rss_mb_max_after_warmup": max(rss),
            "rss_growth_pct": growth_pct(first["rss_mb"], last["rss_mb"]),
            # the same over the second half of the run: a state that grows with a
            # conversation's age (TML's attention memory and bags of words) only reaches its
            # steady mix after about one conversation lifetime
            "rss_growth_pct_second_half": growth_pct(
                min(samples, key=lambda x: abs(x["minute"] - last["minute"] / 2))["rss_mb"],
                last["rss_mb"]),
            "table_first_after_warmup": first["active_conversations"],
            "table_last": last["active_conversations"],
            "table_min_after_warmup": min(tables) if tables else None,
            "table_max_after_warmup": max(tables) if tables else None,
            "table_growth_pct": growth_pct(first["active_conversations"],
                                           last["active_conversations"]),
            "crashes": 0 if worker.running else 1,
            "samples": samples,
        }
    finally:
        stop.set()
        collector.close()
        stop_worker(stack, worker)
