"""The reliability run's parts and their two scales: FULL (the report) and SMOKE (the test)."""

from __future__ import annotations

from dataclasses import dataclass

PARTS = ("triton", "broker", "fuzz", "soak", "rebalance", "kill9")


@dataclass(frozen=True)
class Scale:
    """How much input, how many faults and how long, part by part."""

    kill_conversations: int  # at least this many conversations ...
    kill_turns: int  # ... and at least this many turns
    kills: int
    kill_rate: float  # input messages/s while the worker is being killed
    rebalances: int  # a second worker joins and later leaves, this many times
    outage_conversations: int
    outage_s: float
    outage_rate: float
    broker_conversations: int
    broker_down_s: float
    broker_rate: float
    fuzz_bad: int
    fuzz_conversations: int
    soak_minutes: float
    soak_conversations: int
    soak_rate: float  # input messages/s, all conversations together
    soak_warmup_minutes: float
    soak_sample_s: float
    soak_idle_s: float  # CHAT_STATE_IDLE_S of the soak worker
    soak_sweep_s: float


FULL = Scale(kill_conversations=200, kill_turns=10_000, kills=5, kill_rate=80.0, rebalances=5,
             outage_conversations=40, outage_s=30.0, outage_rate=15.0,
             broker_conversations=40, broker_down_s=5.0, broker_rate=20.0,
             fuzz_bad=10_000, fuzz_conversations=200,
             soak_minutes=30.0, soak_conversations=1000, soak_rate=15.0,
             soak_warmup_minutes=5.0, soak_sample_s=30.0, soak_idle_s=180.0, soak_sweep_s=15.0)
SMOKE = Scale(kill_conversations=12, kill_turns=0, kills=1, kill_rate=40.0, rebalances=1,
              outage_conversations=6, outage_s=3.0, outage_rate=15.0,
              broker_conversations=6, broker_down_s=2.0, broker_rate=20.0,
              fuzz_bad=240, fuzz_conversations=6,
              soak_minutes=0.35, soak_conversations=60, soak_rate=10.0,
              soak_warmup_minutes=0.15, soak_sample_s=3.0, soak_idle_s=15.0, soak_sweep_s=2.0)
