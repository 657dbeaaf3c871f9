"""Local stack commands: `python -m devstack {demo,up,replay,tail,benchmark,reliability}`.

demo    start Tansu + tritonserver + the worker on 127.0.0.1, replay dialogues, show the output
up      start the stack and keep it running (prints the addresses) until Ctrl-C
replay  publish dialogues into a running broker
tail    show enriched turns, alerts and dead letters of a running broker
benchmark    every performance scenario side by side (reports/benchmark.md)
reliability  kill -9, rebalance, Triton outage, broker restart, fuzz and soak on the real processes
             (reports/reliability.md)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

from devstack.replay import (
    Outgoing,
    conversation_messages,
    pick_dialogues,
    replay,
    service_dialogues,
)
from devstack.tail import tail
from worker.settings import Settings


def topics_of(settings: Settings) -> dict[str, str]:
    return {"enriched": settings.topic_enriched, "alerts": settings.topic_alerts,
            "dlq": settings.topic_dlq}


def say(msg: str) -> None:
    print(f"\x1b[1m== {msg}\x1b[0m" if sys.stdout.isatty() else f"== {msg}", flush=True)


async def _demo_run(bootstrap: str, settings: Settings, conversations: int, speed: float) -> dict:
    dialogues = pick_dialogues(conversations) + service_dialogues()
    messages = [conversation_messages(d, prefix="demo-") for d in dialogues]
    turns = sum(len(d.utterances) for d in dialogues)
    say(f"replaying {len(dialogues)} conversations ({turns} turns: USS + MELD test dialogues and "
        f"5 service chats) at {speed:g}x, interleaved; one malformed message goes in too")
    t0 = time.monotonic()
    tail_task = asyncio.create_task(
        tail(bootstrap, topics_of(settings), seconds=300, from_beginning=True, until=turns))
    await asyncio.sleep(0.5)
    bad = [[Outgoing(b"demo-broken", b'{"conversation_id": "demo-broken", "seq": ', 0.0)]]
    sent = await replay(bootstrap, settings.topic_turns, messages + bad, speed=speed)
    counts = await tail_task
    return {"conversations": len(dialogues), "messages_sent": sent, "turns": turns,
            **counts, "seconds": round(time.monotonic() - t0, 1)}


def demo(args: argparse.Namespace) -> None:
    from devstack.stack import start_stack

    settings = Settings(broker_profile="tansu")
    say("starting Tansu (Kafka protocol), tritonserver and the worker on 127.0.0.1 ...")
    t0 = time.monotonic()
    stack = start_stack(settings)
    try:
        url = stack.start_dashboard(args.dashboard_port)
        say(f"stack ready in {time.monotonic() - t0:.1f}s: broker {stack.bootstrap}, "
            f"triton {stack.triton.grpc_url}; logs in .devstack/logs/")
        say(f"live dashboard: {url}  (open it in a browser now)")
        summary = asyncio.run(_demo_run(stack.bootstrap, settings, args.conversations,
                                        args.speed))
        say("summary: " + json.dumps(summary))
        if summary["enriched"] < summary["turns"]:
            sys.exit(f"only {summary['enriched']} of {summary['turns']} turns were enriched")
        if sys.stdin.isatty():
            say(f"the dashboard stays up at {url}; press Enter to stop the stack")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
    finally:
        say("stopping the stack")
        stack.stop()


def benchmark(args: argparse.Namespace) -> None:
    from pathlib import Path

    from devstack import benchmark as bench
    from devstack.stack import start_stack

    stem = Path(args.out or ("reports/benchmark" if not args.smoke
                             else ".devstack/benchmark-smoke"))
    command = "python -m devstack benchmark" + (" --smoke" if args.smoke else "") + (
        f" --triton-url {args.triton_url}" if args.triton_url else "")
    stack = start_stack(Settings(broker_profile="tansu"), workers=0)
    try:
        result = bench.run(stack, bench.SMOKE if args.smoke else bench.FULL, args.triton_url,
                           profile=not args.no_profile)
    finally:
        stack.stop()
    result["command"] = command
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    report = bench.markdown(result, command)
    stem.with_suffix(".md").write_text(report)
    print(report)


def reliability(args: argparse.Namespace) -> None:
    from pathlib import Path

    from devstack import reliability as rel

    parts = rel.PARTS if not args.only else [p.strip() for p in args.only.split(",")]
    unknown = set(parts) - set(rel.PARTS)
    if unknown:
        sys.exit(f"unknown part(s) {sorted(unknown)}; choose from {', '.join(rel.PARTS)}")
    stem = Path(args.out or ("reports/reliability" if not args.smoke
                             else ".devstack/reliability-smoke"))
    command = " ".join(["python -m devstack reliability", *sys.argv[2:]])
    if not args.only and stem.with_suffix(".json").exists():
        stem.with_suffix(".json").unlink()  # a full run replaces the report; --only merges
    result = rel.run(parts, rel.SMOKE if args.smoke else rel.FULL, command, stem,
                     soak_minutes=args.soak_minutes, soak_conversations=args.soak_conversations)
    print(stem.with_suffix(".md").read_text())
    say("summary: " + json.dumps(rel.summary(result)))


def up(args: argparse.Namespace) -> None:
    from devstack.stack import start_stack

    stack = start_stack(Settings(broker_profile="tansu"), workers=args.workers)
    url = stack.start_dashboard(args.dashboard_port)
    print(json.dumps({"bootstrap": stack.bootstrap, "triton_grpc": stack.triton.grpc_url,
                      "dashboard": url, "logs": ".devstack/logs"}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stack.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m devstack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="the end-to-end demo on the embedded local default")
    d.add_argument("--conversations", type=int, default=12)
    d.add_argument("--speed", type=float, default=10.0, help="x real time; 0 = no pauses")
    d.add_argument("--dashboard-port", type=int, default=None,
                   help="default 8090, or a free port when 8090 is taken")
    u = sub.add_parser("up", help="start the stack and keep it running")
    u.add_argument("--workers", type=int, default=1)
    u.add_argument("--dashboard-port", type=int, default=None,
                   help="default 8090, or a free port when 8090 is taken")
    from devstack import transcripts as tr

    r = sub.add_parser("replay", help="publish dialogues, or your own transcripts (--file), "
                                      "into a running broker")
    r.add_argument("--bootstrap", required=True)
    r.add_argument("--conversations", type=int, default=50)
    r.add_argument("--speed", type=float, default=10.0, help="x real time; 0 = no pauses")
    r.add_argument("--prefix", default=None, help="prepended to conversation ids (default "
                   "'replay-' for dialogues, none for --file)")
    r.add_argument("--file", default=None, help="JSON lines (the turn format) or CSV to replay "
                   "instead of dataset dialogues; checked whole before anything is sent")
    r.add_argument("--format", choices=("jsonl", "csv"), default=None,
                   help="default from the suffix (.jsonl/.ndjson/.json, .csv/.tsv)")
    r.add_argument("--map", type=tr.column_map, default=None, metavar="FIELD=COLUMN,...",
                   help="CSV columns of the turn fields, e.g. conversation_id=chat_id,"
                   "role=speaker,text=message,ts=time (default: columns named like the fields)")
    r.add_argument("--roles", type=tr.role_map, default=None, metavar="VALUE=ROLE,...",
                   help="source role values to customer/agent, e.g. user=customer,bot=agent")
    r.add_argument("--max-pause", type=float, default=10.0, metavar="SECONDS",
                   help="--file with timestamps: longest pause, after --speed (inf: none)")
    r.add_argument("--conversation-end", action="store_true",
                   help="--file: send an end event after each conversation's last turn "
                   "(unless the file has one)")
    r.add_argument("--keep-ts", action="store_true",
                   help="--file: send the file's ts, not the send time")
    b = sub.add_parser("benchmark", help="every performance scenario side by side")
    b.add_argument("--smoke", action="store_true", help="seconds, not minutes (CI)")
    b.add_argument("--triton-url", default=None,
                   help="an external (e.g. GPU) Triton gRPC address instead of the local one")
    b.add_argument("--out", default=None, help="report path stem (default reports/benchmark)")
    b.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    rl = sub.add_parser("reliability", help="faults, fuzz and soak on the real processes")
    rl.add_argument("--smoke", action="store_true", help="tiny versions of every part (CI)")
    rl.add_argument("--only", default=None,
                    help="comma-separated parts (triton,broker,fuzz,soak,rebalance,kill9), "
                         "merged into an existing report")
    rl.add_argument("--out", default=None, help="report path stem (default reports/reliability)")
    rl.add_argument("--soak-minutes", type=float, default=None)
    rl.add_argument("--soak-conversations", type=int, default=None)
    t = sub.add_parser("tail", help="show enriched turns, alerts and dead letters")
    t.add_argument("--bootstrap", required=True)
    t.add_argument("--seconds", type=float, default=None)
    t.add_argument("--from-beginning", action="store_true")
    args = p.parse_args()
    settings = Settings()
    if args.cmd == "demo":
        demo(args)
    elif args.cmd == "up":
        up(args)
    elif args.cmd == "benchmark":
        benchmark(args)
    elif args.cmd == "reliability":
        reliability(args)
    elif args.cmd == "replay" and args.file:
        tr.cli(args, settings.topic_turns, settings.max_message_bytes)
    elif args.cmd == "replay":
        msgs = [conversation_messages(dlg, "replay-" if args.prefix is None else args.prefix)
                for dlg in pick_dialogues(args.conversations)]
        print(asyncio.run(replay(args.bootstrap, settings.topic_turns, msgs, args.speed)))
    elif args.cmd == "tail":
        asyncio.run(tail(args.bootstrap, topics_of(settings), args.seconds, args.from_beginning))


if __name__ == "__main__":
    main()
