"""The kill -9 part: the worker is killed with SIGKILL `kills` times at random points while
>= 10k turns of >= 200 interleaved conversations stream in (FULL), and restarted each time;
compared with an uninterrupted run of the same input: turns missing, score mismatches, alerts
missing, duplicates with different content."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time

from devstack.benchmark import fresh_topics
from devstack.procs import ROOT
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

SESSION_TIMEOUT_S = 6  # broker_session_timeout of the local (Tansu) profile, worker/app.py


def kill9(stack: Stack, scale: Scale, seed: int = 5) -> dict:
    env = fresh_topics(stack, "kill9")
    name = run_name("kill9")
    worker = stack.start_worker(name, **env)
    collector = Collector(stack.bootstrap, env)
    rng = random.Random(seed)
    try:
        dialogues = pick(scale.kill_conversations, scale.kill_turns, seed)
        turns = sum(len(d.utterances) for d in dialogues)
        log(f"kill9: reference run, {len(dialogues)} conversations, {turns} turns")
        t0 = time.monotonic()
        ref_missing = reference_run(stack, collector, env, dialogues, "ref-")
        log(f"kill9: reference done in {time.monotonic() - t0:.0f}s ({ref_missing} missing)")
        stream = streams(dialogues, "k9-")
        progress = [0]
        sender = send_in_thread(stack.bootstrap, env["CHAT_TOPIC_TURNS"], stream,
                                scale.kill_rate, progress)
        kills: list[dict] = []
        want = set(expected_ids(dialogues, "k9-"))
        for i in range(scale.kills):
            time.sleep(rng.uniform(3.0, 12.0))
            events = len(collector.ids() & want)
            worker.kill(signal.SIGKILL)
            worker.proc.wait(10)
            stack.workers.remove(worker)
            kills.append({"at_s": round(time.monotonic() - t0, 1), "sent": progress[0],
                          "events_so_far": events,
                          "input_all_sent": not sender.is_alive()})
            log(f"kill9: kill {i + 1}/{scale.kills} after {progress[0]} of {len(stream)} "
                f"messages sent, {events} events")
            time.sleep(SESSION_TIMEOUT_S + 1)  # the dead member leaves the group first
            worker = stack.start_worker(name, **env)
        sender.join(900)
        missing = collector.wait_ids(want, timeout=600, quiet_s=90)
        result = compare(dialogues, collector, "ref-", "k9-")
        result.update({
            "kill9_restarts": len(kills), "conversations": len(dialogues),
            "messages": len(stream), "rate_messages_per_s": scale.kill_rate, "kills": kills,
            "kills_while_sending": sum(1 for k in kills if not k["input_all_sent"]),
            "reference_missing_at_start": ref_missing, "still_missing": len(missing),
            "worker_exits": 0 if worker.running else 1,
            "faust_fixes": faust_fixes_commit(),
        })
        return result
    finally:
        collector.close()
        stop_worker(stack, worker)


def faust_fixes_commit() -> str | None:
    """The last commit touching worker/faust_fixes.py (the mid-stream reposition fix), if any."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "log", "-1", "--format=%h %s", "--",
                              "worker/faust_fixes.py"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return out or None
    return None
