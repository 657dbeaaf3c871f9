"""chat_consumer_lag: highwater minus committed offset per assigned input partition (the read
position before the first commit); partitions that move away lose their series."""

import asyncio
from collections import defaultdict

from faust.types import TP
from prometheus_client import generate_latest

from worker import metrics
from worker.agents import update_consumer_lag


class FakeConsumer:
    def __init__(self, assigned, highwaters, committed, positions):
        self.assigned, self.highwaters, self.positions = assigned, highwaters, positions
        self._committed_offset = defaultdict(lambda: None, committed)

    def assignment(self):
        return set(self.assigned)

    def highwater(self, tp):
        return self.highwaters.get(tp)

    async def position(self, tp):
        return self.positions.get(tp)


class FakeApp:
    def __init__(self, consumer):
        self.consumer = consumer


def lag(topic: str, partition: int) -> float | None:
    return metrics.REGISTRY.get_sample_value("chat_consumer_lag",
                                             {"topic": topic, "partition": str(partition)})


def test_lag_is_highwater_minus_committed_or_position():
    t0, t1, t2 = TP("lag.turns", 0), TP("lag.turns", 1), TP("lag.turns", 2)
    changelog = TP("app-conversations-changelog", 0)
    consumer = FakeConsumer(
        assigned=[t0, t1, t2, changelog],
        highwaters={t0: 120, t1: 40, t2: None, changelog: 999},
        committed={t0: 100, changelog: 5},  # t1: nothing committed yet
        positions={t1: 35, t2: 0})
    asyncio.run(update_consumer_lag(FakeApp(consumer), "lag.turns"))
    assert lag("lag.turns", 0) == 20
    assert lag("lag.turns", 1) == 5  # highwater - read position
    assert lag("lag.turns", 2) is None  # no fetch response yet: no highwater, no series
    assert lag("app-conversations-changelog", 0) is None  # only the input topic
    assert b"chat_consumer_lag{" in generate_latest(metrics.REGISTRY)

    consumer.assigned = [t1]  # t0 moved to another worker
    consumer.highwaters[t1] = 30  # a stale highwater below the commit never shows negative
    consumer._committed_offset[t1] = 33
    asyncio.run(update_consumer_lag(FakeApp(consumer), "lag.turns"))
    assert lag("lag.turns", 0) is None
    assert lag("lag.turns", 1) == 0


def test_lag_waits_for_a_started_consumer():
    class NotStarted:
        def assignment(self):
            raise RuntimeError("consumer thread not yet started")

    asyncio.run(update_consumer_lag(FakeApp(NotStarted()), "lag.turns"))  # no exception
