"""Session fixtures: the real local stack (Tansu broker, tritonserver, one worker process) and
a collector that reads every output topic in the background."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack.stack import Stack, start_stack
from worker.settings import Settings


class Outputs:
    """Everything the worker wrote, by topic, read continuously from the beginning."""

    def __init__(self, bootstrap: str, settings: Settings) -> None:
        self.bootstrap = bootstrap
        self.names = {settings.topic_enriched: "enriched", settings.topic_alerts: "alerts",
                      settings.topic_dlq: "dlq"}
        self.docs: dict[str, list[dict]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "output consumer did not start"

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(*self.names, bootstrap_servers=self.bootstrap,
                                    group_id=None, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=50)
        await consumer.start()
        self._ready.set()
        try:
            while not self._stop.is_set():
                for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                    with self._lock:
                        self.docs[self.names[tp.topic]] += [orjson.loads(m.value)
                                                            for m in messages]
        finally:
            await consumer.stop()

    def select(self, kind: str, where: Callable[[dict], bool]) -> list[dict]:
        with self._lock:
            return [d for d in self.docs[kind] if where(d)]

    def wait(self, kind: str, where: Callable[[dict], bool], count: int,
             timeout: float = 120.0) -> list[dict]:
        """Wait until at least `count` matching docs arrived, then a little longer so that
        extra (duplicate) ones would show too."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.select(kind, where)) >= count:
                time.sleep(1.0)
                return self.select(kind, where)
            time.sleep(0.2)
        got = self.select(kind, where)
        raise AssertionError(f"{len(got)} of {count} {kind} events after {timeout}s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def send(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Publish in order and wait for the broker's acks."""

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in messages:
                await producer.send_and_wait(topic, key=key, value=value)
        finally:
            await producer.stop()

    asyncio.run(go())


@pytest.fixture(scope="session")
def stack() -> Stack:
    s = start_stack(Settings(broker_profile="tansu"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def outputs(stack: Stack) -> Outputs:
    out = Outputs(stack.bootstrap, stack.settings)
    yield out
    out.close()
