"""A user's own transcripts as live turns (`python -m devstack replay --file PATH`).

Two formats:

- JSON lines (.jsonl, .ndjson, .json): one input message per line, exactly as the worker reads
  it from `chat.turns` (a turn, or a `{"type": "conversation_end", ...}` event). Every line is
  checked by the worker's own parser and JSON Schema (worker/ingest.py), so a file that loads
  here is a file the worker accepts.
- CSV (.csv, .tsv): one turn per row, columns named like the turn fields or mapped with
  `--map field=column`. Only conversation_id, role and text are needed; a missing seq is the
  turn's position in its conversation (file order), a missing turn_id is
  `<conversation_id>:<seq>`. Timestamps may be RFC 3339, ISO 8601 without a zone (UTC) or
  Unix seconds.

The whole file is read and checked before anything is sent; every problem names its line.
Timing follows the file's `ts` (gaps divided by the speed, each pause capped) or, without
timestamps, the typing model of devstack/replay.py. Message key = conversation id."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import math
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from devstack.replay import END_DELAY_S, Outgoing, replay, typing_delay
from worker.ingest import parse
from worker.records import ConversationEnd, Rejection, Turn, now_iso
from worker.schemas import validator

FIELDS = ("conversation_id", "turn_id", "seq", "role", "text", "ts", "channel", "tenant")
CSV_REQUIRED = ("conversation_id", "role", "text")
ROLES = ("customer", "agent")
MAX_SHOWN = 10  # problems listed in one error message
END_REASON = "transcript_end"  # reason of the end events --conversation-end adds
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv",
            ".tsv": "csv"}
RFC3339 = re.compile(validator("turn").schema["properties"]["ts"]["pattern"])


class TranscriptError(ValueError):
    """The file cannot be replayed; the message lists the problems by line."""


# --- command-line values --------------------------------------------------------------------

def _pairs(text: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise argparse.ArgumentTypeError(f"{part!r} is not {what}")
        out[name.strip()] = value.strip()
    return out


def column_map(text: str) -> dict[str, str]:
    """`--map conversation_id=chat_id,role=speaker` -> {turn field: CSV column}."""
    mapping = _pairs(text, "FIELD=COLUMN")
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(FIELDS)}")
    return mapping


def role_map(text: str) -> dict[str, str]:
    """`--roles user=customer,bot=agent` -> {source value (case-folded): customer|agent}."""
    mapping = {k.casefold(): v for k, v in _pairs(text, "VALUE=customer|agent").items()}
    bad = sorted({v for v in mapping.values() if v not in ROLES})
    if bad:
        raise argparse.ArgumentTypeError(
            f"roles map to customer or agent, not {', '.join(map(repr, bad))}")
    return mapping


# --- loading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One input message of the file, validated."""

    line: int
    doc: dict
    at: float | None  # its `ts` in Unix seconds; None when the file has no timestamps

    @property
    def is_end(self) -> bool:
        return self.doc.get("type") == "conversation_end"


@dataclass
class Transcript:
    path: Path
    format: str
    timed: bool
    conversations: dict[str, list[Item]] = field(default_factory=dict)  # in order of first line

    @property
    def turns(self) -> int:
        return sum(not i.is_end for items in self.conversations.values() for i in items)

    @property
    def ends(self) -> int:
        return sum(i.is_end for items in self.conversations.values() for i in items)


class Problems:
    """Everything wrong with the file; the first MAX_SHOWN, in line order, make the message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.found: list[tuple[int, str]] = []

    @property
    def count(self) -> int:
        return len(self.found)

    def add(self, line: int, message: str) -> None:
        self.found.append((line, message))

    def check(self) -> None:
        if not self.found:
            return
        shown = sorted(self.found, key=lambda p: p[0])[:MAX_SHOWN]  # stable: per line, found
        more = self.count - len(shown)
        raise TranscriptError(
            f"{self.path}: {self.count} problem{'s' if self.count > 1 else ''}, nothing was "
            f"sent:\n  " + "\n  ".join(f"line {n}: {m}" for n, m in shown)
            + (f"\n  ... and {more} more" if more else ""))


def _describe(rej: Rejection, doc: dict | None, roles: dict[str, str] | None) -> str:
    """The worker's rejection in words: its dead-letter reason, then the detail."""
    detail = rej.detail.removeprefix("(root): ")
    if rej.reason == "invalid_json":  # orjson counts lines within the one line
        detail = re.sub(r": line 1 column (\d+) \(char \d+\)$", r" (column \1)", detail)
    if rej.reason == "unknown_role":
        hint = "" if roles else "; map other values with --roles VALUE=customer,VALUE=agent"
        return f"unknown role: {detail}{hint}"
    if rej.reason == "invalid_value" and detail.startswith("ts:") and doc is not None:
        return (f"bad timestamp {doc.get('ts')!r}: RFC 3339 expected, e.g. "
                f"2024-03-04T09:15:02Z")
    return f"{rej.reason.replace('_', ' ')}: {detail}"


