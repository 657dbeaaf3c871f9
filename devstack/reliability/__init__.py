"""Faults, bad input and a soak on the real processes: `python -m devstack reliability`.

Writes reports/reliability.json and reports/reliability.md. Every part runs on its own topics and
consumer group with its own worker process (the real `python -m worker`), against the real
tritonserver and a real Kafka-protocol broker:

triton  Triton is stopped for `outage_s` while dialogues stream in: the worker must report
        not-ready, stop taking input (it holds its batch), recover by itself when Triton is
        back, and lose or change nothing (scores equal an uninterrupted run of the same input).
broker  a noida-db broker (it persists to disk) is stopped gracefully mid-stream, stays down
        `broker_down_s` and starts again on the same data and port: the worker reconnects by
        itself; every turn has its enriched event and its reference score.
fuzz    `fuzz_bad` generated bad messages (devstack/fuzz.py) mixed into valid traffic: the
        worker never crashes, every bad message is in the DLQ with the reason it deserves
        (traced by its original bytes), every valid turn is enriched exactly once.
soak    `soak_conversations` concurrent conversations at a modest rate for `soak_minutes`
        (conversations end, or are abandoned and expire by idle time): the worker's resident
        memory and table size are sampled; rss_growth_pct compares the first sample after the
        warm-up with the last.
rebalance  a second worker joins mid-stream and later leaves (SIGTERM), `rebalances` times, on
        the kill9 input: partitions and their state move and come back; compared like kill9.
kill9   the worker is killed with SIGKILL `kills` times at random points while >= 10k turns of
        >= 200 interleaved conversations stream in, and restarted each time; compared with an
        uninterrupted run of the same input: turns missing, score mismatches, alerts missing,
        duplicates with different content.

`--only a,b` runs some parts and merges them into an existing report (each part keeps the
command and time that produced it), so a long soak can run beside the other parts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import random
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from devstack import fuzz
from devstack.benchmark import fresh_topics, interleaved
from devstack.broker import Noida
from devstack.procs import Server
from devstack.replay import Outgoing, conversation_messages
from devstack.stack import Stack
from devstack.triton import Triton
from training.data import Dialogue, load_meld, load_uss
from worker.records import event_id, now_iso
from worker.settings import Settings

PARTS = ("triton", "broker", "fuzz", "soak", "rebalance", "kill9")
SESSION_TIMEOUT_S = 6  # broker_session_timeout of the local (Tansu) profile, worker/app.py
SCORE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Scale:
    kill_conversations: int  # at least this many conversations ...
    kill_turns: int  # ... and at least this many turns
    kills: int
    kill_rate: float  # input messages/s while the worker is being killed
    rebalances: int  # a second worker joins and later leaves, this many times
    outage_conversations: int
    outage_s: float
    outage_rate: float
    broker_conversations: int
    broker_down_s: float
    broker_rate: float
    fuzz_bad: int
    fuzz_conversations: int
    soak_minutes: float
    soak_conversations: int
    soak_rate: float  # input messages/s, all conversations together
    soak_warmup_minutes: float
    soak_sample_s: float
    soak_idle_s: float  # CHAT_STATE_IDLE_S of the soak worker
    soak_sweep_s: float


FULL = Scale(kill_conversations=200, kill_turns=10_000, kills=5, kill_rate=80.0, rebalances=5,
             outage_conversations=40, outage_s=30.0, outage_rate=15.0,
             broker_conversations=40, broker_down_s=5.0, broker_rate=20.0,
             fuzz_bad=10_000, fuzz_conversations=200,
             soak_minutes=30.0, soak_conversations=1000, soak_rate=15.0,
             soak_warmup_minutes=5.0, soak_sample_s=30.0, soak_idle_s=180.0, soak_sweep_s=15.0)
SMOKE = Scale(kill_conversations=12, kill_turns=0, kills=1, kill_rate=40.0, rebalances=1,
              outage_conversations=6, outage_s=3.0, outage_rate=15.0,
              broker_conversations=6, broker_down_s=2.0, broker_rate=20.0,
              fuzz_bad=240, fuzz_conversations=6,
              soak_minutes=0.35, soak_conversations=60, soak_rate=10.0,
              soak_warmup_minutes=0.15, soak_sample_s=3.0, soak_idle_s=15.0, soak_sweep_s=2.0)


# small tools ------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def metric(text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None if there is none."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        base, _, rest = series.partition("{")
        if base != name:
            continue
        have = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if "=" in kv)
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
            found = True
    return total if found else None


def worker_metrics(worker: Server) -> str:
    status, body = http_get(worker.web_port, "/metrics")
    return body.decode() if status == 200 else ""


def rss_bytes(pid: int) -> int | None:
    """Resident set size from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def digest(raw: bytes) -> str:
    return hashlib.sha1(raw).hexdigest()


