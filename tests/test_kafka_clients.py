"""Any Kafka client against the local stack, librdkafka ones above all (confluent-kafka for
Python, Go, .NET, Node; kcat): most chat platforms publish with those.

Tansu 0.6.0 answers ApiVersions v3 with four tagged fields that all hold their default value;
librdkafka < 2.2.0 skips one byte too few per tagged field and fails with "ApiVersionRequest
failed: Local: Read underflow". devstack.kafka_shim, in front of Tansu in every local stack,
leaves such default-valued fields out (as Apache Kafka does). The unit tests pin that rewrite
down on the bytes Tansu sends; the integration tests produce turns with confluent-kafka and with
kcat (librdkafka 2.0.2 in Debian 12's kcat 1.7.1) and read the enriched events back with them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections import defaultdict

import orjson
import pytest

from devstack.kafka_shim import (
    DEFAULT_TAGS,
    read_tags,
    read_uvarint,
    strip_default_tags,
    write_uvarint,
)
from devstack.replay import conversation_messages, pick_dialogues
from worker.records import event_id
from worker.schemas import validator

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(what: str, present: bool, install: str) -> None:
    """Skip when a client is missing on a developer machine; fail in CI, which installs it."""
    if present:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing in CI ({install})")
    pytest.skip(f"{what} is not installed ({install})")


# --- the ApiVersions rewrite, on the bytes Tansu 0.6.0 sends (no broker needed) ------------------

# Tansu 0.6.0's answer to an ApiVersions v3 request (correlation id 1), as captured on the wire
# without its size prefix: header v0 (correlation id only), error 0, 36 API keys, throttle 0,
# then 4 tagged fields: SupportedFeatures [], FinalizedFeaturesEpoch -1, FinalizedFeatures [],
# ZkMigrationReady false.
TANSU_API_VERSIONS_V3 = bytes.fromhex(
    "00000001" "0000" "25"  # correlation id, error code, 36 API keys (compact array)
    "00150000000200004b000000000000130000000700001d0000000300002c000000010000470000000000"
    "00030000000c0000090000000900000e0000000500003300000000000002000000090000450000000000"
    "00110000000100001a000000040000180000000500001c0000000400000c0000000400000a0000000600"
    "003c0000000100000d0000000500000b0000000900001200000004000001000000110000190000000400"
    "00140000000600002e0000000000001e000000030000000000000b000008000000090000240000000200"
    "00320000000000000f000000050000100000000500002a00000002000016000000050000200000000400"
    "00000000"  # ThrottleTimeMs
    "04" "000101" "0108ffffffffffffffff" "020101" "030100"  # 4 tagged fields
)


def api_keys(frame: bytes) -> list[tuple[int, int, int]]:
    n, pos = read_uvarint(frame, 6)
    out = []
    for _ in range(n - 1):
        out.append(struct.unpack_from(">hhh", frame, pos))
        _, pos = read_tags(frame, pos + 6)
    return out


def tags_of(frame: bytes) -> list[tuple[int, bytes]]:
    n, pos = read_uvarint(frame, 6)
    for _ in range(n - 1):
        _, pos = read_tags(frame, pos + 6)
    tags, end = read_tags(frame, pos + 4)
    assert end == len(frame)
    return tags


def old_librdkafka_reads_to_the_end(frame: bytes) -> bool:
    """librdkafka < 2.2.0 (rd_kafka_buf_skip_tags before confluentinc/librdkafka#4278) on an
    ApiVersions v3 response: it skips `size - 1` bytes of each tagged field."""
    n, pos = read_uvarint(frame, 6)
    pos += (n - 1) * 7 + 4  # every API key entry carries an empty tag section here
    count, pos = read_uvarint(frame, pos)
    for _ in range(count):
        _, pos = read_uvarint(frame, pos)
        size, pos = read_uvarint(frame, pos)
        if size > 1:
            pos += size - 1
        if pos > len(frame):
            return False
    return pos == len(frame)


def test_the_captured_tansu_answer_is_what_old_librdkafka_cannot_read():
    assert len(api_keys(TANSU_API_VERSIONS_V3)) == 36
    assert tags_of(TANSU_API_VERSIONS_V3) == sorted(DEFAULT_TAGS.items())
    assert not old_librdkafka_reads_to_the_end(TANSU_API_VERSIONS_V3)


def test_default_valued_tags_are_left_out_and_nothing_else_changes():
    fixed = strip_default_tags(TANSU_API_VERSIONS_V3)
    assert fixed == TANSU_API_VERSIONS_V3[:-20] + b"\x00"  # 4 tags (20 bytes) -> none
    assert api_keys(fixed) == api_keys(TANSU_API_VERSIONS_V3)
    assert old_librdkafka_reads_to_the_end(fixed)
    assert strip_default_tags(fixed) is fixed  # already clean: passed through as it is


def test_tags_with_other_values_or_unknown_tags_are_kept_in_order():
    head = TANSU_API_VERSIONS_V3[:-20]
    features = b"\x02" + b"\x11metadata.version" + b"\x00\x01\x00\x14" + b"\x00"
    tags = [(0, features), (1, (7).to_bytes(8, "big")), (2, b"\x01"), (3, b"\x01"),
            (9, b"\x01")]
    frame = head + write_uvarint(len(tags)) + b"".join(
        write_uvarint(t) + write_uvarint(len(v)) + v for t, v in tags)
    assert tags_of(strip_default_tags(frame)) == [t for t in tags if t[0] != 2]


@pytest.mark.parametrize("frame", [
    # UNSUPPORTED_VERSION (35) comes in the v0 layout: int32 array, no tags
    bytes.fromhex("00000001" "0023" "00000001" "0012" "0000" "0003"),
    TANSU_API_VERSIONS_V3[:-1],  # truncated
    TANSU_API_VERSIONS_V3 + b"\x00",  # trailing byte
    b"\x00\x00\x00\x01",
], ids=["error-v0-layout", "truncated", "trailing", "short"])
def test_anything_that_does_not_parse_exactly_passes_through(frame):
    assert strip_default_tags(frame) is frame


def test_uvarint_round_trip():
    for v in (0, 1, 127, 128, 300, 2**21, 2**35 + 5, 2**63 - 1):
        assert read_uvarint(write_uvarint(v), 0) == (v, len(write_uvarint(v)))
    with pytest.raises(ValueError):
        read_uvarint(b"\xff\xff", 0)


def run_relay(upstream_handler, client):
    """Start a fake broker (`upstream_handler`, an asyncio server callback) and the relay in
    front of it on free ports; run `client(port)` (a coroutine) against the relay."""
    from devstack.kafka_shim import serve
    from devstack.procs import free_port

    async def main():
        broker = await asyncio.start_server(upstream_handler, "127.0.0.1", 0)
        upstream = broker.sockets[0].getsockname()[:2]
        port = free_port()
        relay = asyncio.create_task(serve(("127.0.0.1", port), upstream))
        for _ in range(100):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        try:
            return await asyncio.wait_for(client(port), 10)
        finally:
            relay.cancel()
            broker.close()

    return asyncio.run(main())


def request(api_key: int, version: int, corr: int, body: bytes = b"") -> bytes:
    frame = struct.pack(">hhih", api_key, version, corr, 4) + b"test" + body
    return len(frame).to_bytes(4, "big") + frame


async def fake_tansu(reader, writer):
    """Answers ApiVersions with Tansu's bytes; anything else with a frame whose body is those
    same bytes too, which the relay must leave alone."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            frame = await reader.readexactly(int.from_bytes(await reader.readexactly(4), "big"))
            corr = frame[4:8]
            answer = corr + TANSU_API_VERSIONS_V3[4:]
            writer.write(len(answer).to_bytes(4, "big") + answer)
            await writer.drain()
    writer.close()


async def read_answers(reader, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        out.append(await reader.readexactly(int.from_bytes(await reader.readexactly(4), "big")))
    return out


def test_the_relay_rewrites_only_the_api_versions_answers():
    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # pipelined, as librdkafka does: ApiVersions (v2 is not flexible: left alone; v3
        # rewritten), then Metadata and Produce, whose answers are left alone
        writer.write(request(18, 2, 6) + request(18, 3, 7) + request(3, 12, 8)
                     + request(0, 9, 9))
        first = await read_answers(reader, 4)
        writer.write(request(18, 3, 10))  # a late ApiVersions: passed through
        late = await read_answers(reader, 1)
        writer.close()
        return first + late

    v2, a, metadata, produce, late = run_relay(fake_tansu, client)
    tansu = TANSU_API_VERSIONS_V3[4:]
    assert v2[4:] == tansu
    assert a == (7).to_bytes(4, "big") + strip_default_tags(TANSU_API_VERSIONS_V3)[4:]
    assert tags_of(a) == [] and old_librdkafka_reads_to_the_end(a)
    assert metadata[4:] == tansu and produce[4:] == tansu and late[4:] == tansu


def test_the_relay_passes_bytes_that_are_not_kafka_through():
    async def echo(reader, writer):
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        blob = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50
        writer.write(blob)
        got = await reader.readexactly(len(blob))
        writer.close()
        return blob, got

    blob, got = run_relay(echo, client)
    assert got == blob


# --- on the real processes -----------------------------------------------------------------------

def api_versions_v3(port: int) -> bytes:
    """Send the ApiVersions v3 request librdkafka sends; return the answer (no size prefix)."""
    def compact(s: bytes) -> bytes:
        return write_uvarint(len(s) + 1) + s

    request = (struct.pack(">hhih", 18, 3, 1, 7) + b"rdkafka" + b"\x00"
               + compact(b"librdkafka") + compact(b"2.0.2") + b"\x00")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(len(request).to_bytes(4, "big") + request)
        f = s.makefile("rb")
        size = int.from_bytes(f.read(4), "big")
        return f.read(size)


@pytest.mark.integration
def test_the_shim_rewrites_tansus_answer_on_the_wire(stack):
    raw = api_versions_v3(stack.broker.broker_port)  # Tansu itself
    relayed = api_versions_v3(stack.broker.port)  # what clients get
    assert not old_librdkafka_reads_to_the_end(raw)
    assert relayed == strip_default_tags(raw) and tags_of(relayed) == []
    assert old_librdkafka_reads_to_the_end(relayed)


def turns_of(dialogues, prefix: str) -> tuple[list[tuple[bytes, bytes]], dict[str, dict]]:
    """Input messages (key, value) of the dialogues interleaved round-robin, end events
    included, and the turns by turn id."""
    conversations = [conversation_messages(d, prefix=prefix) for d in dialogues]
    messages = []
    for i in range(max(len(c) for c in conversations)):
        messages += [(c[i].key, c[i].value) for c in conversations if i < len(c)]
    sent = {}
    for _, value in messages:
        doc = orjson.loads(value)
        if "turn_id" in doc:
            sent[doc["turn_id"]] = doc
    return messages, sent


def check_enriched(events: list[dict], sent: dict[str, dict]) -> None:
    """Every turn sent has its enriched event; a turn seen twice (at-least-once) is identical."""
    by_turn: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_turn[e["turn_id"]].append(e)
    missing = sorted(set(sent) - set(by_turn))
    assert not missing, f"{len(missing)} of {len(sent)} turns have no enriched event: {missing[:5]}"
    assert set(by_turn) == set(sent)
    for turn_id, evs in by_turn.items():
        src = sent[turn_id]
        validator("enriched_turn").validate(evs[0])
        assert evs[0]["event_id"] == event_id(src["conversation_id"], turn_id)
        assert (evs[0]["conversation_id"], evs[0]["seq"], evs[0]["role"]) == (
            src["conversation_id"], src["seq"], src["role"])
        assert all(e == evs[0] for e in evs[1:]), turn_id


def confluent():
    try:
        import confluent_kafka
    except ImportError:
        confluent_kafka = None
    need("confluent-kafka", confluent_kafka is not None, "pip install confluent-kafka")
    return confluent_kafka


def confluent_produce(stack, messages: list[tuple[bytes, bytes]], **conf) -> list[str]:
    """Publish with the client's defaults (plus `conf`); all must be acked. Returns the
    client's error callbacks."""
    ck = confluent()
    errors: list[str] = []
    producer = ck.Producer({"bootstrap.servers": stack.bootstrap,
                            "error_cb": lambda e: errors.append(str(e)), **conf})
    delivered: list = []
    for key, value in messages:
        producer.produce(stack.settings.topic_turns, key=key, value=value,
                         on_delivery=lambda err, msg: delivered.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert delivered == [None] * len(messages), [str(e) for e in delivered if e][:3]
    return errors


def confluent_read(consumer, prefix: str, turns: int, timeout: float = 180) -> list[dict]:
    """The enriched events of conversations starting with `prefix`, until every turn has one
    and nothing more comes for half a second."""
    ck = confluent()
    events: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            if len({e["turn_id"] for e in events}) >= turns:
                break
            continue
        if msg.error():
            assert msg.error().code() == ck.KafkaError._PARTITION_EOF, msg.error()
            continue
        doc = orjson.loads(msg.value())
        if doc["conversation_id"].startswith(prefix):
            assert msg.key() == doc["conversation_id"].encode()
            events.append(doc)
    return events


def no_handshake_errors(errors: list[str]) -> bool:
    return not [e for e in errors if "ApiVersion" in e or "underflow" in e]


@pytest.mark.integration
def test_confluent_kafka_produces_turns_and_a_group_reads_the_enriched_events(stack):
    ck = confluent()
    prefix = f"ck-{uuid.uuid4().hex[:6]}-"
    messages, sent = turns_of(pick_dialogues(8, seed=23), prefix)
    errors: list[str] = []
    # a consumer group with the client's defaults. It subscribes first: Tansu answers a group's
    # first JoinGroup only after about half its session timeout (librdkafka's 45 s: ~23 s),
    # which the worker's processing then overlaps
    consumer = ck.Consumer({"bootstrap.servers": stack.bootstrap, "group.id": prefix + "reader",
                            "auto.offset.reset": "earliest",
                            "error_cb": lambda e: errors.append(str(e))})
    consumer.subscribe([stack.settings.topic_enriched])
    try:
        errors += confluent_produce(stack, messages)
        events = confluent_read(consumer, prefix, len(sent))
    finally:
        consumer.close()
    check_enriched(events, sent)
    assert no_handshake_errors(errors), errors


CODECS = ("gzip", "snappy", "lz4", "zstd")


@pytest.mark.integration
def test_compressed_turns_from_librdkafka_are_enriched(stack):
    """librdkafka producers are often set to compress; the worker (aiokafka) must read every
    codec: lz4, snappy and zstd need cramjam (aiokafka[lz4,snappy,zstd]). Without it the
    worker's fetcher crashes on the first such batch, so nothing is sent then."""
    from aiokafka import codec

    missing = [c for c in CODECS if not getattr(codec, f"has_{c}")()]
    need(f"the worker's {', '.join(missing)} codecs", not missing,
         "pip install 'aiokafka[lz4,snappy,zstd]' (cramjam)")
    ck = confluent()
    prefix = f"cz-{uuid.uuid4().hex[:6]}-"
    dialogues = pick_dialogues(2 * len(CODECS), seed=31)
    sent: dict[str, dict] = {}
    errors: list[str] = []
    for i, compression in enumerate(CODECS):
        messages, turns = turns_of(dialogues[2 * i:2 * i + 2], f"{prefix}{compression}-")
        errors += confluent_produce(stack, messages, **{"compression.type": compression,
                                                        "linger.ms": 20})
        sent |= turns
    # no group this time: all partitions from the beginning
    consumer = ck.Consumer({"bootstrap.servers": stack.bootstrap, "group.id": prefix + "reader",
                            "enable.auto.commit": False})
    metadata = consumer.list_topics(stack.settings.topic_enriched, timeout=10)
    partitions = metadata.topics[stack.settings.topic_enriched].partitions
    consumer.assign([ck.TopicPartition(stack.settings.topic_enriched, p, ck.OFFSET_BEGINNING)
                     for p in partitions])
    try:
        events = confluent_read(consumer, prefix, len(sent))
    finally:
        consumer.close()
    check_enriched(events, sent)
    assert no_handshake_errors(errors), errors
    assert all(w.running for w in stack.workers)


KCAT = shutil.which("kcat") or shutil.which("kafkacat")


@pytest.mark.integration
def test_kcat_produces_turns_and_reads_the_enriched_events(stack):
    need("kcat", KCAT is not None, "apt-get install kcat")
    version = subprocess.run([KCAT, "-V"], capture_output=True, text=True).stdout
    print(" ".join(line for line in version.splitlines() if "librdkafka" in line))
    prefix = f"kc-{uuid.uuid4().hex[:6]}-"
    messages, sent = turns_of(pick_dialogues(4, seed=29), prefix)
    # one message a line, key and value split by a tab (JSON has no raw tab or newline)
    lines = b"".join(k + b"\t" + v + b"\n" for k, v in messages)
    assert lines.count(b"\n") == len(messages) and lines.count(b"\t") == len(messages)
    produced = subprocess.run([KCAT, "-P", "-b", stack.bootstrap, "-t",
                               stack.settings.topic_turns, "-K", "\t"],
                              input=lines, capture_output=True, timeout=60)
    assert produced.returncode == 0 and not produced.stderr, produced.stderr.decode()

    events: list[dict] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        # read the whole topic to its end (-e); -J: one JSON envelope a line, with the key
        read = subprocess.run([KCAT, "-C", "-b", stack.bootstrap, "-t",
                               stack.settings.topic_enriched, "-o", "beginning", "-e", "-q",
                               "-J"], capture_output=True, timeout=60)
        assert read.returncode == 0, read.stderr.decode()
        events = []
        for line in read.stdout.splitlines():
            envelope = orjson.loads(line)
            doc = orjson.loads(envelope["payload"])
            if doc["conversation_id"].startswith(prefix):
                assert envelope["key"] == doc["conversation_id"]
                events.append(doc)
        if len({e["turn_id"] for e in events}) >= len(sent):
            break
        time.sleep(1.0)
    check_enriched(events, sent)
