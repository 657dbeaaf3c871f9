"""worker/faust_fixes.py without a broker: Faust's real fetch loop (`_drain_messages`) and
aiokafka's real `Fetcher.fetched_records`, driven with scripted batches."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.structs import ConsumerRecord, TopicPartition
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

from worker import faust_fixes

TOPIC = "chat.turns"
TP = TopicPartition(TOPIC, 0)
CHANGELOG = TopicPartition("t-conversations-changelog", 0)


@pytest.fixture(autouse=True)
def patched():
    faust_fixes.apply()


def record(offset: int, tp: TopicPartition = TP) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, [])


def drain(batches: list[tuple[int, list[int]]], *, fixed: bool = True):
    """Run Consumer._drain_messages over `batches` of (epoch drained in, offsets). The
    partition has just been sought to its committed offset 10 in epoch 2, as
    perform_seek leaves it. Returns the delivered offsets, the gaps Faust recorded
    (auto-acked offsets) and the final read offset."""

    async def go():
        app = faust.App("t", broker="kafka://127.0.0.1:1")
        consumer = app.consumer
        app.topics._acking_topics.add(TOPIC)
        delivered: list[int] = []

        async def callback(message):
            delivered.append(message.offset)

        consumer.callback = callback
        consumer.highwater = lambda tp: 0  # no broker
        consumer._read_offset[TP] = 10
        consumer._committed_offset[TP] = 10
        gate = faust_fixes.gate(consumer)
        gate.epoch = 2
        fetcher = Service()
        script = list(batches)

        async def wait_next_records(timeout):
            if not script:
                fetcher._stopped.set()
                return {}, {TP}
            epoch, offsets = script.pop(0)
            gate.fetched_epoch = epoch  # what the patched _fetch_records notes
            return {TP: [record(o) for o in offsets]}, {TP}

        consumer._wait_next_records = wait_next_records
        if not fixed:
            unpatched = type(consumer).getmany.__wrapped__
            consumer.getmany = lambda timeout: unpatched(consumer, timeout)
        await consumer._drain_messages(fetcher)
        gaps = sorted((i.begin, i.end - 1) for i in consumer._gap[TP])
        return delivered, gaps, consumer._read_offset[TP]

    return asyncio.run(go())


# A batch drained before the rebalance (epoch 1, at offsets 15-17 past the committed 10),
# handed over after the seek; then the fresh fetch from the committed offset.
STALE_THEN_FRESH = [(1, [15, 16, 17]), (2, list(range(10, 19)))]


def test_unpatched_faust_loses_input_after_a_reposition():
    """The bug itself: the stale batch makes 11-15 a gap (acked, so committed) and the
    re-fetched 10-16 fall below the read offset and are dropped."""
    delivered, gaps, read_offset = drain(STALE_THEN_FRESH, fixed=False)
    assert delivered == [15, 16, 17, 17, 18]
    assert gaps == [(11, 15)]
    assert read_offset == 18


def test_stale_batch_is_dropped_and_the_partition_resumes_at_the_committed_offset():
    delivered, gaps, read_offset = drain(STALE_THEN_FRESH)
    assert delivered == list(range(10, 19))
    assert gaps == []
    assert read_offset == 18


def test_records_of_the_current_epoch_are_untouched():
    delivered, gaps, _ = drain([(2, [10, 11, 12]), (2, [13, 14])])
    assert delivered == [10, 11, 12, 13, 14] and gaps == []


class _State:
    def __init__(self, position: int) -> None:
        self.position, self.paused = position, False

    def consumed_to(self, offset: int) -> None:
        self.position = offset


class _Records:
    """The part of aiokafka's PartitionRecords that FetchResult uses."""

    def __init__(self, tp: TopicPartition, offsets: list[int]) -> None:
        self.tp, self.offsets, self.next_fetch_offset = tp, offsets, offsets[0]

    def __iter__(self):
        for offset in self.offsets:
            self.next_fetch_offset = offset + 1
            yield record(offset, self.tp)