def dialogue_pool(seed: int, min_turns: int = 4, max_turns: int = 30) -> list[Dialogue]:
    """Every USS (MWOZ, SGD) and MELD dialogue of a chat-like length, sources interleaved.
    The reliability runs need more turns than the held-out splits have; scores are compared
    with a reference run of the same input, not with labels, so any split will do."""
    rng = random.Random(seed)
    pools = [load_uss("MWOZ"), load_uss("SGD"),
             [d for split in ("train", "dev", "test") for d in load_meld(split)]]
    pools = [[d for d in p if min_turns <= len(d.utterances) <= max_turns] for p in pools]
    for p in pools:
        rng.shuffle(p)
    out: list[Dialogue] = []
    while any(pools):
        for p in pools:
            if p:
                out.append(p.pop())
    return out


def pick(conversations: int, turns: int, seed: int) -> list[Dialogue]:
    """At least `conversations` dialogues and at least `turns` turns in all."""
    out, n = [], 0
    for d in dialogue_pool(seed):
        if len(out) >= conversations and n >= turns:
            break
        out.append(d)
        n += len(d.utterances)
    if len(out) < conversations or n < turns:
        raise ValueError(f"only {len(out)} dialogues / {n} turns available")
    return out


def expected_ids(dialogues: list[Dialogue], prefix: str) -> dict[str, tuple[str, int]]:
    """Deterministic event id of every turn -> (conversation id without prefix, seq)."""
    return {event_id(f"{prefix}{d.id}", f"{prefix}{d.id}:{seq}"): (d.id, seq)
            for d in dialogues for seq in range(len(d.utterances))}


# outputs ------------------------------------------------------------------------------------


class Collector:
    """Everything written to one run's output topics, read from the beginning by a thread.
    aiokafka reconnects by itself, so it carries on across a broker restart. DLQ entries are
    kept small (reason, conversation id, digest of the original bytes); with `slim`, enriched
    events keep only their ids."""

    def __init__(self, bootstrap: str, env: dict[str, str], slim: bool = False) -> None:
        self.names = {env["CHAT_TOPIC_ENRICHED"]: "enriched", env["CHAT_TOPIC_ALERTS"]: "alerts",
                      env["CHAT_TOPIC_DLQ"]: "dlq"}
        self.bootstrap, self.slim = bootstrap, slim
        self.docs: dict[str, list[dict]] = defaultdict(list)
        self.last_arrival = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("output consumer did not start")

    def _keep(self, kind: str, value: bytes) -> dict:
        doc = orjson.loads(value)
        if kind == "dlq":
            return {"reason": doc["reason"], "conversation_id": doc.get("conversation_id"),
                    "digest": digest(base64.b64decode(doc["original_b64"]))}
        if kind == "enriched" and self.slim:
            return {"event_id": doc["event_id"], "conversation_id": doc["conversation_id"]}
        return doc

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(*self.names, bootstrap_servers=self.bootstrap,
                                    group_id=None, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=100, max_partition_fetch_bytes=4 << 20)
        await consumer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    batch = await consumer.getmany(timeout_ms=300)
                except KafkaError:  # broker restarting: aiokafka reconnects
                    await asyncio.sleep(0.5)
                    continue
                for tp, messages in batch.items():
                    kind = self.names[tp.topic]
                    kept = [self._keep(kind, m.value) for m in messages]
                    with self._lock:
                        self.docs[kind] += kept
                        self.last_arrival = time.monotonic()
        finally:
            await consumer.stop()

    def select(self, kind: str, where: Callable[[dict], bool] = lambda d: True) -> list[dict]:
        with self._lock:
            return [d for d in self.docs[kind] if where(d)]

    def ids(self, kind: str = "enriched") -> set[str]:
        with self._lock:
            return {d["event_id"] for d in self.docs[kind]}

    def wait_ids(self, wanted: set[str], timeout: float, quiet_s: float = 60.0,
                 settle_s: float = 2.0) -> set[str]:
        """Wait until every wanted event id arrived (then `settle_s` more, so duplicates show),
        or nothing new arrived for `quiet_s`, or `timeout`. Returns the ids still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = wanted - self.ids()
            if not missing:
                time.sleep(settle_s)
                return set()
            if time.monotonic() - self.last_arrival > quiet_s:
                break
            time.sleep(0.5)
        return wanted - self.ids()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


# input ----------------------------------------------------------------------------------------


async def send_stream(bootstrap: str, topic: str, stream: Iterable[Outgoing | tuple],
                      rate: float | None = None, progress: list[int] | None = None,
                      acked: dict[int, tuple[int, int]] | None = None) -> int:
    """Publish in order. With `rate` (messages/s): paced, `ts` stamped at send, each message
    sent and acknowledged before the next; a send that fails (the broker is down) is retried
    until it succeeds, so the sender pauses like a producer under backpressure. Without: as
    fast as the producer goes (pipelined), values as they are. `progress[0]` counts sent;
    `acked[i]` is the (partition, offset) the broker acknowledged for message i (paced only)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                linger_ms=0 if rate else 5, max_request_size=1 << 20,
                                request_timeout_ms=10_000, retry_backoff_ms=200)
    await producer.start()
    sent, pending = 0, []
    t0 = time.perf_counter()
    try:
        for i, m in enumerate(stream):
            key, value = (m.key, m.stamped()) if isinstance(m, Outgoing) else m
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                while True:
                    try:
                        md = await producer.send_and_wait(topic, key=key, value=value)
                        if acked is not None:
                            acked[i] = (md.partition, md.offset)
                        break
                    except KafkaError:
                        await asyncio.sleep(0.5)
            else:
                pending.append(await producer.send(topic, key=key, value=value))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending = []
            sent += 1
            if progress is not None:
                progress[0] = sent
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def send_in_thread(bootstrap: str, topic: str, stream: list, rate: float | None,
                   progress: list[int],
                   acked: dict[int, tuple[int, int]] | None = None) -> threading.Thread:
    t = threading.Thread(target=lambda: asyncio.run(send_stream(bootstrap, topic, stream, rate,
                                                                progress, acked)), daemon=True)
    t.start()
    return t


