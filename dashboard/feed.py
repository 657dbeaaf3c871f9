"""Read the enriched turns and alerts into the board and fan the updates out to browsers.
The consumer is recreated with backoff whenever it fails (a broker restart, say)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from dashboard.board import Board
from worker.settings import Settings

log = structlog.get_logger("dashboard")

Update = tuple[str, dict[str, Any]]  # (SSE event name, data)
PROBE_S = 3.0  # how often the broker link is checked


def consumer_options(settings: Settings) -> dict[str, Any]:
    """aiokafka connection options from the worker's broker settings (TLS and SASL too)."""
    bootstrap = settings.broker.split("://", 1)[-1].replace(";", ",")
    opts: dict[str, Any] = {"bootstrap_servers": bootstrap,
                            "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        opts["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        opts.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                    sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return opts


class Hub:
    """Browsers' update queues. A queue that fills up is closed: its page reconnects and
    starts again from a snapshot, so memory stays bounded whatever a browser does."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.clients: set[asyncio.Queue[Update | None]] = set()

    def join(self) -> asyncio.Queue[Update | None]:
        q: asyncio.Queue[Update | None] = asyncio.Queue(self.size)
        self.clients.add(q)
        return q

    def leave(self, q: asyncio.Queue[Update | None]) -> None:
        self.clients.discard(q)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        for q in list(self.clients):
            try:
                q.put_nowait((name, data))
            except asyncio.QueueFull:
                self.clients.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)  # tells its stream to end


class Feed:
    def __init__(self, settings: Settings, board: Board, hub: Hub, group_id: str,
                 history_s: float) -> None:
        self.settings = settings
        self.board = board
        self.hub = hub
        self.group_id = group_id
        self.history_s = history_s
        self.connected = False
        self.events = 0
        self._stopping: asyncio.Future[None] | None = None

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected, "events": self.events}

    def _set_connected(self, value: bool) -> None:
        if value != self.connected:
            self.connected = value
            self.hub.publish("status", self.status())

    def apply(self, topic: str, value: bytes, timestamp_ms: int | None = None) -> None:
        try:
            doc = orjson.loads(value)
            if topic == self.settings.topic_alerts:
                update = self.board.add_alert(doc, timestamp_ms)
                name = "alert"
            else:
                at = None if timestamp_ms is None else timestamp_ms / 1000
                update = self.board.add_turn(doc, at)
                name = "turn"
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("event_skipped", topic=topic, error=repr(exc)[:200])
            return
        self.events += 1
        if update is not None:
            self.hub.publish(name, update)

    async def _start(self, consumer: AIOKafkaConsumer) -> None:
        """Every partition of both topics (each dashboard sees everything), from `history_s`
        ago, so a restarted dashboard shows the recent conversations again. Offsets are
        committed under the dashboard's own group, which makes its lag visible."""
        await consumer.start()
        await consumer.topics()
        topics = (self.settings.topic_enriched, self.settings.topic_alerts)
        parts = [TopicPartition(t, p) for t in topics
                 for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not parts:
            raise RuntimeError(f"topics {topics} do not exist yet")
        consumer.assign(parts)
        since = int((time.time() - self.history_s) * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(parts, since))
        ends = await consumer.end_offsets(parts)  # now, not at the first fetch
        for tp, at in found.items():
            consumer.seek(tp, ends[tp] if at is None else at.offset)

    async def run(self) -> None:
        backoff = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                group_id=self.group_id, auto_offset_reset="earliest", fetch_max_wait_ms=100,
                enable_auto_commit=False,  # committed by hand: no stop waits on a dead broker
                **consumer_options(self.settings))
            try:
                await self._start(consumer)
                self._set_connected(True)
                backoff, probed = 0.5, time.monotonic()
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    for tp, messages in batch.items():
                        for m in messages:
                            self.apply(tp.topic, m.value, m.timestamp)
                    if time.monotonic() - probed > PROBE_S:
                        await consumer.topics()  # raises while no broker answers
                        await asyncio.wait_for(consumer.commit(), PROBE_S)
                        probed = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("feed_restart", error=repr(exc)[:200], backoff_s=backoff)
                self._set_connected(False)
            finally:
                # its stop may wait on a dead broker: not for long, it finishes in the background
                self._stopping = asyncio.ensure_future(consumer.stop())
                await asyncio.wait({self._stopping}, timeout=PROBE_S)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def expire_forever(self, every_s: float = 15.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            gone = self.board.expire()
            if gone:
                self.hub.publish("expired", {"ids": gone})
