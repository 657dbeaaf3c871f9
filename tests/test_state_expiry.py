"""Idle conversations' state is dropped: tombstones in the changelog, gone from the table."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from devstack.benchmark import fresh_topics
from tests.conftest import send
from tests.helpers import turn

pytestmark = pytest.mark.integration


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def changelog(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    records: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(10):
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                records += [(m.key, m.value) for m in msgs]
    finally:
        await consumer.stop()
    return records


def test_idle_state_expires(stack):
    env = fresh_topics(stack, "expiry")
    worker = stack.start_worker("worker-expiry", CHAT_STATE_IDLE_S="2", CHAT_STATE_SWEEP_S="0.5",
                                **env)
    try:
        cids = ["exp-a", "exp-b"]
        send(stack.bootstrap, env["CHAT_TOPIC_TURNS"],
             [(c.encode(), orjson.dumps(turn(c, s))) for c in cids for s in range(2)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and metric(worker.web_port,
                                                     "chat_states_expired_total") < 2:
            time.sleep(0.5)
        assert metric(worker.web_port, "chat_states_expired_total") == 2
        assert metric(worker.web_port, "chat_active_conversations") == 0
        records = asyncio.run(changelog(stack.bootstrap,
                                        f"{env['CHAT_APP_ID']}-conversations-changelog",
                                        stack.settings.partitions))
        last = {}
        for key, value in records:
            last[key] = value
        assert {k: v for k, v in last.items()} == {b"exp-a": None, b"exp-b": None}
    finally:
        worker.stop()
        stack.workers.remove(worker)
