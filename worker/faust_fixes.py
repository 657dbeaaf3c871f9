"""Fix for faust-streaming 0.15.3: input lost when a consumer is repositioned mid-stream.

`apply()` patches seven Faust methods, once per process. `worker.app` calls it before it
builds the app. It raises if the installed Faust is not 0.15.3, because the patch was
written against that version's source and checked only there.

## What goes wrong (seen in tests/test_faults.py, with logging added to Faust while debugging)

After a rebalance (a worker joins or leaves) or after a restart, a worker restores its
tables. Then `Recovery.on_recovery_completed` (faust/tables/recovery.py) does four things
in this order: it resumes the input partitions, seeks them to the committed offsets
(`Consumer.perform_seek`), resumes flow control, and resumes the consumer. The fetch loop
(`Consumer._drain_messages` with `Consumer.getmany`, faust/transport/consumer.py) keeps
running during that sequence, because it is also reading the changelog. This causes three
failures:

1. Input is delivered before the seek, from the wrong position. The aiokafka driver drains
   records for every partition in the consumer's live `_active_partitions` set. When a
   partition is paused between the drain and the hand-over, `getmany` drops the records
   without telling anyone, but aiokafka's position has already moved past them. The next
   records delivered come from that later position. They arrive before the older ones
   (seen: offset 855 before 829-854), and that happens before the table is restored. This
   worker skips any turn at or below the offset its state has already seen, so the older
   turns are dropped as duplicates.
2. An already-fetched batch is still delivered after the seek. `perform_seek` resets
   `_read_offset` to the committed offset C. The rest of the stale batch then continues at
   an offset P > C+1. `_drain_messages` treats the jump as a gap and calls `_add_gap(C+1, P)`,
   which marks those offsets as acked, so they get committed. It then sets `_read_offset`
   to the batch's last offset, and the re-fetched messages C.. are dropped as already seen
   ("DROPPED MESSAGE ROFF"). The offsets are committed past messages that were never
   processed.
3. Messages delivered between the seek and `flow_control.resume()` are thrown away.
   `FlowControlEvent.resume()` clears every stream queue, including those messages, but
   `_read_offset` has already moved past them. When only one offset is missing at the head,
   `Consumer._new_offset` commits past it anyway, because it tests
   `min(acked) - committed > 1`.

Upstream reports of parts of this:
https://github.com/faust-streaming/faust/issues/216 (the seek comes after the resume),
https://github.com/faust-streaming/faust/issues/221 and its fix
https://github.com/faust-streaming/faust/pull/223 (a generation id on each message; it
misses a rebalance that completes while a fetch is waiting, and the fetches before the
seek), https://github.com/robinhood/faust/issues/559 (a gap computed from the reset read
offset), https://github.com/robinhood/faust/issues/115 (DROPPED MESSAGE ROFF after a
rebalance), and https://github.com/faust-streaming/faust/issues/606 (open: wrong commit
when there are gaps). Upstream master (checked 2026-08-20) has the same consumer.py,
recovery.py and aiokafka driver as 0.15.3, so there is no upstream fix to port.

## The fix: no input partition is fetched until recovery has positioned it

The stream's input partitions (every assigned partition that is not a table changelog)
can be fetched only while they are in a per-consumer "ready" set:

* `ConsumerRebalanceListener.on_partitions_revoked` and `.on_partitions_assigned` (aiokafka
  driver): these run on the consumer thread before Faust's own handlers. The patch empties
  the ready set and bumps an epoch counter there.
* `Consumer._getmany`: the aiokafka fetcher gets a live view of the active partitions that
  leaves out partitions that are not ready. Their records stay in aiokafka's buffer and its
  position does not move, so a later seek has nothing stale to race with. This closes
  failures 1 and 3.
* `AIOKafkaConsumerThread._fetch_records` records the epoch in which the batch was drained.
  `Consumer.getmany` drops the input records of a batch drained in an earlier epoch. Those
  records are fetched again from the committed offset, because aiokafka gives every new
  assignment fresh positions. This closes failure 2 for a rebalance that completes while
  `getmany` is waiting on a fetch.
* `Recovery.on_recovery_completed` and `Recovery._resume_streams` mark the assignment's
  input partitions ready once they return, and only if no newer rebalance has started.
  By then the partitions have been sought to their committed offsets, flow control has
  been resumed, and the tables have been restored.

After that, the first record delivered for a partition is the one at its committed offset.
`_read_offset` matches it, so a seek never looks like a gap and nothing is dropped as
already seen. Changelog partitions, client-only apps and Faust's own gap handling for real
gaps (compaction, transaction markers) are unchanged. Proven by tests/test_faults.py
(kill -9 twice under traffic; a second worker joins and leaves) and
tests/worker/test_faust_fixes.py.

Left as they are, because no seek jump reaches them once the fix is in place:
`_new_offset`'s `> 1` test (issue #606), and `_add_gap` counting the offset being delivered
as part of its gap. Changelog partitions are not gated. Their seeks (`seek_wait`) could in
principle race a fetch in the same way, but that was not seen, and it would affect table
restore rather than input.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Set
from typing import Any

import faust
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

PATCHED_VERSION = "0.15.3"
_MARK = "__chat_faust_fix__"


class _Gate:
    """Per-consumer state. `ready` holds the input partitions that may be fetched. `epoch`
    is bumped on every revoke and assign, on the consumer thread. `fetched_epoch` is the
    epoch in which the latest batch was drained."""

    def __init__(self) -> None:
        self.ready: set[Any] = set()
        self.epoch = 0
        self.fetched_epoch = 0

    def close(self) -> None:
        self.ready.clear()
        self.epoch += 1


def gate(consumer: Any) -> _Gate:
    """The consumer's gate. Both threads can be first to ask: dict.setdefault is atomic."""
    g = consumer.__dict__.get("_chat_gate")
    if g is None:
        g = consumer.__dict__.setdefault("_chat_gate", _Gate())
    return g


