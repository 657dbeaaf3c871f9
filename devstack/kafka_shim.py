"""A Kafka-protocol relay in front of the local Tansu broker so that librdkafka < 2.2.0 clients
(kcat 1.7.1 as packaged by Debian 12, confluent-kafka < 2.2, and the Go/.NET/Node clients built
on those librdkafka releases) can connect.

The cause, measured (tests/test_kafka_clients.py keeps the evidence):
Tansu 0.6.0 answers ApiVersions v3 with all four of the response's tagged fields present, each
holding its default value

    04                              4 tagged fields
    00 01 01                        tag 0 SupportedFeatures, 1 byte: empty compact array
    01 08 ff ff ff ff ff ff ff ff   tag 1 FinalizedFeaturesEpoch, 8 bytes: -1
    02 01 01                        tag 2 FinalizedFeatures, 1 byte: empty compact array
    03 01 00                        tag 3 ZkMigrationReady, 1 byte: false

which is valid, but Apache Kafka's serializer leaves a tagged field out when it holds its default
(noida-db sends a bare `00`). librdkafka before 2.2.0 (fixed by confluentinc/librdkafka#4278)
skips `size - 1` bytes of a tagged field instead of `size`, loses its place and reads
`ff ff ff ff ff ff ff ff 02` as a length: "ApiVersionRequest failed: Local: Read underflow".

The relay forwards every frame unchanged except that one response: in a successful ApiVersions
v3+ response it drops the tagged fields that hold their default value. By the protocol a missing
tagged field means its default, so the rewritten response says exactly the same thing, in the
bytes Apache Kafka would send. Anything that does not parse exactly is passed through untouched.

Run: `python -m devstack.kafka_shim --listen 127.0.0.1:PORT --upstream 127.0.0.1:TANSU_PORT`
(Tansu must advertise the relay's address, so that every later connection comes here too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import struct

API_VERSIONS = 18
MAX_PARSED_FRAME = 100 << 20  # Kafka's default socket.request.max.bytes; larger: not Kafka
# ApiVersionsResponse tagged fields (v3+) and their default values, as encoded on the wire
DEFAULT_TAGS: dict[int, bytes] = {
    0: b"\x01",              # SupportedFeatures: empty compact array
    1: b"\xff" * 8,          # FinalizedFeaturesEpoch: -1
    2: b"\x01",              # FinalizedFeatures: empty compact array
    3: b"\x00",              # ZkMigrationReady: false
}


def read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or oversized varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def write_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_tags(buf: bytes, pos: int) -> tuple[list[tuple[int, bytes]], int]:
    count, pos = read_uvarint(buf, pos)
    tags = []
    for _ in range(count):
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        if pos + size > len(buf):
            raise ValueError("truncated tagged field")
        tags.append((tag, buf[pos:pos + size]))
        pos += size
    return tags, pos


def strip_default_tags(frame: bytes) -> bytes:
    """`frame`: an ApiVersions v3+ response without its size prefix (correlation id, then the
    body; the ApiVersions response header is v0, it has no tagged fields). Returns it with the
    top-level tagged fields that hold their default value left out; unchanged if it is an error
    response (sent in the v0 layout) or does not parse to its last byte."""
    try:
        (error_code,) = struct.unpack_from(">h", frame, 4)
        if error_code != 0:
            return frame
        n, pos = read_uvarint(frame, 6)  # ApiKeys: compact array, N + 1
        for _ in range(max(n - 1, 0)):
            pos += 6  # ApiKey, MinVersion, MaxVersion
            _, pos = read_tags(frame, pos)
        pos += 4  # ThrottleTimeMs
        head = pos
        tags, pos = read_tags(frame, pos)
    except (ValueError, struct.error):
        return frame
    if pos != len(frame) or head > len(frame):
        return frame
    kept = [(t, v) for t, v in tags if DEFAULT_TAGS.get(t) != v]
    if len(kept) == len(tags):
        return frame
    out = bytearray(frame[:head])
    out += write_uvarint(len(kept))
    for tag, value in kept:
        out += write_uvarint(tag) + write_uvarint(len(value)) + value
    return bytes(out)


class _Connection:
    """One client connection. Clients ask ApiVersions first on a connection and never again,
    so frames are parsed only until the client has sent its first other request and every
    ApiVersions answer has gone back; from then on bytes are copied as they come. A later
    ApiVersions request would be forwarded unchanged, never corrupted."""

    CHUNK = 1 << 16

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}  # correlation id -> version of an ApiVersions request
        self.handshake_done = False  # the client has sent a request other than ApiVersions

    async def requests(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        async with _closing(writer):
            while not self.handshake_done:
                size, frame = await _read_frame(reader)
                if frame is None:  # not a Kafka frame: stay out of the way
                    writer.write(size)
                    break
                if len(frame) >= 8:
                    api_key, version, corr = struct.unpack_from(">hhi", frame)
                    if api_key == API_VERSIONS:
                        self.pending[corr] = version
                    else:
                        self.handshake_done = True
                writer.write(size + frame)
                await writer.drain()
            await _copy(reader, writer)

    async def responses(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        async with _closing(writer):
            while not (self.handshake_done and not self.pending):
                size, frame = await _read_frame(reader)
                if frame is None:
                    writer.write(size)
                    break
                if len(frame) >= 4:
                    version = self.pending.pop(int.from_bytes(frame[:4], "big", signed=True),
                                               None)
                    if version is not None and version >= 3:
                        new = strip_default_tags(frame)
                        if new is not frame:
                            size, frame = len(new).to_bytes(4, "big"), new
                writer.write(size + frame)
                await writer.drain()
            await _copy(reader, writer)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes | None]:
    """The 4-byte size and the frame; None for the frame if the size is not plausible."""
    size = await reader.readexactly(4)
    n = int.from_bytes(size, "big", signed=True)
    if not 0 <= n <= MAX_PARSED_FRAME:
        return size, None
    return size, await reader.readexactly(n)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(_Connection.CHUNK):
        writer.write(data)
        await writer.drain()


@contextlib.asynccontextmanager
async def _closing(writer: asyncio.StreamWriter):
    """End of one direction (EOF, reset, or the peer gone): close the other side's writer,
    which ends the opposite direction too."""
    try:
        yield
    except (asyncio.IncompleteReadError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen: tuple[str, int], upstream: tuple[str, int]) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            b_reader, b_writer = await asyncio.open_connection(*upstream)
        except OSError:
            c_writer.close()
            return
        conn = _Connection()
        await asyncio.gather(conn.requests(c_reader, b_writer),
                             conn.responses(b_reader, c_writer))

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    async with server:
        await server.serve_forever()


def _addr(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=_addr, required=True, help="HOST:PORT clients connect to")
    p.add_argument("--upstream", type=_addr, required=True, help="HOST:PORT of the broker")
    args = p.parse_args()
    asyncio.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