def _instant(ts: str) -> float:
    """Unix seconds of an RFC 3339 / ISO 8601 time (no zone = UTC); ValueError if not one."""
    dt = datetime.fromisoformat(ts)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _csv_ts(cell: str) -> tuple[str, float]:
    """A CSV time cell -> (RFC 3339 string for the message, Unix seconds)."""
    try:
        at = float(cell)
    except ValueError:
        at = _instant(cell)  # raises ValueError
        if RFC3339.fullmatch(cell):
            return cell, at
    if not math.isfinite(at):
        raise ValueError(cell)
    iso = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return iso.replace("+00:00", "Z"), at


def _validated(doc: dict, line: int, problems: Problems, roles: dict[str, str] | None,
               max_bytes: int) -> Turn | ConversationEnd | None:
    """The worker's own check of one message."""
    item = parse(orjson.dumps(doc), None, max_bytes)
    if isinstance(item, Rejection):
        problems.add(line, _describe(item, doc, roles))
        return None
    return item


def _jsonl(data: bytes, problems: Problems, roles: dict[str, str] | None, prefix: str,
           max_bytes: int) -> list[Item]:
    items = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.removesuffix(b"\r")
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):  # the worker's words for what is wrong
            rej = parse(raw, None, max_bytes)
            problems.add(n, _describe(rej if isinstance(rej, Rejection) else
                                      Rejection("not_an_object", type(doc).__name__), None,
                                      roles))
            continue
        if roles and isinstance(doc.get("role"), str):
            doc["role"] = roles.get(doc["role"].strip().casefold(), doc["role"])
        if prefix and isinstance(doc.get("conversation_id"), str):
            doc["conversation_id"] = prefix + doc["conversation_id"]
        item = _validated(doc, n, problems, roles, max_bytes)
        if item is None:
            continue
        try:
            at = _instant(item.ts)
        except ValueError as exc:
            problems.add(n, f"bad timestamp {item.ts!r}: {exc}")
            continue
        items.append(Item(n, doc, at))
    return items


