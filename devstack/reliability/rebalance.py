"""The rebalance part: a second worker joins mid-stream and later leaves (SIGTERM), `rebalances`
times, on the kill9 input: partitions and their state move and come back; compared like kill9."""

from __future__ import annotations

import random
import time

from devstack.benchmark import fresh_topics
from devstack.procs import Server
from devstack.reliability.common import (
    expected_ids,
    log,
    pick,
    run_name,
    send_in_thread,
    stop_worker,
    streams,
)
from devstack.reliability.outputs import Collector, compare, reference_run
from devstack.reliability.scale import Scale
from devstack.stack import Stack


def rebalance(stack: Stack, scale: Scale, seed: int = 13) -> dict:
    """A second worker joins the group mid-stream and later leaves it (SIGTERM), `rebalances`
    times, on the kill9 input scale: each time partitions and their state move to the new
    member and back. Compared with an uninterrupted run like kill9."""
    env = fresh_topics(stack, "rebalance")
    name = run_name("rebalance")
    worker = stack.start_worker(name, **env)
    collector = Collector(stack.bootstrap, env)
    rng = random.Random(seed)
    second: Server | None = None
    try:
        dialogues = pick(scale.kill_conversations, scale.kill_turns, seed)
        turns = sum(len(d.utterances) for d in dialogues)
        log(f"rebalance: reference run, {len(dialogues)} conversations, {turns} turns")
        t0 = time.monotonic()
        ref_missing = reference_run(stack, collector, env, dialogues, "ref-")
        stream = streams(dialogues, "rb-")
        progress = [0]
        sender = send_in_thread(stack.bootstrap, env["CHAT_TOPIC_TURNS"], stream,
                                scale.kill_rate, progress)
        cycles: list[dict] = []
        want = set(expected_ids(dialogues, "rb-"))
        for i in range(scale.rebalances):
            time.sleep(rng.uniform(2.0, 8.0))
            joined_at = time.monotonic() - t0
            second = stack.start_worker(f"{name}-2", **env)  # returns once it is ready
            second_ready_s = time.monotonic() - t0 - joined_at
            time.sleep(rng.uniform(2.0, 8.0))
            sent_at_leave = progress[0]
            stop_worker(stack, second)
            second = None
            cycles.append({"joined_at_s": round(joined_at, 1),
                           "second_ready_after_s": round(second_ready_s, 1),
                           "sent_at_join_leave": sent_at_leave,
                           "input_all_sent": not sender.is_alive()})
            log(f"rebalance: join and leave {i + 1}/{scale.rebalances}, "
                f"{sent_at_leave} of {len(stream)} messages sent")
        sender.join(900)
        missing = collector.wait_ids(want, timeout=600, quiet_s=90)
        result = compare(dialogues, collector, "ref-", "rb-")
        result.update({
            "rebalances": len(cycles), "conversations": len(dialogues), "messages": len(stream),
            "rate_messages_per_s": scale.kill_rate, "cycles": cycles,
            "rebalances_while_sending": sum(1 for c in cycles if not c["input_all_sent"]),
            "reference_missing_at_start": ref_missing, "still_missing": len(missing),
            "worker_exits": 0 if worker.running else 1,
        })
        return result
    finally:
        collector.close()
        if second is not None:
            stop_worker(stack, second)
        stop_worker(stack, worker)