def aiokafka_fetcher(buffered: dict[TopicPartition, list[int]]):
    states = {tp: _State(offsets[0]) for tp, offsets in buffered.items()}
    assignment = SimpleNamespace(active=True, state_value=states.__getitem__)
    fetcher = SimpleNamespace(
        _subscriptions=SimpleNamespace(reassignment_in_progress=False,
                                       is_assigned=lambda tp: True),
        _records={tp: FetchResult(tp, assignment=assignment, backoff=0,
                                  partition_records=_Records(tp, offsets))
                  for tp, offsets in buffered.items()},
        _notify=lambda fut: None, _wait_consume_future=None)
    return fetcher, states


def fetched(fetcher, partitions) -> dict[str, list[int]]:
    got = asyncio.run(Fetcher.fetched_records(fetcher, partitions, timeout=0))
    return {tp.topic: [r.offset for r in records] for tp, records in got.items()}


def test_input_partition_not_drained_until_ready():
    """aiokafka's own fetched_records with the gated view: an input partition that is not
    ready stays buffered and its position does not move; changelogs flow meanwhile."""
    fetcher, states = aiokafka_fetcher({TP: [5, 6], CHANGELOG: [0]})
    ready: set = set()
    view = faust_fixes.DeliverableView({TP, CHANGELOG}, ready, {CHANGELOG.topic})
    assert fetched(fetcher, view) == {CHANGELOG.topic: [0]}
    assert states[TP].position == 5 and TP in fetcher._records
    ready.add(TP)
    assert fetched(fetcher, view) == {TOPIC: [5, 6]}
    assert states[TP].position == 7


def test_empty_view_drains_nothing():
    """aiokafka drains every partition for a falsy set: the view must never be falsy."""
    fetcher, states = aiokafka_fetcher({TP: [5, 6]})
    view = faust_fixes.DeliverableView({TP}, set(), set())
    assert len(view) == 0 and bool(view)
    assert fetched(fetcher, view) == {}
    assert states[TP].position == 5
    assert fetched(fetcher, set()) == {TOPIC: [5, 6]}  # what a plain empty set would do


def test_rebalance_closes_the_gate_on_the_consumer_thread():
    consumer = SimpleNamespace()
    gate = faust_fixes.gate(consumer)
    gate.ready.add(TP)
    calls = []

    def revoked(self, tps):
        calls.append(("revoked", tps))

    async def assigned(self, tps):
        calls.append(("assigned", tps))

    listener = SimpleNamespace(_thread=SimpleNamespace(consumer=consumer))
    faust_fixes._close_on_revoke(revoked)(listener, {TP})
    assert gate.ready == set() and gate.epoch == 1
    gate.ready.add(TP)
    asyncio.run(faust_fixes._close_on_assign(assigned)(listener, {TP}))
    assert gate.ready == set() and gate.epoch == 2
    assert calls == [("revoked", {TP}), ("assigned", {TP})]


@pytest.mark.parametrize(("generation", "rebalancing", "opens"),
                         [(3, False, True), (4, False, False), (3, True, False)])
def test_recovery_opens_the_gate_for_its_own_generation_only(generation, rebalancing, opens):
    consumer = SimpleNamespace(assignment=lambda: {TP, CHANGELOG},
                               _is_changelog_tp=lambda tp: tp == CHANGELOG)
    app = SimpleNamespace(consumer_generation_id=generation, rebalancing=rebalancing,
                          consumer=consumer)

    async def original(self, generation_id=0):
        pass

    recovery = SimpleNamespace(app=app)
    asyncio.run(faust_fixes._open_after_recovery(original)(recovery, 3))
    assert faust_fixes.gate(consumer).ready == ({TP} if opens else set())


def test_apply_is_idempotent_and_patches_the_driver():
    before = faust_aiokafka.Consumer.getmany
    faust_fixes.apply()
    assert faust_aiokafka.Consumer.getmany is before
    for owner, name in [(faust_aiokafka.Consumer, "getmany"),
                        (faust_aiokafka.Consumer, "_getmany"),
                        (faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records"),
                        (faust_aiokafka.ConsumerRebalanceListener, "on_partitions_revoked"),
                        (faust_aiokafka.ConsumerRebalanceListener, "on_partitions_assigned"),
                        (Recovery, "on_recovery_completed"), (Recovery, "_resume_streams")]:
        assert getattr(getattr(owner, name), "__chat_faust_fix__", False), name


def test_other_faust_versions_are_refused(monkeypatch):
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(RuntimeError, match=r"patches faust-streaming 0\.15\.3, found 0\.16\.0"):
        faust_fixes.apply()