def streams(dialogues: list[Dialogue], prefix: str) -> list[Outgoing]:
    """The dialogues' turns (and end events), interleaved round-robin: many live chats."""
    return interleaved([conversation_messages(d, prefix=prefix) for d in dialogues])


# comparing a run with its uninterrupted reference ----------------------------------------------


def compare(dialogues: list[Dialogue], collector: Collector, ref_prefix: str,
            prefix: str, broker_lost: set[tuple[str, int]] | None = None,
            outputs_lost: set[tuple[str, int]] | None = None) -> dict:
    """Every input turn's event by deterministic event id; scores and alerts against the
    reference run of the same dialogues (same conversation ids but for the prefix).

    `broker_lost`: turns (conversation id without prefix, seq) whose input the broker
    acknowledged to the producer but no longer has, or put at an offset the worker had already
    consumed (see broker_restart). They are not counted as missing; the later
    turns of their conversation legitimately differ from the reference (their state never saw
    the lost turn), so their scores and alerts are counted apart, not as mismatches.
    `outputs_lost`: turns whose event (and alert) the broker acknowledged to the worker but no
    longer has; not counted as missing, their conversation's later turns are unaffected."""
    want = expected_ids(dialogues, prefix)
    ref_want = expected_ids(dialogues, ref_prefix)
    lost = broker_lost or set()
    gone = outputs_lost or set()
    first_lost: dict[str, int] = {}
    for c, seq in lost:
        first_lost[c] = min(seq, first_lost.get(c, seq))

    def after_loss(key: tuple[str, int]) -> bool:
        return key[0] in first_lost and key[1] > first_lost[key[0]]

    def broker_lost_it(key: tuple[str, int]) -> bool:
        return key in lost or key in gone or after_loss(key)

    def grouped(pfx: str) -> dict[tuple[str, int], list[dict]]:
        out: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for e in collector.select("enriched", lambda d: d["conversation_id"].startswith(pfx)):
            out[(e["conversation_id"].removeprefix(pfx), e["seq"])].append(e)
        return out

    ref, got = grouped(ref_prefix), grouped(prefix)
    turns = set(want.values())
    mismatched = [k for k, evs in got.items() if k in ref and any(
        abs(e["score"] - ref[k][0]["score"]) > SCORE_TOLERANCE for e in evs)]
    differing = [k for k, evs in got.items()
                 if any(orjson.dumps(e) != orjson.dumps(evs[0]) for e in evs[1:])]

    def alert_keys(pfx: str) -> set[tuple[str, int]]:
        return {(a["conversation_id"].removeprefix(pfx), a["seq"]) for a in
                collector.select("alerts", lambda d: d["conversation_id"].startswith(pfx))}

    ref_alerts, alerts = alert_keys(ref_prefix), alert_keys(prefix)
    got_ids = collector.ids()
    missing = [i for i in set(want) - got_ids if want[i] not in lost | gone]
    out = {
        "turns_in": len(want),
        "turns_missing": len(missing),
        "reference_missing": len(set(ref_want) - got_ids),
        "unexpected_events": len(set(got) - turns),
        "duplicates": sum(len(evs) - 1 for evs in got.values()),
        "duplicates_differing": len(differing),
        "score_mismatches": sum(1 for k in mismatched if not after_loss(k)),
        "alerts_reference": len(ref_alerts),
        "alerts_missing": len({k for k in ref_alerts - alerts if not broker_lost_it(k)}),
        "alerts_extra": len({k for k in alerts - ref_alerts if not broker_lost_it(k)}),
        "dlq": len(collector.select("dlq", lambda d: (d["conversation_id"] or "").startswith(
            prefix))),
        "missing_examples": sorted(f"{c}#{s}" for c, s in (want[i] for i in missing))[:10],
        "alerts_missing_examples": sorted(f"{c}#{s}" for c, s in ref_alerts - alerts
                                          if not broker_lost_it((c, s)))[:10],
    }
    if broker_lost is not None:
        out.update({
            "input_lost_by_broker": len(lost),
            "input_lost_by_broker_examples": sorted(f"{c}#{s}" for c, s in lost)[:10],
            "turns_after_broker_loss": sum(1 for k in turns if after_loss(k)),
            "score_changes_after_broker_loss": sum(1 for k in mismatched if after_loss(k)),
        })
    return out


