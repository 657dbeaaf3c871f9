"""Broker restart mid-stream, on the real processes: a noida-db broker (it persists to disk;
Tansu keeps everything in memory) is stopped with SIGTERM while dialogues stream in, stays down
5 s and starts again on the same data directory and port. One worker, never restarted: it must
reconnect by itself, and every input turn must have its enriched event (by deterministic event
id) with the score of an uninterrupted run of the same dialogues.

Known bug: noida-db forgets the consumer group's members when it restarts, so the worker has to
rejoin its group: a rebalance mid-stream, where faust-streaming 0.15.3 can skip input (the
mid-stream reposition bug, README "Reliability"; measured: 1-2 turns lost in 3 of 6 trials).
Until worker/faust_fixes.py exists, a loss marks this test xfail instead of failing it; once
the fix is there, any loss fails it."""

from __future__ import annotations

import importlib.util

import pytest

from devstack.reliability import broker_restart
from devstack.triton import Triton

pytestmark = pytest.mark.integration
FIX_LANDED = importlib.util.find_spec("worker.faust_fixes") is not None


@pytest.fixture(scope="module")
def triton():
    t = Triton().start()
    yield t
    t.stop()


def test_graceful_broker_restart_mid_stream_loses_nothing(triton):
    r = broker_restart(triton, conversations=8, down_s=5.0, rate=20.0, restart_after_s=2.5,
                       quiet_timeout=90, quiet_s=30)
    # the restart really happened mid-stream
    assert 0 < r["sent_before_restart"] < r["messages"]
    assert r["down_s"] >= 5.0
    # the worker reconnected by itself: never exited, never restarted, outputs resumed
    assert r["worker_exits"] == 0 and r["worker_restarts"] == 0
    assert r["outputs_resumed_after_s"] is not None
    assert r["reference_missing"] == 0 and r["unexpected_events"] == 0
    assert r["duplicates_differing"] == 0  # a redelivered turn gives an identical event
    assert r["dlq"] == 0
    # consumer lag is exported per input partition; values are not asserted (broker-specific)
    assert len(r["consumer_lag"]) == 4 and all(v >= 0 for v in r["consumer_lag"].values())
    lost = {k: r[k] for k in ("turns_missing", "score_mismatches", "alerts_missing")}
    if any(lost.values()) and not FIX_LANDED:
        pytest.xfail(f"known faust-streaming reposition bug after the rejoin: {lost}, "
                     f"e.g. {r['missing_examples']}")
    assert lost == {"turns_missing": 0, "score_mismatches": 0, "alerts_missing": 0}, r
    assert r["ready_at_end"]
