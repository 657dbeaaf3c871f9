"""`python -m devstack replay --file`: JSON lines and CSV transcripts, checked whole before
anything is sent, timed from their own `ts`; one replay into a real (Tansu) broker."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from devstack import __main__ as cli
from devstack.replay import END_DELAY_S, typing_delay
from devstack.transcripts import (
    END_REASON,
    MAX_SHOWN,
    TranscriptError,
    column_map,
    load,
    outgoing,
    role_map,
    timeline,
)
from worker.ingest import parse
from worker.records import ConversationEnd, Turn

EXAMPLES = Path(__file__).resolve().parents[2] / "devstack" / "examples"
JSONL = EXAMPLES / "support_chats.jsonl"
CSV = EXAMPLES / "support_chats.csv"
CSV_MAP = "conversation_id=chat_id,role=speaker,text=message,ts=time"
CSV_ROLES = "visitor=customer,operator=agent"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def jl(*docs: dict | str) -> str:
    return "".join((d if isinstance(d, str) else orjson.dumps(d).decode()) + "\n"
                   for d in docs)


def turn(cid: str, seq: int, ts: str, role: str = "customer", text: str = "hi", **extra):
    return {"conversation_id": cid, "turn_id": f"{cid}:{seq}", "seq": seq, "role": role,
            "text": text, "ts": ts, **extra}


def problems(excinfo: pytest.ExceptionInfo) -> list[str]:
    return [line.strip() for line in str(excinfo.value).splitlines()[1:]]


def sent_docs(conversations) -> list[dict]:
    return [orjson.loads(m.value) for c in conversations for m in c]


# --- JSON lines -------------------------------------------------------------------------------

def test_example_jsonl_loads_as_the_worker_reads_it():
    t = load(JSONL)
    assert (t.format, t.timed, t.turns, t.ends) == ("jsonl", True, 9, 1)
    assert list(t.conversations) == ["order-1042", "refund-77"]
    for c in outgoing(t, conversation_end=True):
        cid = c[0].key
        for m in c:  # every message is one the worker accepts, with its key
            assert isinstance(parse(m.value, m.key, 65536), Turn | ConversationEnd)
            assert m.key == cid
    # refund-77 ends in the file; --conversation-end adds one to order-1042 only
    ends = [d for d in sent_docs(outgoing(t, conversation_end=True))
            if d.get("type") == "conversation_end"]
    assert [(d["conversation_id"], d["reason"]) for d in ends] == [
        ("order-1042", END_REASON), ("refund-77", "resolved")]
    assert ends[0]["tenant"] == "acme"
    assert all(d.get("type") != "conversation_end" or d["conversation_id"] == "refund-77"
               for d in sent_docs(outgoing(t)))


def test_timing_follows_ts_across_conversations_and_speed(tmp_path):
    p = write(tmp_path, "t.jsonl", jl(
        turn("a", 0, "2024-01-01T10:00:00Z"),
        turn("b", 0, "2024-01-01T10:00:03Z"),
        turn("a", 1, "2024-01-01T10:00:05.5Z", "agent"),
        turn("b", 1, "2024-01-01T09:59:00Z", "agent"),  # clock skew: no pause, stays in order
        turn("a", 2, "2024-01-01T11:00:05.5Z"),  # an hour later: capped
    ))
    t = load(p)
    assert timeline(t, speed=1, max_pause_s=math.inf) == {
        1: 0.0, 2: 3.0, 3: 5.5, 4: 3.0, 5: 3605.5}
    # the cap is in replay seconds: 10 s at speed 2 is 20 s of file time
    assert timeline(t, speed=2, max_pause_s=10)[5] == 5.5 + 20
    a, b = outgoing(t, speed=2, max_pause_s=10)
    assert [m.delay_s for m in a] == [0.0, 5.5, 20.0]  # at speed 1; replay() divides
    assert [m.delay_s for m in b] == [3.0, 0.0]
    assert all(m.stamp for m in a) and not any(m.stamp for m in outgoing(t, keep_ts=True)[0])


def test_prefix_and_roles_apply_before_the_worker_check(tmp_path):
    p = write(tmp_path, "t.jsonl", jl(turn("a", 0, "2024-01-01T10:00:00Z", role="User"),
                                      turn("a", 1, "2024-01-01T10:00:01Z", role="bot")))
    t = load(p, roles=role_map("user=customer,BOT=agent"), prefix="run2-")
    docs = sent_docs(outgoing(t))
    assert [(d["conversation_id"], d["role"]) for d in docs] == [
        ("run2-a", "customer"), ("run2-a", "agent")]
    assert outgoing(t)[0][0].key == b"run2-a"


def test_malformed_jsonl_names_every_bad_line(tmp_path):
    ok = turn("a", 0, "2024-01-01T10:00:00Z")
    p = write(tmp_path, "bad.jsonl", jl(
        ok,
        '{"conversation_id": "a", "seq": ',  # 2: bad JSON
        {k: v for k, v in turn("a", 1, "2024-01-01T10:00:01Z").items() if k != "ts"},  # 3
        turn("a", 2, "2024-01-01T10:00:02Z", role="user"),  # 4: unknown role
        {**turn("a", 3, "2024-01-01T10:00:03Z"), "seq": "3"},  # 5: wrong type
        turn("a", 4, "yesterday"),  # 6: bad timestamp (pattern)
        turn("a", 5, "2024-02-30T10:00:00Z"),  # 7: bad timestamp (no such day)
        "[1, 2]",  # 8: not an object
        turn("a", 0, "2024-01-01T10:00:09Z"),  # 9: seq not above line 1's, turn id repeats
        {**turn("b", 0, "2024-01-01T10:00:09Z"), "sentiment": "angry"},  # 10: extra field
    ))
    with pytest.raises(TranscriptError) as e:
        load(p)
    assert str(e.value).startswith(f"{p}: 10 problems, nothing was sent:")
    got = problems(e)
    assert got[0].startswith("line 2: invalid json: ")
    assert got[1] == "line 3: missing field: 'ts' is a required property"
    assert got[2].startswith("line 4: unknown role: role: 'user' is not one of ['customer', "
                             "'agent']; map other values with --roles")
    assert got[3] == "line 5: wrong type: seq: '3' is not of type 'integer'"
    assert got[4] == ("line 6: bad timestamp 'yesterday': RFC 3339 expected, e.g. "
                      "2024-03-04T09:15:02Z")
    assert got[5].startswith("line 7: bad timestamp '2024-02-30T10:00:00Z': ")
    assert got[6] == "line 8: not an object: list"
    assert got[7] == ("line 9: seq 0 of conversation 'a' is not above seq 0 on line 1 (the "
                      "worker would dead-letter it as out_of_order)")
    assert got[8].startswith("line 9: turn_id 'a:0' repeats line 1")
    assert got[9] == ("line 10: unexpected field: Additional properties are not allowed "
                      "('sentiment' was unexpected)")


def test_only_the_first_problems_are_listed(tmp_path):
    p = write(tmp_path, "bad.jsonl", "not json\n" * (MAX_SHOWN + 5))
    with pytest.raises(TranscriptError) as e:
        load(p)
    lines = problems(e)
    assert len(lines) == MAX_SHOWN + 1 and lines[-1] == "... and 5 more"
    assert lines[MAX_SHOWN - 1].startswith(f"line {MAX_SHOWN}: invalid json")


def test_turn_after_the_end_event_and_empty_files(tmp_path):
    p = write(tmp_path, "t.jsonl", jl(
        turn("a", 0, "2024-01-01T10:00:00Z"),
        {"type": "conversation_end", "conversation_id": "a", "ts": "2024-01-01T10:00:01Z"},
        turn("a", 1, "2024-01-01T10:00:02Z")))
    with pytest.raises(TranscriptError, match="line 3: conversation 'a' already ended on "
                                              "line 2"):
        load(p)
    with pytest.raises(TranscriptError, match="no turns in it"):
        load(write(tmp_path, "empty.jsonl", "\n\n"))
    with pytest.raises(TranscriptError, match="cannot tell the format"):
        load(write(tmp_path, "chats.txt", "x"))
    with pytest.raises(TranscriptError, match="cannot read it"):
        load(tmp_path / "missing.jsonl")


def test_unicode_and_emoji_round_trip(tmp_path):
    text = "Merci, ça marche 👍🏽 — 退款已收到 ✅ \u00e9\u0301"
    p = write(tmp_path, "u.jsonl", "\ufeff" + jl(turn("ü-1", 0, "2024-01-01T10:00:00Z",
                                                      text=text)))
    (m,) = outgoing(load(p))[0]
    assert m.key == "ü-1".encode()
    sent = parse(m.stamped(), m.key, 65536)
    assert isinstance(sent, Turn) and sent.text == text
    c = write(tmp_path, "u.csv", f'conversation_id,role,text\nü-1,customer,"{text}"\n')
    (m,) = outgoing(load(c))[0]
    assert orjson.loads(m.stamped())["text"] == text


# --- CSV --------------------------------------------------------------------------------------

def test_example_csv_with_a_column_map_and_roles():
    t = load(CSV, mapping=column_map(CSV_MAP), roles=role_map(CSV_ROLES))
    assert (t.format, t.timed, t.turns, t.ends) == ("csv", True, 9, 0)
    wifi, billing = outgoing(t, speed=10, conversation_end=True)
    docs = [orjson.loads(m.value) for m in wifi]
    assert [d.get("seq") for d in docs] == [0, 1, 2, 3, 4, None]
    assert [d.get("turn_id") for d in docs[:2]] == ["wifi-5:0", "wifi-5:1"]
    assert [d.get("role") for d in docs[:3]] == ["customer", "agent", "customer"]
    assert docs[0]["ts"] == "2024-05-15T14:20:03.000Z"  # no zone: UTC
    assert docs[-1]["type"] == "conversation_end"
    assert "," in docs[0]["text"] and docs[-2]["text"].startswith("Thursday?!")
    assert [m.delay_s for m in billing][:2] == [57.0, 30.0]  # from the file's times
    for c in (wifi, billing):
        for m in c:
            assert isinstance(parse(m.value, m.key, 65536), Turn | ConversationEnd)


def test_csv_defaults_derive_seq_turn_id_and_typing_time(tmp_path):
    p = write(tmp_path, "t.csv", "conversation_id,role,text,extra\n"
                                 "c1,Customer,Where is my parcel?,x\n"
                                 "c2,customer,hello,y\n"
                                 "\n"
                                 "c1,AGENT,On its way.,z\n")
    t = load(p)
    assert not t.timed
    c1, c2 = outgoing(t)
    docs = [orjson.loads(m.value) for m in c1]
    assert [(d["seq"], d["turn_id"], d["role"]) for d in docs] == [
        (0, "c1:0", "customer"), (1, "c1:1", "agent")]
    assert set(docs[0]) == {"conversation_id", "turn_id", "seq", "role", "text", "ts"}
    assert [orjson.loads(m.value)["turn_id"] for m in c2] == ["c2:0"]
    assert [m.delay_s for m in c1] == [typing_delay("customer", "Where is my parcel?"),
                                       typing_delay("agent", "On its way.")]
    c1_end = outgoing(t, conversation_end=True)[0][-1]
    assert c1_end.delay_s == END_DELAY_S
    # given seq and turn_id are kept; a TSV; Unix seconds as ts
    p = write(tmp_path, "t.tsv", "conversation_id\tseq\tturn_id\trole\ttext\tts\n"
                                 "c1\t4\tm-9\tcustomer\thi\t1700000000\n"
                                 "c1\t7\t\tagent\thello\t1700000002.5\n")
    (c1,) = outgoing(load(p), speed=1)
    docs = [orjson.loads(m.value) for m in c1]
    assert [(d["seq"], d["turn_id"], d["ts"]) for d in docs] == [
        (4, "m-9", "2023-11-14T22:13:20.000Z"), (7, "c1:7", "2023-11-14T22:13:22.500Z")]
    assert [m.delay_s for m in c1] == [0.0, 2.5]


def test_malformed_csv_names_lines_and_columns(tmp_path):
    p = write(tmp_path, "t.csv", "chat_id,speaker,message\nc1,customer,hi\n")
    with pytest.raises(TranscriptError) as e:
        load(p, mapping=column_map("conversation_id=chat_id,role=who,text=message,ts=time"))
    assert problems(e) == [
        "line 1: no column 'who' (--map role=who); the header has chat_id, speaker, message",
        "line 1: no column 'time' (--map ts=time); the header has chat_id, speaker, message"]
    with pytest.raises(TranscriptError) as e:
        load(p)
    assert [x.split(":", 2)[:2] for x in problems(e)] == [
        ["line 1", " no column for conversation_id"], ["line 1", " no column for role"],
        ["line 1", " no column for text"]]
    p = write(tmp_path, "t.csv", 'id,role,text,ts,seq\n'
                                 'c1,customer,hi,2024-01-01 10:00:00,0\n'
                                 'c1,user,hi,2024-01-01 10:00:01,1\n'  # 3
                                 'c1,agent,hi there, you,2024-01-01 10:00:02,2\n'  # 4
                                 'c1,agent,"multi\nline",2024-01-01 10:00:03,x\n'  # 5-6
                                 'c1,agent,ok,soon,4\n'  # 7
                                 'c1,agent,,2024-01-01 10:00:05,5\n'  # 8
                                 'c1,agent,ok,2024-01-01 10:00:06,0\n')  # 9
    with pytest.raises(TranscriptError) as e:
        load(p, mapping=column_map("conversation_id=id"))
    got = problems(e)
    assert got[0].startswith("line 3: unknown role: role: 'user' is not one of")
    assert got[1] == ("line 4: 6 cells, the header has 5 (a value with ',' in it needs double "
                      "quotes)")
    assert got[2] == "line 5: seq 'x' is not a whole number"
    assert got[3].startswith("line 7: bad timestamp 'soon'")
    assert got[4].startswith("line 8: invalid value: text: ")
    assert got[5].startswith("line 9: seq 0 of conversation 'c1' is not above seq 0 on line 2")
    assert got[6] == ("line 9: turn_id 'c1:0' repeats line 2 (the worker would skip it as a "
                      "duplicate)")
    assert len(got) == 7


def test_option_values():
    assert column_map(" role = speaker ,text=msg") == {"role": "speaker", "text": "msg"}
    with pytest.raises(argparse.ArgumentTypeError, match="unknown field"):
        column_map("speaker=role")
    with pytest.raises(argparse.ArgumentTypeError, match="is not FIELD=COLUMN"):
        column_map("role")
    with pytest.raises(argparse.ArgumentTypeError, match="not 'bot'"):
        role_map("user=customer,agent=bot")
    with pytest.raises(TranscriptError, match="--map applies to CSV files only"):
        load(JSONL, mapping={"role": "who"})


def test_cli_rejects_a_bad_file_before_connecting(tmp_path, monkeypatch, capsys):
    p = write(tmp_path, "bad.jsonl", jl(turn("a", 0, "nope")))
    monkeypatch.setattr(sys, "argv", ["devstack", "replay", "--bootstrap", "127.0.0.1:1",
                                      "--file", str(p)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert str(e.value) == (f"{p}: 1 problem, nothing was sent:\n  line 1: bad timestamp "
                            f"'nope': RFC 3339 expected, e.g. 2024-03-04T09:15:02Z")
    monkeypatch.setattr(sys, "argv", ["devstack", "replay", "--bootstrap", "x", "--file",
                                      str(CSV), "--map", "speaker=role"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2 and "argument --map: unknown field(s) speaker" in (
        capsys.readouterr().err)


# --- into a real broker ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def broker():
    """A bare Tansu broker: no Triton, no worker (the replay only produces)."""
    from devstack.broker import Tansu, create_topics

    b = Tansu().start()
    asyncio.run(create_topics(b.bootstrap, {"chat.turns": 4}))
    yield b
    b.stop()


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    got: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < count and loop.time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                got += messages
        await asyncio.sleep(0.5)  # anything extra would show up too
        for messages in (await consumer.getmany(timeout_ms=200)).values():
            got += messages
    finally:
        await consumer.stop()
    return got


@pytest.mark.integration
def test_cli_replays_the_example_csv_into_a_broker(broker, monkeypatch, capsys):
    monkeypatch.setenv("CHAT_TOPIC_TURNS", "chat.turns")
    monkeypatch.setattr(sys, "argv", [
        "devstack", "replay", "--bootstrap", broker.bootstrap, "--file", str(CSV),
        "--map", CSV_MAP, "--roles", CSV_ROLES, "--speed", "0", "--conversation-end",
        "--prefix", "it-"])
    cli.main()
    summary = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary | {"seconds": 0} == {
        "file": str(CSV), "conversations": 2, "turns": 9, "end_events": 2,
        "messages_sent": 11, "seconds": 0}
    got = asyncio.run(consume(broker.bootstrap, "chat.turns", 11))
    assert len(got) == 11
    partitions, seqs = defaultdict(set), defaultdict(list)
    for m in got:
        item = parse(m.value, m.key, 65536)  # the worker accepts it, key included
        assert isinstance(item, Turn | ConversationEnd), item
        assert m.key == item.conversation_id.encode()
        partitions[m.key].add(m.partition)
        seqs[m.key].append(getattr(item, "seq", "end"))
    assert {k: len(v) for k, v in partitions.items()} == {b"it-wifi-5": 1, b"it-billing-9": 1}
    assert seqs == {b"it-wifi-5": [0, 1, 2, 3, 4, "end"], b"it-billing-9": [0, 1, 2, 3, "end"]}
    texts = {orjson.loads(m.value).get("text") for m in got}
    assert "Usually 2–3 working days. You'll get an email once it's done 📧" in texts
