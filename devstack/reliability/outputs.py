"""What a run wrote: its output topics collected by a thread, and the comparison of a faulted run
with an uninterrupted reference run of the same dialogues."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from devstack.reliability.common import digest, expected_ids, send_stream, streams
from devstack.stack import Stack
from training.data import Dialogue

SCORE_TOLERANCE = 1e-4  # a score further than this from the reference is a mismatch


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


def reference_run(stack: Stack, collector: Collector, env: dict[str, str],
                  dialogues: list[Dialogue], prefix: str, timeout: float = 600) -> int:
    """The same dialogues without faults, as fast as the worker goes; returns missing count."""
    asyncio.run(send_stream(stack.bootstrap, env["CHAT_TOPIC_TURNS"],
                            [(m.key, m.stamped()) for m in streams(dialogues, prefix)]))
    return len(collector.wait_ids(set(expected_ids(dialogues, prefix)), timeout))