async def read_log(bootstrap: str, topic: str, partitions: int
                   ) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every record in `topic`, from the beginning to the
    end offsets at the time of the call."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(p >= end[tp] for p, tp in zip(positions, tps, strict=True)):
                break
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += [(m.partition, m.offset, m.key, m.value) for m in msgs]
    finally:
        await consumer.stop()
    return out


def topic_turns(bootstrap: str, topic: str, partitions: int) -> dict[tuple[int, int], str]:
    """(partition, offset) -> turn_id of every turn record in `topic`."""
    ids: dict[tuple[int, int], str] = {}
    for p, o, _, value in asyncio.run(read_log(bootstrap, topic, partitions)):
        with contextlib.suppress(orjson.JSONDecodeError, TypeError):
            doc = orjson.loads(value)
            if isinstance(doc, dict) and "turn_id" in doc:
                ids[(p, o)] = doc["turn_id"]
    return ids


def applied_turns(bootstrap: str, changelog: str, partitions: int) -> dict[str, set[str]]:
    """Conversation id -> every turn id that some stored state of it reflects. Each state
    lists its last 16 turn ids and a state is stored after every batch, so the union over the
    changelog holds every turn the table applied (and kept)."""
    out: dict[str, set[str]] = defaultdict(set)
    for _, _, key, value in asyncio.run(read_log(bootstrap, changelog, partitions)):
        if key is None or value is None:
            continue
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError):
            out[key.decode()] |= set(orjson.loads(value)["recent_turn_ids"])
    return out


def reference_run(stack: Stack, collector: Collector, env: dict[str, str],
                  dialogues: list[Dialogue], prefix: str, timeout: float = 600) -> int:
    """The same dialogues without faults, as fast as the worker goes; returns missing count."""
    asyncio.run(send_stream(stack.bootstrap, env["CHAT_TOPIC_TURNS"],
                            [(m.key, m.stamped()) for m in streams(dialogues, prefix)]))
    return len(collector.wait_ids(set(expected_ids(dialogues, prefix)), timeout))


def run_name(part: str) -> str:
    return f"rel-{part}-{uuid.uuid4().hex[:6]}"


def stop_worker(stack: Stack, worker: Server) -> None:
    worker.stop()
    if worker in stack.workers:
        stack.workers.remove(worker)


# parts ------------------------------------------------------------------------------------------


def triton_outage(stack: Stack, scale: Scale, seed: int = 21) -> dict:
    env = fresh_topics(stack, "triton")
    name = run_name("triton")
    worker = stack.start_worker(name, **env)
    collector = Collector(stack.bootstrap, env)
    try:
        dialogues = pick(scale.outage_conversations, 0, seed)
        log(f"triton: reference run, {len(dialogues)} conversations")
        reference_run(stack, collector, env, dialogues, "ref-")
        port = worker.web_port
        old = stack.triton
        stream = streams(dialogues, "out-")
        progress = [0]
        log(f"triton: stopping Triton for {scale.outage_s:g}s while {len(stream)} messages "
            f"stream in at {scale.outage_rate:g}/s")
        old.stop()  # graceful: returns once tritonserver has exited (~3.5 s)
        t_down = time.monotonic()
        sender = send_in_thread(stack.bootstrap, env["CHAT_TOPIC_TURNS"], stream,
                                scale.outage_rate, progress)
        not_ready_after = taken_at_not_ready = None
        sent_at_not_ready = 0
        while time.monotonic() - t_down < scale.outage_s:
            if not_ready_after is None and http_get(port, "/ready/")[0] == 503:
                not_ready_after = time.monotonic() - t_down
                taken_at_not_ready = metric(worker_metrics(worker), "chat_messages_in_total")
                sent_at_not_ready = progress[0]
            time.sleep(0.3)
        text = worker_metrics(worker)
        taken_at_end = metric(text, "chat_messages_in_total")
        sent_at_end = progress[0]
        ready_during = http_get(port, "/ready/")[0]
        down_s = time.monotonic() - t_down
        stack.triton = Triton(grpc_port=old.grpc_port, http_port=old.http_port).start()
        t_up = time.monotonic()
        recovered_after = None
        while time.monotonic() - t_up < 120:
            if http_get(port, "/ready/")[0] == 200:
                recovered_after = time.monotonic() - t_up
                break
            time.sleep(0.3)
        sender.join(600)
        missing = collector.wait_ids(set(expected_ids(dialogues, "out-")), 600)
        result = compare(dialogues, collector, "ref-", "out-")
        text = worker_metrics(worker)
        result.update({
            "outage_s": round(down_s, 1),
            "not_ready_seen": not_ready_after is not None,
            "not_ready_after_s": None if not_ready_after is None else round(not_ready_after, 1),
            "ready_status_at_end_of_outage": ready_during,
            # messages the worker took from the topic between reporting not-ready and Triton's
            # return, against those sent meanwhile: it holds one batch and takes no more
            "messages_sent_while_not_ready": None if not_ready_after is None
            else sent_at_end - sent_at_not_ready,
            "messages_taken_while_not_ready": None if taken_at_not_ready is None
            else int(taken_at_end - taken_at_not_ready),
            "recovered_ready_after_s": None if recovered_after is None
            else round(recovered_after, 1),
            "triton_retries": {k: metric(text, "chat_triton_retries_total", kind=k)
                               for k in ("transient", "permanent")},
            "inference_failed_dlq": metric(text, "chat_dead_letters_total",
                                           reason="inference_failed") or 0,
            "worker_exits": 0 if worker.running else 1,
            "still_missing": len(missing),
        })
        return result
    finally:
        collector.close()
        stop_worker(stack, worker)


