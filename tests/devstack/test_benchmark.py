"""The benchmark's smoke version runs end to end, so the command cannot rot. It checks that
every figure is measured and sane, not that goals are met: timing goals belong to the full
benchmark on a quiet machine (reports/benchmark.md)."""

import json
import math
import subprocess
import sys

import pytest

from devstack.benchmark import GOALS, interleaved
from devstack.replay import Outgoing
from training.paths import ROOT

pytestmark = pytest.mark.integration


def test_interleaving_keeps_each_conversation_in_order():
    a = [Outgoing(b"a", bytes([i]), 0) for i in range(3)]
    b = [Outgoing(b"b", bytes([i]), 0) for i in range(1)]
    assert [(m.key, m.value) for m in interleaved([a, b])] == [
        (b"a", b"\x00"), (b"b", b"\x00"), (b"a", b"\x01"), (b"a", b"\x02")]


def test_smoke_benchmark_measures_every_figure(tmp_path):
    stem = tmp_path / "bench"
    subprocess.run([sys.executable, "-m", "devstack", "benchmark", "--smoke", "--out",
                    str(stem)], check=True, cwd=ROOT, capture_output=True, timeout=900)
    r = json.loads(stem.with_suffix(".json").read_text())
    s = r["summary"]
    assert set(GOALS) <= set(s)
    assert all(math.isfinite(v) and v > 0 for v in s.values())
    assert s["naive_ratio"] > 5 * s["incremental_ratio"]  # re-encoding history grows with t
    assert r["worker_batched"]["turns"] == r["turns"]
    assert r["latency"]["turns"] > 0 and s["latency_p99_ms"] >= s["latency_p50_ms"]
    assert "| incremental_ratio |" in stem.with_suffix(".md").read_text()