class DeliverableView(Set):
    """The partitions that the fetcher may drain. Membership is checked at drain time on the
    consumer thread: an active partition qualifies if it is a changelog or is ready. The
    view is always truthy, because aiokafka's `fetched_records` drains every partition when
    handed a falsy set."""

    def __init__(self, active: Set, ready: Set, changelog_topics: Set[str]) -> None:
        self._active, self._ready, self._changelogs = active, ready, changelog_topics

    def __contains__(self, tp: object) -> bool:
        return tp in self._active and (tp.topic in self._changelogs or tp in self._ready)

    def __iter__(self) -> Iterator[Any]:
        return (tp for tp in list(self._active) if tp in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return True


def _patch(owner: type, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, name, None)
    if original is None:
        raise RuntimeError(f"faust_fixes: {owner.__qualname__}.{name} is missing; the patch "
                           f"does not fit this faust-streaming build")
    if getattr(original, _MARK, False):
        return
    patched = functools.wraps(original)(make(original))
    setattr(patched, _MARK, True)
    setattr(owner, name, patched)


# The wrappers. Each factory takes the original method and returns its replacement.

def _close_on_revoke(original: Callable) -> Callable:
    """Listener, consumer thread: close the gate before Faust hears of the revoke."""
    def on_partitions_revoked(self: Any, revoked: Any) -> Any:
        gate(self._thread.consumer).close()
        return original(self, revoked)
    return on_partitions_revoked


def _close_on_assign(original: Callable) -> Callable:
    """Listener, consumer thread: close the gate again for the new assignment."""
    async def on_partitions_assigned(self: Any, assigned: Any) -> None:
        gate(self._thread.consumer).close()
        await original(self, assigned)
    return on_partitions_assigned


def _note_fetch_epoch(original: Callable) -> Callable:
    """Consumer thread: note the epoch in which this batch was drained. Nothing on this
    thread's loop can run between the drain and this line."""
    async def _fetch_records(self: Any, *args: Any, **kwargs: Any) -> Any:
        records = await original(self, *args, **kwargs)
        g = gate(self.consumer)
        g.fetched_epoch = g.epoch
        return records
    return _fetch_records


def _fetch_through_gate(original: Callable) -> Callable:
    """Main loop: hand the fetcher the gated view instead of the raw active set."""
    async def _getmany(self: Any, active_partitions: Any, timeout: float) -> Any:
        if active_partitions is not None:  # None: client-only app, nothing to gate
            active_partitions = DeliverableView(
                active_partitions, gate(self).ready, self.app.tables.changelog_topics)
        return await original(self, active_partitions, timeout)
    return _getmany


def _drop_stale_batches(original: Callable) -> Callable:
    """Main loop: drop input records drained before the latest revoke or assign."""
    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        g = gate(self)
        changelogs = self.app.tables.changelog_topics
        dropped = 0
        async with contextlib.aclosing(original(self, timeout)) as records:
            async for tp, message in records:
                if g.fetched_epoch != g.epoch and tp.topic not in changelogs:
                    dropped += 1
                    continue
                yield tp, message
        if dropped:
            self.log.info("Dropped %d input record(s) fetched before a rebalance; they are "
                          "fetched again from the committed offset", dropped)
    return getmany


def _open_after_recovery(original: Callable) -> Callable:
    """Main loop: recovery has sought, resumed and restored. Open the gate for this
    assignment unless a newer rebalance has begun."""
    async def resume(self: Any, generation_id: int = 0) -> None:
        await original(self, generation_id)
        app = self.app
        if app.consumer_generation_id == generation_id and not app.rebalancing:
            consumer = app.consumer
            inputs = [tp for tp in consumer.assignment() if not consumer._is_changelog_tp(tp)]
            gate(consumer).ready.update(inputs)  # one step under the GIL
    return resume


def apply() -> None:
    """Install the patches. Calling it again does nothing. Raises on any Faust version other
    than 0.15.3."""
    if faust.__version__ != PATCHED_VERSION:
        raise RuntimeError(
            f"worker/faust_fixes.py patches faust-streaming {PATCHED_VERSION}, found "
            f"{faust.__version__}: check whether the new version still loses input when a "
            f"consumer is repositioned (tests/test_faults.py), then update or drop the patch")
    listener = faust_aiokafka.ConsumerRebalanceListener
    _patch(listener, "on_partitions_revoked", _close_on_revoke)
    _patch(listener, "on_partitions_assigned", _close_on_assign)
    _patch(faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records", _note_fetch_epoch)
    _patch(faust_aiokafka.Consumer, "_getmany", _fetch_through_gate)
    _patch(faust_aiokafka.Consumer, "getmany", _drop_stale_batches)
    _patch(Recovery, "on_recovery_completed", _open_after_recovery)
    _patch(Recovery, "_resume_streams", _open_after_recovery)
