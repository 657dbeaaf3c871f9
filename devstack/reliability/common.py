"""What the parts share: logging, the worker's HTTP endpoints and metrics, dialogues to replay,
and sending them to the input topic."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from devstack.benchmark import interleaved
from devstack.procs import Server
from devstack.replay import Outgoing, conversation_messages
from devstack.stack import Stack
from training.data import Dialogue, load_meld, load_uss
from worker.records import event_id


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


def run_name(part: str) -> str:
    return f"rel-{part}-{uuid.uuid4().hex[:6]}"


def stop_worker(stack: Stack, worker: Server) -> None:
    worker.stop()
    if worker in stack.workers:
        stack.workers.remove(worker)
