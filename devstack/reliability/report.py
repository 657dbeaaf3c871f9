"""The report: parts run by separate commands merged into one JSON file, its flat summary and
its Markdown, with the code version and machine that produced them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
from pathlib import Path

from devstack.procs import ROOT

SECTION = {"triton": "triton_outage", "broker": "broker_restart", "fuzz": "fuzz",
           "soak": "soak", "rebalance": "rebalance", "kill9": "kill9"}


def summary(r: dict) -> dict:
    """The flat figures the issue asks for, from whichever parts are in the report."""
    k, f, s = r.get("kill9") or {}, r.get("fuzz") or {}, r.get("soak") or {}
    b = r.get("rebalance") or {}
    parts = [r.get(name) or {} for name in SECTION.values()]
    return {
        "kill9_restarts": k.get("kill9_restarts"), "turns_in": k.get("turns_in"),
        "turns_missing": k.get("turns_missing"), "score_mismatches": k.get("score_mismatches"),
        "alerts_missing": k.get("alerts_missing"),
        "duplicates_differing": k.get("duplicates_differing"),
        "fuzz_inputs": f.get("fuzz_inputs"),
        "crashes": sum(p.get("crashes", p.get("worker_exits", 0)) or 0 for p in parts)
        if any(parts) else None,
        "bad_not_in_dlq": f.get("bad_not_in_dlq"),
        "valid_not_enriched": f.get("valid_not_enriched"),
        "soak_minutes": s.get("soak_minutes"), "soak_conversations": s.get("soak_conversations"),
        "rss_growth_pct": s.get("rss_growth_pct"),
        "rebalances": b.get("rebalances"), "rebalance_turns_missing": b.get("turns_missing"),
        "rebalance_score_mismatches": b.get("score_mismatches"),
    }


def merge(path: Path, new: dict) -> dict:
    """Read-modify-write under a lock: parts run by separate commands end up in one report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.exists() else {}
        merged = {**{k: v for k, v in old.items() if k in SECTION.values()}, **new}
        merged = {**summary(merged), **{k: merged[k] for k in SECTION.values()
                                        if k in merged}}
        merged["machine"] = new.get("machine") or old.get("machine")
        path.write_text(json.dumps(merged, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown(merged))
    return merged


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown(r: dict) -> str:
    m = r.get("machine") or {}
    lines = ["# Reliability", "",
             f"Real processes on one machine ({m.get('cpu_count')} CPU cores, "
             f"{m.get('processor')}, {m.get('platform')}): the worker (`python -m worker`), "
             "tritonserver, and Tansu (or noida-db for the broker restart). Each part ran on its "
             "own topics and consumer group; the command and time of each are given with it.",
             "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary(r).items()]
    notes = {
        "kill9": "kill -9 of the worker at random points during a live replay of interleaved "
                 "conversations, restarted each time (after the group's session timeout); "
                 "compared by deterministic event id and score with an uninterrupted run of "
                 "the same input on the same worker setup.",
        "triton_outage": "tritonserver stopped mid-stream, restarted on the same ports.",
        "broker_restart": "noida-db 0.2.3 broker stopped with SIGTERM mid-stream, started "
                          "again on the same data directory and port; the worker was not "
                          "restarted.",
        "fuzz": "generated bad messages (devstack/fuzz.py) between valid turns, then protocol "
                "faults (a producer duplicate, a late old turn, a turn after the end event) on "
                "every valid conversation; each bad message traced to its DLQ entry by a digest "
                "of its original bytes.",
        "rebalance": "a second worker joins the group mid-stream (partitions and their state "
                     "move to it) and later leaves with SIGTERM (they move back), repeatedly; "
                     "compared with an uninterrupted run of the same input like kill9.",
        "soak": "steady input at a modest rate; worker RSS from /proc, table size from the "
                "chat_active_conversations gauge; growth compares the first sample after the "
                "warm-up with the last.",
    }
    for key in SECTION.values():
        part = r.get(key)
        if not part:
            continue
        lines += ["", f"## {key}", "", f"Command: `{part.get('command')}` "
                  f"({part.get('when')}, {part.get('seconds')} s, code {part.get('code')}). "
                  f"{notes[key]}", ""]
        for name, value in part.items():
            if name in ("command", "when", "code", "seconds", "samples", "kills", "cycles"):
                continue
            lines.append(f"- {name}: {_fmt(value) if not isinstance(value, dict | list) else json.dumps(value)}")  # noqa: E501
        if key == "kill9" and part.get("kills"):
            lines += ["", "| kill | at s | messages sent | events so far |", "|---|---|---|---|"]
            lines += [f"| {i} | {k['at_s']} | {k['sent']:,} | {k['events_so_far']:,} |"
                      for i, k in enumerate(part["kills"], 1)]
        if key == "rebalance" and part.get("cycles"):
            lines += ["", "| cycle | joined at s | second ready after s | messages sent at leave |",
                      "|---|---|---|---|"]
            lines += [f"| {i} | {c['joined_at_s']} | {c['second_ready_after_s']} | "
                      f"{c['sent_at_join_leave']:,} |" for i, c in enumerate(part["cycles"], 1)]
        if key == "soak" and part.get("samples"):
            lines += ["", "| minute | worker RSS MB | table (conversations) | messages in | "
                      "ended | expired | lag |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {s['minute']:.1f} | {s['rss_mb']:.1f} | "
                      f"{_fmt(s['active_conversations'])} | {_fmt(s['messages_in'])} | "
                      f"{_fmt(s['conversations_ended'])} | {_fmt(s['states_expired'])} | "
                      f"{_fmt(s['consumer_lag'])} |" for s in part["samples"]]
    return "\n".join(lines) + "\n"


def code_version() -> str | None:
    """The commit the run used, `+modified` if tracked files differed from it."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=ROOT, text=True,
                               capture_output=True, timeout=10).stdout.strip()
        return (head + ("+modified" if dirty else "")) or None
    return None
