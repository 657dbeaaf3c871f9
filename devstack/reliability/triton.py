"""The Triton outage part: Triton is stopped for `outage_s` while dialogues stream in. The worker
must report not-ready, stop taking input (it holds its batch), recover by itself when Triton is
back, and lose or change nothing (scores equal an uninterrupted run of the same input)."""

from __future__ import annotations

import time

from devstack.benchmark import fresh_topics
from devstack.reliability.common import (
    expected_ids,
    http_get,
    log,
    metric,
    pick,
    run_name,
    send_in_thread,
    stop_worker,
    streams,
    worker_metrics,
)
from devstack.reliability.outputs import Collector, compare, reference_run
from devstack.reliability.scale import Scale
from devstack.stack import Stack
from devstack.triton import Triton


def triton_outage(stack: Stack, scale: Scale, seed: int = 21) -> dict:
    env = fresh_topics(stack, "triton")
    name = run_name("triton")
    worker = stack.start_worker(name, **env)
    collector = Collector(stack.bootstrap, env)
    try:
        dialogues = pick(scale.outage_conversations, 0, seed)
        log(f"triton: reference run, {len(dialogues)} conversations")
        reference_run(stack, collector, env, dialogues, "ref-")
        port = worker.web_port
        old = stack.triton
        stream = streams(dialogues, "out-")
        progress = [0]
        log(f"triton: stopping Triton for {scale.outage_s:g}s while {len(stream)} messages "
            f"stream in at {scale.outage_rate:g}/s")
        old.stop()  # graceful: returns once tritonserver has exited (~3.5 s)
        t_down = time.monotonic()
        sender = send_in_thread(stack.bootstrap, env["CHAT_TOPIC_TURNS"], stream,
                                scale.outage_rate, progress)
        not_ready_after = taken_at_not_ready = None
        sent_at_not_ready = 0
        while time.monotonic() - t_down < scale.outage_s:
            if not_ready_after is None and http_get(port, "/ready/")[0] == 503:
                not_ready_after = time.monotonic() - t_down
                taken_at_not_ready = metric(worker_metrics(worker), "chat_messages_in_total")
                sent_at_not_ready = progress[0]
            time.sleep(0.3)
        text = worker_metrics(worker)
        taken_at_end = metric(text, "chat_messages_in_total")
        sent_at_end = progress[0]
        ready_during = http_get(port, "/ready/")[0]
        down_s = time.monotonic() - t_down
        stack.triton = Triton(grpc_port=old.grpc_port, http_port=old.http_port).start()
        t_up = time.monotonic()
        recovered_after = None
        while time.monotonic() - t_up < 120:
            if http_get(port, "/ready/")[0] == 200:
                recovered_after = time.monotonic() - t_up
                break
            time.sleep(0.3)
        sender.join(600)
        missing = collector.wait_ids(set(expected_ids(dialogues, "out-")), 600)
        result = compare(dialogues, collector, "ref-", "out-")
        text = worker_metrics(worker)
        result.update({
            "outage_s": round(down_s, 1),
            "not_ready_seen": not_ready_after is not None,
            "not_ready_after_s": None if not_ready_after is None else round(not_ready_after, 1),
            "ready_status_at_end_of_outage": ready_during,
            # messages the worker took from the topic between reporting not-ready and Triton's
            # return, against those sent meanwhile: it holds one batch and takes no more
            "messages_sent_while_not_ready": None if not_ready_after is None
            else sent_at_end - sent_at_not_ready,
            "messages_taken_while_not_ready": None if taken_at_not_ready is None
            else int(taken_at_end - taken_at_not_ready),
            "recovered_ready_after_s": None if recovered_after is None
            else round(recovered_after, 1),
            "triton_retries": {k: metric(text, "chat_triton_retries_total", kind=k)
                               for k in ("transient", "permanent")},
            "inference_failed_dlq": metric(text, "chat_dead_letters_total",
                                           reason="inference_failed") or 0,
            "worker_exits": 0 if worker.running else 1,
            "still_missing": len(missing),
        })
        return result
    finally:
        collector.close()
        stop_worker(stack, worker)