def _csv(data: bytes, problems: Problems, roles: dict[str, str] | None, prefix: str,
         max_bytes: int, mapping: dict[str, str], delimiter: str) -> tuple[list[Item], bool]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.add(data[:exc.start].count(b"\n") + 1, f"not UTF-8 text: {exc}")
        return [], False
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""),
                        delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], False
    except csv.Error as exc:
        problems.add(1, f"not CSV: {exc}")
        return [], False
    columns = {f: f for f in FIELDS if f in header}
    for f, col in mapping.items():
        if col in header:
            columns[f] = col
        else:
            columns.pop(f, None)
            problems.add(1, f"no column {col!r} (--map {f}={col}); the header has "
                            f"{', '.join(header)}")
    for f in CSV_REQUIRED:
        if f not in columns and f not in mapping:
            problems.add(1, f"no column for {f}: the header has {', '.join(header)}; name "
                            f"one with --map {f}=COLUMN")
    if problems.count:
        return [], False
    index = {f: header.index(col) for f, col in columns.items()}
    timed = "ts" in index
    positions: dict[str, int] = {}
    items = []
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.add(start, f"not CSV: {exc}")
            break
        n, start = start, reader.line_num + 1
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            problems.add(n, f"{len(row)} cells, the header has {len(header)} (a value with "
                            f"{delimiter!r} in it needs double quotes)")
            continue
        cell = {f: row[i] if f == "text" else row[i].strip() for f, i in index.items()}
        if not cell["conversation_id"]:
            problems.add(n, "no conversation_id")
            continue
        cid = prefix + cell["conversation_id"]
        role = folded = cell["role"].casefold()
        if roles and folded in roles:
            role = roles[folded]
        elif folded not in ROLES:
            role = cell["role"]
        doc: dict = {"conversation_id": cid}
        ok = True
        if cell.get("seq"):
            try:
                seq = int(cell["seq"])
            except ValueError:
                problems.add(n, f"seq {cell['seq']!r} is not a whole number")
                ok = False
        else:
            seq = positions.get(cid, 0)
        doc["turn_id"] = cell.get("turn_id") or f"{cid}:{seq if ok else 0}"
        doc["seq"] = seq if ok else 0
        doc["role"] = role
        doc["text"] = cell["text"]
        at = None
        if timed:
            try:
                doc["ts"], at = _csv_ts(cell["ts"])
            except (ValueError, OverflowError, OSError):
                problems.add(n, f"bad timestamp {cell['ts']!r} (RFC 3339, ISO 8601 or Unix "
                                f"seconds expected)")
                ok = False
        else:
            doc["ts"] = now_iso()
        for f in ("channel", "tenant"):
            if cell.get(f):
                doc[f] = cell[f]
        if not ok:
            continue
        if _validated(doc, n, problems, roles, max_bytes) is None:
            continue
        positions[cid] = positions.get(cid, 0) + 1
        items.append(Item(n, doc, at))
    return items, timed


def _consistent(items: list[Item], problems: Problems) -> dict[str, list[Item]]:
    """Group by conversation; what the worker would dead-letter or skip is a problem here."""
    conversations: dict[str, list[Item]] = {}
    last: dict[str, Item] = {}
    ended: dict[str, int] = {}
    turn_ids: dict[tuple[str, str], int] = {}
    for it in items:
        cid = it.doc["conversation_id"]
        if cid in ended:
            problems.add(it.line, f"conversation {cid!r} already ended on line {ended[cid]} "
                                  f"(the worker would dead-letter this as conversation_ended)")
            continue
        if it.is_end:
            ended[cid] = it.line
        else:
            prev = last.get(cid)
            if prev is not None and it.doc["seq"] <= prev.doc["seq"]:
                problems.add(it.line, f"seq {it.doc['seq']} of conversation {cid!r} is not "
                                      f"above seq {prev.doc['seq']} on line {prev.line} (the "
                                      f"worker would dead-letter it as out_of_order)")
            key = (cid, it.doc["turn_id"])
            if key in turn_ids:
                problems.add(it.line, f"turn_id {it.doc['turn_id']!r} repeats line "
                                      f"{turn_ids[key]} (the worker would skip it as a "
                                      f"duplicate)")
            turn_ids.setdefault(key, it.line)
            last[cid] = it
        conversations.setdefault(cid, []).append(it)
    return conversations


