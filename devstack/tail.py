"""Show enriched turns, alerts and dead letters as they arrive, readable in a terminal."""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer

ARROWS = {"improving": "↗", "stable": "→", "worsening": "↘"}
COLORS = {"negative": "31", "neutral": "37", "positive": "32"}


def _c(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def bar(score: float, width: int = 10) -> str:
    """A centred bar: left of | is negative, right positive."""
    n = round(abs(score) * width / 2)
    half = width // 2
    return (" " * (half - n) + "█" * n + "|" + " " * half) if score < 0 else (
        " " * half + "|" + "█" * n + " " * (half - n))


def format_event(topic: str, doc: dict, topics: dict[str, str], color: bool = False) -> str:
    if topic == topics["alerts"]:
        why = " · ".join(x for x in (doc.get("emotion"), doc.get("aspect")) if x)
        return _c(f"  !! ALERT  {doc['conversation_id']:<22} #{doc['seq']:<3} "
                  f"{','.join(doc['rules'])}  score {doc['score']:+.2f}  "
                  f"satisfaction {doc.get('satisfaction', '-')}  sentiment "
                  f"{doc.get('sentiment', '-')}  streak {doc['negative_streak']}"
                  + (f"  ({why})" if why else ""), "41;97;1", color)
    if topic == topics["dlq"]:
        return _c(f"  xx DLQ    {doc.get('conversation_id') or '-':<22} {doc['reason']}: "
                  f"{doc['detail'][:60]}", "33", color)
    run = doc["running_score"]
    text = (doc.get("text") or "").replace("\n", " ")
    text = text[:56] + "…" if len(text) > 57 else text
    words = ",".join(doc.get("topic_words", [])[:3])
    sat = doc.get("satisfaction", {}).get("label", "-")
    sent = doc.get("sentiment", {}).get("label", "-")
    return (f"{doc['conversation_id']:<22} #{doc['seq']:<3} {doc['role']:<8} "
            + _c(f"sat {sat:<8}", COLORS.get(sat, "37"), color)
            + _c(f" sent {sent:<8}", COLORS.get(sent, "37"), color)
            + f" {doc['score']:+.2f} [{bar(doc['score'])}] run "
            + (f"{run:+.2f}" if run is not None else "  -  ")
            + f" {ARROWS[doc['trend_label']]}  {text}" + (f"  [{words}]" if words else "")
            + explanation(doc))


SIGN = {"positive": "+", "negative": "-", "neutral": "~"}


def explanation(doc: dict) -> str:
    """Emotions above threshold and aspect terms with their polarity, when the event has them."""
    emotions = (doc.get("emotions") or {}).get("labels") or []
    aspects = [f"{a['text']}{SIGN[a['polarity']]}" for a in doc.get("aspects") or []]
    parts = ([f"emotions {','.join(emotions[:2])}"] if emotions else []) + (
        [f"aspects {','.join(aspects[:3])}"] if aspects else [])
    return f"  {{{'; '.join(parts)}}}" if parts else ""


async def tail(bootstrap: str, topics: dict[str, str], seconds: float | None = None,
               from_beginning: bool = False, until: int | None = None,
               out=sys.stdout) -> dict[str, int]:
    """Print events until `seconds` pass or `until` enriched turns were seen; return counts."""
    consumer = AIOKafkaConsumer(topics["enriched"], topics["alerts"], topics["dlq"],
                                bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=50,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    color = out.isatty()
    counts = {"enriched": 0, "alerts": 0, "dlq": 0}
    names = {v: k for k, v in topics.items()}
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while deadline is None or time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    counts[names[tp.topic]] += 1
                    print(format_event(tp.topic, orjson.loads(m.value), topics, color),
                          file=out, flush=True)
            if until is not None and counts["enriched"] >= until:
                break
    finally:
        await consumer.stop()
    return counts


def run_tail(bootstrap: str, topics: dict[str, str], seconds: float | None,
             from_beginning: bool) -> None:
    asyncio.run(tail(bootstrap, topics, seconds, from_beginning))