def broker_restart(triton: Triton, conversations: int, down_s: float, rate: float,
                   seed: int = 31, restart_after_s: float | None = None,
                   quiet_timeout: float = 600, quiet_s: float = 60,
                   **worker_env: str) -> dict:
    """Its own noida-db broker (a restart of the shared Tansu would lose everything: it keeps
    data in memory only) and one worker on it; the caller's Triton."""
    broker = Noida().start()
    stack = Stack(broker, triton, Settings())
    worker = None
    collector = None
    try:
        env = fresh_topics(stack, "broker")
        worker = stack.start_worker(run_name("broker"), **{
            "CHAT_BROKER_PROFILE": broker.profile, **env, **worker_env})
        collector = Collector(broker.bootstrap, env)
        dialogues = pick(conversations, 0, seed)
        log(f"broker: noida-db {broker.bootstrap}; reference run, {len(dialogues)} "
            "conversations")
        reference_run(stack, collector, env, dialogues, "ref-")
        stream = streams(dialogues, "brk-")
        progress = [0]
        acked: dict[int, tuple[int, int]] = {}
        sender = send_in_thread(broker.bootstrap, env["CHAT_TOPIC_TURNS"], stream, rate,
                                progress, acked)
        time.sleep(restart_after_s if restart_after_s is not None
                   else len(stream) / rate / 3)
        sent_before = progress[0]
        log(f"broker: SIGTERM after {sent_before} of {len(stream)} messages; down "
            f"{down_s:g}s")
        t0 = time.monotonic()
        broker.restart(down_s)
        t_up = time.monotonic()
        log(f"broker: back after {t_up - t0:.1f}s")
        # the worker counts a turn once the broker acked its outputs: the count moving again
        # is the worker's producer and consumer back on the restarted broker
        before = metric(worker_metrics(worker), "chat_turns_enriched_total") or 0
        reconnected_after = None
        while time.monotonic() - t_up < 180 and worker.running:
            if (metric(worker_metrics(worker), "chat_turns_enriched_total") or 0) > before:
                reconnected_after = time.monotonic() - t_up
                break
            time.sleep(0.3)
        sender.join(600)
        missing = collector.wait_ids(set(expected_ids(dialogues, "brk-")), quiet_timeout,
                                     quiet_s=quiet_s)
        # noida-db can lose writes it acknowledged just before a SIGTERM: an input turn acked
        # to the producer at (partition, offset) is absent from the log after the restart, and
        # the broker gives that offset to the next record of the partition. The worker had
        # already consumed (and committed) that offset, so the record now there is never
        # delivered. Both are the broker's loss: they are found from the acked offsets and the
        # log as it is after the restart, and counted apart from the worker's figures.
        log_now = topic_turns(broker.bootstrap, env["CHAT_TOPIC_TURNS"],
                              stack.settings.partitions)
        present = set(log_now.values())
        lost_ids, reused = set(), []
        for i, m in enumerate(stream):
            tid = orjson.loads(m.value).get("turn_id")
            if tid is None or tid in present:
                continue
            lost_ids.add(tid)
            now_there = log_now.get(acked[i]) if i in acked else None
            if now_there is not None and now_there != tid:
                reused.append((tid, now_there, *acked[i]))
        shadowed = {r[1] for r in reused}
        # the same loss hits the worker's own writes: a turn whose event was delivered and
        # whose input offset was committed (so Faust had flushed the state write and the
        # broker had acked it) but which no stored state reflects lost its state write in the
        # broker; after the rejoin the table is restored without it, so the conversation's
        # later scores differ from the reference
        applied = applied_turns(broker.bootstrap,
                                f"{env['CHAT_APP_ID']}-conversations-changelog",
                                stack.settings.partitions)
        delivered = collector.ids()
        state_lost = {f"brk-{d.id}:{seq}" for d in dialogues for seq in range(len(d.utterances))
                      if f"brk-{d.id}:{seq}" in present
                      and event_id(f"brk-{d.id}", f"brk-{d.id}:{seq}") in delivered
                      and f"brk-{d.id}:{seq}" not in applied.get(f"brk-{d.id}", set())}

        # and its output writes: the worker stores a state only after the broker acked the
        # turn's event, so a turn that a stored state reflects but whose event the topic no
        # longer has (read back, not only as collected) was acked to the worker and then lost
        in_topic = {orjson.loads(v)["event_id"] for _, _, _, v in asyncio.run(read_log(
            broker.bootstrap, env["CHAT_TOPIC_ENRICHED"], stack.settings.partitions))}
        outputs_lost = {t for c, ids in applied.items() if c.startswith("brk-") for t in ids
                        if t in present and t not in lost_ids
                        and event_id(c, t) not in delivered | in_topic}

        def key_of(tid: str) -> tuple[str, int]:
            cid, _, seq = tid.removeprefix("brk-").rpartition(":")
            return cid, int(seq)

        raw = compare(dialogues, collector, "ref-", "brk-")
        result = compare(dialogues, collector, "ref-", "brk-",
                         broker_lost={key_of(t) for t in lost_ids | shadowed | state_lost},
                         outputs_lost={key_of(t) for t in outputs_lost})
        result["raw_before_attribution"] = {k: raw[k] for k in (
            "turns_missing", "score_mismatches", "alerts_missing", "alerts_extra")}
        result["state_writes_lost_by_broker"] = sorted(t.removeprefix("brk-")
                                                       for t in state_lost)
        result["events_lost_by_broker"] = sorted(t.removeprefix("brk-") for t in outputs_lost)
        result["input_lost_by_broker"] = len(lost_ids)
        result["input_lost_by_broker_examples"] = sorted(key_of(t)[0] + f"#{key_of(t)[1]}"
                                                         for t in lost_ids)[:10]
        result["offsets_reused_by_broker"] = [
            {"lost": a.removeprefix("brk-"), "now_at_its_offset": b.removeprefix("brk-"),
             "partition": p, "offset": o} for a, b, p, o in reused]
        ready = http_get(worker.web_port, "/ready/")[0] == 200
        if missing and not ready:
            result["stuck_dump"] = str(py_spy_dump(worker))
        text = worker_metrics(worker)
        lag = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
               for line in text.splitlines() if line.startswith("chat_consumer_lag{")}
        result.update({
            "broker": "noida-db 0.2.3", "down_s": round(t_up - t0, 1),
            "sent_before_restart": sent_before, "messages": len(stream),
            "turns_enriched_when_broker_back": before,
            "outputs_resumed_after_s": None if reconnected_after is None
            else round(reconnected_after, 1),
            "worker_exits": 0 if worker.running else 1, "worker_restarts": 0,
            "still_missing": len(missing), "consumer_lag": lag, "ready_at_end": ready,
        })
        return result
    finally:
        if collector is not None:
            collector.close()
        if worker is not None:
            stop_worker(stack, worker)
        broker.stop()


