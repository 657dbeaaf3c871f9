"""Running the parts in order on one stack, each merged into the report as it finishes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

from devstack.reliability.broker import broker_restart
from devstack.reliability.common import log
from devstack.reliability.fuzz import fuzz_part
from devstack.reliability.kill9 import kill9
from devstack.reliability.rebalance import rebalance
from devstack.reliability.report import SECTION, code_version, machine, merge
from devstack.reliability.scale import PARTS, Scale
from devstack.reliability.soak import soak
from devstack.reliability.triton import triton_outage
from devstack.stack import start_stack
from worker.records import now_iso
from worker.settings import Settings


def run(parts: Iterable[str], scale: Scale, command: str, out: Path,
        soak_minutes: float | None = None, soak_conversations: int | None = None) -> dict:
    """Run the parts in order (kill9, the longest replay, last) on one Tansu + Triton stack;
    merge them into `out`.json/.md as each finishes."""
    parts = [p for p in PARTS if p in set(parts)]
    stack = start_stack(Settings(broker_profile="tansu"), workers=0)
    results: dict = {}
    try:
        for part in parts:
            t0 = time.monotonic()
            when, code = now_iso(), code_version()
            if part == "triton":
                res = triton_outage(stack, scale)
            elif part == "broker":
                res = broker_restart(stack.triton, scale.broker_conversations,
                                     scale.broker_down_s, scale.broker_rate)
            elif part == "fuzz":
                res = fuzz_part(stack, scale)
            elif part == "soak":
                res = soak(stack, scale, soak_minutes, soak_conversations)
            elif part == "rebalance":
                res = rebalance(stack, scale)
            else:
                res = kill9(stack, scale)
            res = {"command": command, "when": when, "code": code,
                   "seconds": round(time.monotonic() - t0, 1), **res}
            results[SECTION[part]] = res
            shown = {k: v for k, v in res.items() if k not in ("samples", "kills", "cycles")}
            log(f"{part}: " + json.dumps(shown))
            merge(out.with_suffix(".json"), {SECTION[part]: res, "machine": machine()})
    finally:
        stack.stop()
    return json.loads(out.with_suffix(".json").read_text())