def load(path: str | Path, fmt: str | None = None, mapping: dict[str, str] | None = None,
         roles: dict[str, str] | None = None, prefix: str = "",
         max_bytes: int = 65536) -> Transcript:
    """Read and check the whole file; TranscriptError lists what is wrong, by line."""
    path = Path(path)
    if fmt is None:
        fmt = SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise TranscriptError(f"{path}: cannot tell the format from the name; pass "
                                  f"--format jsonl or --format csv")
    if mapping and fmt != "csv":
        raise TranscriptError("--map applies to CSV files only (JSON lines use the turn "
                              "fields' own names)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TranscriptError(f"{path}: cannot read it: {exc.strerror}") from None
    problems = Problems(path)
    if fmt == "jsonl":
        items, timed = _jsonl(data.removeprefix(b"\xef\xbb\xbf"), problems, roles, prefix,
                              max_bytes), True
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        items, timed = _csv(data, problems, roles, prefix, max_bytes, mapping or {},
                            delimiter)
    conversations = _consistent(items, problems)
    problems.check()
    if not any(not i.is_end for i in items):
        raise TranscriptError(f"{path}: no turns in it")
    return Transcript(path, fmt, timed, conversations)


# --- sending ----------------------------------------------------------------------------------

def timeline(t: Transcript, speed: float, max_pause_s: float) -> dict[int, float]:
    """Send time of every line, in seconds at speed 1 from the first message: the file's own
    gaps, every pause capped at `max_pause_s` of replay time. Conversations interleave as they
    did; a `ts` earlier than its conversation's previous one counts as no pause."""
    cap = max_pause_s * speed if speed > 0 and max_pause_s >= 0 else math.inf
    moments = []
    for items in t.conversations.values():
        latest = -math.inf
        for it in items:
            latest = max(latest, it.at)
            moments.append((latest, it.line))
    moments.sort()
    out: dict[int, float] = {}
    clock, before = 0.0, None
    for at, line in moments:
        if before is not None:
            clock += min(at - before, cap)
        out[line], before = clock, at
    return out


def outgoing(t: Transcript, speed: float = 10.0, max_pause_s: float = 10.0,
             conversation_end: bool = False, keep_ts: bool = False) -> list[list[Outgoing]]:
    """The messages of every conversation, with their pauses (at speed 1), key = its id.
    `conversation_end` adds an end event after the last turn of each conversation that has
    none in the file; `keep_ts` sends the file's `ts` instead of the send time."""
    when = timeline(t, speed, max_pause_s) if t.timed else {}
    out = []
    for cid, items in t.conversations.items():
        key, clock, messages = cid.encode(), 0.0, []
        for it in items:
            if t.timed:
                delay, clock = when[it.line] - clock, when[it.line]
            elif it.is_end:
                delay = END_DELAY_S
            else:
                delay = typing_delay(it.doc["role"], it.doc["text"])
            messages.append(Outgoing(key, orjson.dumps(it.doc), delay, stamp=not keep_ts))
        if conversation_end and not items[-1].is_end:
            end = {"type": "conversation_end", "conversation_id": cid,
                   "ts": items[-1].doc["ts"], "reason": END_REASON}
            if "tenant" in items[-1].doc:
                end["tenant"] = items[-1].doc["tenant"]
            messages.append(Outgoing(key, orjson.dumps(end), END_DELAY_S, stamp=not keep_ts))
        out.append(messages)
    return out


def send(bootstrap: str, topic: str, t: Transcript, conversations: list[list[Outgoing]],
         speed: float, progress: bool | None = None) -> int:
    """Replay through devstack.replay.replay with a progress bar (on a terminal by default)."""
    from tqdm import tqdm

    total = sum(map(len, conversations))
    timed = {"concurrency": max(1, len(conversations)), "stagger_s": 0.0} if t.timed else {}
    with tqdm(total=total, unit="msg", desc="replay", disable=None if progress is None
              else not progress, dynamic_ncols=True) as bar:
        return asyncio.run(replay(bootstrap, topic, conversations, speed=speed,
                                  on_sent=bar.update, **timed))


def cli(args: argparse.Namespace, topic: str, max_bytes: int) -> None:
    """`python -m devstack replay --file PATH ...`"""
    try:
        t = load(args.file, args.format, args.map, args.roles, args.prefix or "", max_bytes)
    except TranscriptError as exc:
        sys.exit(str(exc))
    conversations = outgoing(t, args.speed, args.max_pause, args.conversation_end,
                             args.keep_ts)
    added = sum(len(c) for c in conversations) - t.turns - t.ends
    if t.timed and args.speed > 0:
        when = timeline(t, args.speed, args.max_pause)
        pace = (f"the file's timing at {args.speed:g}x (pauses capped at {args.max_pause:g} s): "
                f"about {max(when.values()) / args.speed:.0f} s")
    elif args.speed > 0:
        pace = f"no timestamps, paced like typing at {args.speed:g}x"
    else:
        pace = "no pauses"
    print(f"== replaying {t.path}: {len(conversations)} conversations, {t.turns} turns, "
          f"{t.ends + added} end events to {topic}; {pace}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    sent = send(args.bootstrap, topic, t, conversations, args.speed)
    print(orjson.dumps({"file": str(t.path), "conversations": len(conversations),
                        "turns": t.turns, "end_events": t.ends + added,
                        "messages_sent": sent,
                        "seconds": round(time.monotonic() - t0, 1)}).decode(), flush=True)
