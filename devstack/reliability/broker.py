"""The broker restart part: a noida-db broker (it persists to disk) is stopped gracefully
mid-stream, stays down `broker_down_s` and starts again on the same data and port. The worker
reconnects by itself; every turn has its enriched event and its reference score. What noida-db
itself loses is read back from the logs after the restart and counted apart."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.benchmark import fresh_topics
from devstack.broker import Noida
from devstack.procs import Server
from devstack.reliability.common import (
    expected_ids,
    http_get,
    log,
    metric,
    pick,
    run_name,
    send_in_thread,
    stop_worker,
    streams,
    worker_metrics,
)
from devstack.reliability.outputs import Collector, compare, reference_run
from devstack.stack import Stack
from devstack.triton import Triton
from worker.records import event_id
from worker.settings import Settings


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


def py_spy_dump(worker: Server) -> Path | None:
    """The worker's Python stacks (py-spy), next to its log: what a stuck worker waits on."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = worker.log_path.with_suffix(".stacks.txt")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dump = subprocess.run([exe, "dump", "--pid", str(worker.proc.pid)], capture_output=True,
                              text=True, timeout=60)
        out.write_text(dump.stdout + dump.stderr)
        return out
    return None
