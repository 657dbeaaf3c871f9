"""Faults, bad input and a soak on the real processes: `python -m devstack reliability`.

Writes reports/reliability.json and reports/reliability.md. Every part runs on its own topics and
consumer group with its own worker process (the real `python -m worker`), against the real
tritonserver and a real Kafka-protocol broker. One module a part:

triton     Triton stopped mid-stream; the worker reports not-ready and recovers by itself.
broker     a noida-db broker restarted mid-stream; the worker reconnects by itself.
fuzz       generated bad messages between valid turns; each lands in the DLQ with its reason.
soak       many concurrent conversations for minutes; worker memory and table size sampled.
rebalance  a second worker joins mid-stream and later leaves, `rebalances` times.
kill9      the worker killed with SIGKILL at random points and restarted, `kills` times.

Each faulted run is compared with an uninterrupted run of the same input (outputs.py): turns
missing, score mismatches, alerts missing, duplicates with different content. What they share
is in common.py, the scales in scale.py, the report in report.py, the run in runner.py.

`--only a,b` runs some parts and merges them into an existing report (each part keeps the
command and time that produced it), so a long soak can run beside the other parts.
"""

from devstack.reliability.broker import broker_restart
from devstack.reliability.common import digest, metric
from devstack.reliability.report import markdown, merge, summary
from devstack.reliability.runner import run
from devstack.reliability.scale import FULL, PARTS, SMOKE, Scale
from devstack.reliability.soak import SoakSchedule, growth_pct

__all__ = ["FULL", "PARTS", "SMOKE", "Scale", "SoakSchedule", "broker_restart", "digest",
           "growth_pct", "markdown", "merge", "metric", "run", "summary"]