def py_spy_dump(worker: Server) -> Path | None:
    """The worker's Python stacks (py-spy), next to its log: what a stuck worker waits on."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = worker.log_path.with_suffix(".stacks.txt")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dump = subprocess.run([exe, "dump", "--pid", str(worker.proc.pid)], capture_output=True,
                              text=True, timeout=60)
        out.write_text(dump.stdout + dump.stderr)
        return out
    return None


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


# soak --------------------------------------------------------------------------------------------


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


# kill -9 ---------------------------------------------------------------------------------------


def kill9(stack: Stack, scale: Scale, seed: int = 5) -> dict:
    env = fresh_topics(stack, "kill9")
    name = run_name("kill9")
    worker = stack.start_worker(name, **env)
    collector = Collector(stack.bootstrap, env)
    rng = random.Random(seed)
    try:
        dialogues = pick(scale.kill_conversations, scale.kill_turns, seed)
        turns = sum(len(d.utterances) for d in dialogues)
        log(f"kill9: reference run, {len(dialogues)} conversations, {turns} turns")
        t0 = time.monotonic()
        ref_missing = reference_run(stack, collector, env, dialogues, "ref-")
        log(f"kill9: reference done in {time.monotonic() - t0:.0f}s ({ref_missing} missing)")
        stream = streams(dialogues, "k9-")
        progress = [0]
        sender = send_in_thread(stack.bootstrap, env["CHAT_TOPIC_TURNS"], stream,
                                scale.kill_rate, progress)
        kills: list[dict] = []
        want = set(expected_ids(dialogues, "k9-"))
        for i in range(scale.kills):
            time.sleep(rng.uniform(3.0, 12.0))
            events = len(collector.ids() & want)
            worker.kill(signal.SIGKILL)
            worker.proc.wait(10)
            stack.workers.remove(worker)
            kills.append({"at_s": round(time.monotonic() - t0, 1), "sent": progress[0],
                          "events_so_far": events,
                          "input_all_sent": not sender.is_alive()})
            log(f"kill9: kill {i + 1}/{scale.kills} after {progress[0]} of {len(stream)} "
                f"messages sent, {events} events")
            time.sleep(SESSION_TIMEOUT_S + 1)  # the dead member leaves the group first
            worker = stack.start_worker(name, **env)
        sender.join(900)
        missing = collector.wait_ids(want, timeout=600, quiet_s=90)
        result = compare(dialogues, collector, "ref-", "k9-")
        result.update({
            "kill9_restarts": len(kills), "conversations": len(dialogues),
            "messages": len(stream), "rate_messages_per_s": scale.kill_rate, "kills": kills,
            "kills_while_sending": sum(1 for k in kills if not k["input_all_sent"]),
            "reference_missing_at_start": ref_missing, "still_missing": len(missing),
            "worker_exits": 0 if worker.running else 1,
            "faust_fixes": faust_fixes_commit(),
        })
        return result
    finally:
        collector.close()
        stop_worker(stack, worker)


def rebalance(stack: Stack, scale: Scale, seed: int = 13) -> dict:
    """A second worker joins the group mid-stream and later leaves it (SIGTERM), `rebalances`
    times, on the kill9 input scale: each time partitions and their state move to the new
    member and back. Compared with an uninterrupted run like kill9."""
    env = fresh_topics(stack, "rebalance")
    name = run_name("rebalance")
    worker = stack.start_worker(name, **env)
    collector = Collector(stack.bootstrap, env)
    rng = random.Random(seed)
    second: Server | None = None
    try:
        dialogues = pick(scale.kill_conversations, scale.kill_turns, seed)
        turns = sum(len(d.utterances) for d in dialogues)
        log(f"rebalance: reference run, {len(dialogues)} conversations, {turns} turns")
        t0 = time.monotonic()
        ref_missing = reference_run(stack, collector, env, dialogues, "ref-")
        stream = streams(dialogues, "rb-")
        progress = [0]
        sender = send_in_thread(stack.bootstrap, env["CHAT_TOPIC_TURNS"], stream,
                                scale.kill_rate, progress)
        cycles: list[dict] = []
        want = set(expected_ids(dialogues, "rb-"))
        for i in range(scale.rebalances):
            time.sleep(rng.uniform(2.0, 8.0))
            joined_at = time.monotonic() - t0
            second = stack.start_worker(f"{name}-2", **env)  # returns once it is ready
            second_ready_s = time.monotonic() - t0 - joined_at
            time.sleep(rng.uniform(2.0, 8.0))
            sent_at_leave = progress[0]
            stop_worker(stack, second)
            second = None
            cycles.append({"joined_at_s": round(joined_at, 1),
                           "second_ready_after_s": round(second_ready_s, 1),
                           "sent_at_join_leave": sent_at_leave,
                           "input_all_sent": not sender.is_alive()})
            log(f"rebalance: join and leave {i + 1}/{scale.rebalances}, "
                f"{sent_at_leave} of {len(stream)} messages sent")
        sender.join(900)
        missing = collector.wait_ids(want, timeout=600, quiet_s=90)
        result = compare(dialogues, collector, "ref-", "rb-")
        result.update({
            "rebalances": len(cycles), "conversations": len(dialogues), "messages": len(stream),
            "rate_messages_per_s": scale.kill_rate, "cycles": cycles,
            "rebalances_while_sending": sum(1 for c in cycles if not c["input_all_sent"]),
            "reference_missing_at_start": ref_missing, "still_missing": len(missing),
            "worker_exits": 0 if worker.running else 1,
        })
        return result
    finally:
        collector.close()
        if second is not None:
            stop_worker(stack, second)
        stop_worker(stack, worker)


def code_version() -> str | None:
    """The commit the run used, `+modified` if tracked files differed from it."""
    import subprocess

    from devstack.procs import ROOT

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, text=True,
                               capture_output=True, timeout=10).stdout.strip()
        return (head + ("+modified" if dirty else "")) or None
    return None


def faust_fixes_commit() -> str | None:
    """The last commit touching worker/faust_fixes.py (the mid-stream reposition fix), if any."""
    import subprocess

    from devstack.procs import ROOT

    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "log", "-1", "--format=%h %s", "--",
                              "worker/faust_fixes.py"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return out or None
    return None


# the report -------------------------------------------------------------------------------------

SECTION = {"triton": "triton_outage", "broker": "broker_restart", "fuzz": "fuzz",
           "soak": "soak", "rebalance": "rebalance", "kill9": "kill9"}


def summary(r: dict) -> dict:
    """The flat figures the issue asks for, from whichever parts are in the report."""
    k, f, s = r.get("kill9") or {}, r.get("fuzz") or {}, r.get("soak") or {}
    b = r.get("rebalance") or {}
    parts = [r.get(name) or {} for name in SECTION.values()]
    return {
        "kill9_restarts": k.get("kill9_restarts"), "turns_in": k.get("turns_in"),
        "turns_missing": k.get("turns_missing"), "score_mismatches": k.get("score_mismatches"),
        "alerts_missing": k.get("alerts_missing"),
        "duplicates_differing": k.get("duplicates_differing"),
        "fuzz_inputs": f.get("fuzz_inputs"),
        "crashes": sum(p.get("crashes", p.get("worker_exits", 0)) or 0 for p in parts)
        if any(parts) else None,
        "bad_not_in_dlq": f.get("bad_not_in_dlq"),
        "valid_not_enriched": f.get("valid_not_enriched"),
        "soak_minutes": s.get("soak_minutes"), "soak_conversations": s.get("soak_conversations"),
        "rss_growth_pct": s.get("rss_growth_pct"),
        "rebalances": b.get("rebalances"), "rebalance_turns_missing": b.get("turns_missing"),
        "rebalance_score_mismatches": b.get("score_mismatches"),
    }


def merge(path: Path, new: dict) -> dict:
    """Read-modify-write under a lock: parts run by separate commands end up in one report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.exists() else {}
        merged = {**{k: v for k, v in old.items() if k in SECTION.values()}, **new}
        merged = {**summary(merged), **{k: merged[k] for k in SECTION.values()
                                        if k in merged}}
        merged["machine"] = new.get("machine") or old.get("machine")
        path.write_text(json.dumps(merged, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown(merged))
    return merged


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown(r: dict) -> str:
    m = r.get("machine") or {}
    lines = ["# Reliability", "",
             f"Real processes on one machine ({m.get('cpu_count')} CPU cores, "
             f"{m.get('processor')}, {m.get('platform')}): the worker (`python -m worker`), "
             "tritonserver, and Tansu (or noida-db for the broker restart). Each part ran on its "
             "own topics and consumer group; the command and time of each are given with it.",
             "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary(r).items()]
    notes = {
        "kill9": "kill -9 of the worker at random points during a live replay of interleaved "
                 "conversations, restarted each time (after the group's session timeout); "
                 "compared by deterministic event id and score with an uninterrupted run of "
                 "the same input on the same worker setup.",
        "triton_outage": "tritonserver stopped mid-stream, restarted on the same ports.",
        "broker_restart": "noida-db 0.2.3 broker stopped with SIGTERM mid-stream, started "
                          "again on the same data directory and port; the worker was not "
                          "restarted.",
        "fuzz": "generated bad messages (devstack/fuzz.py) between valid turns, then protocol "
                "faults (a producer duplicate, a late old turn, a turn after the end event) on "
                "every valid conversation; each bad message traced to its DLQ entry by a digest "
                "of its original bytes.",
        "rebalance": "a second worker joins the group mid-stream (partitions and their state "
                     "move to it) and later leaves with SIGTERM (they move back), repeatedly; "
                     "compared with an uninterrupted run of the same input like kill9.",
        "soak": "steady input at a modest rate; worker RSS from /proc, table size from the "
                "chat_active_conversations gauge; growth compares the first sample after the "
                "warm-up with the last.",
    }
    for key in SECTION.values():
        part = r.get(key)
        if not part:
            continue
        lines += ["", f"## {key}", "", f"Command: `{part.get('command')}` "
                  f"({part.get('when')}, {part.get('seconds')} s, code {part.get('code')}). "
                  f"{notes[key]}", ""]
        for name, value in part.items():
            if name in ("command", "when", "code", "seconds", "samples", "kills", "cycles"):
                continue
            lines.append(f"- {name}: {_fmt(value) if not isinstance(value, dict | list) else json.dumps(value)}")  # noqa: E501
        if key == "kill9" and part.get("kills"):
            lines += ["", "| kill | at s | messages sent | events so far |", "|---|---|---|---|"]
            lines += [f"| {i} | {k['at_s']} | {k['sent']:,} | {k['events_so_far']:,} |"
                      for i, k in enumerate(part["kills"], 1)]
        if key == "rebalance" and part.get("cycles"):
            lines += ["", "| cycle | joined at s | second ready after s | messages sent at leave |",
                      "|---|---|---|---|"]
            lines += [f"| {i} | {c['joined_at_s']} | {c['second_ready_after_s']} | "
                      f"{c['sent_at_join_leave']:,} |" for i, c in enumerate(part["cycles"], 1)]
        if key == "soak" and part.get("samples"):
            lines += ["", "| minute | worker RSS MB | table (conversations) | messages in | "
                      "ended | expired | lag |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {s['minute']:.1f} | {s['rss_mb']:.1f} | "
                      f"{_fmt(s['active_conversations'])} | {_fmt(s['messages_in'])} | "
                      f"{_fmt(s['conversations_ended'])} | {_fmt(s['states_expired'])} | "
                      f"{_fmt(s['consumer_lag'])} |" for s in part["samples"]]
    return "\n".join(lines) + "\n"


def run(parts: Iterable[str], scale: Scale, command: str, out: Path,
        soak_minutes: float | None = None, soak_conversations: int | None = None) -> dict:
    """Run the parts in order (kill9, the longest replay, last) on one Tansu + Triton stack;
    merge them into `out`.json/.md as each finishes."""
    from devstack.stack import start_stack

    parts = [p for p in PARTS if p in set(parts)]
    stack = start_stack(Settings(broker_profile="tansu"), workers=0)
    results: dict = {}
    try:
        for part in parts:
            t0 = time.monotonic()
            when, code = now_iso(), code_version()
            if part == "triton":
                res = triton_outage(stack, scale)
            elif part == "broker":
                res = broker_restart(stack.triton, scale.broker_conversations,
                                     scale.broker_down_s, scale.broker_rate)
            elif part == "fuzz":
                res = fuzz_part(stack, scale)
            elif part == "soak":
                res = soak(stack, scale, soak_minutes, soak_conversations)
            elif part == "rebalance":
                res = rebalance(stack, scale)
            else:
                res = kill9(stack, scale)
            res = {"command": command, "when": when, "code": code,
                   "seconds": round(time.monotonic() - t0, 1), **res}
            results[SECTION[part]] = res
            shown = {k: v for k, v in res.items() if k not in ("samples", "kills", "cycles")}
            log(f"{part}: " + json.dumps(shown))
            merge(out.with_suffix(".json"), {SECTION[part]: res, "machine": machine()})
    finally:
        stack.stop()
    return json.loads(out.with_suffix(".json").read_text())
