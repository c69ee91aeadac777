"""Reading MCAP storage files the way recorders really leave them (https://mcap.dev/spec).

rosbag2's and other writers' files may lack what an indexed reader needs: chunks without message
indexes, unchunked files whose messages are out of time order, files cut off mid-chunk by a
killed recorder (no summary, no footer). This reader uses the summary when the file has a valid
one and otherwise scans the records once; it reads every complete message, yields them in
log-time order, and holds memory to one message at a time for chunks known to be in order
(otherwise to the selected messages of one chunk). `truncated` says when the file ends early.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x07, 0x08, 0x0B, 0x0F
RECORD_PREFIX = 9  # opcode u8 + length u64
MESSAGE_HEADER = 22  # channel_id u16, sequence u32, log_time u64, publish_time u64
CHUNK_HEADER = 28  # message_start_time u64, message_end_time u64, uncompressed_size u64, crc u32
FOOTER_SIZE = RECORD_PREFIX + 20 + len(MAGIC)  # footer record (8 + 8 + 4 bytes) and the magic
READ_BLOCK = 1 << 20  # bytes of compressed chunk data fed to a decompressor at a time


class McapReadError(Exception):
    """A storage file that is not MCAP or cannot be read at all."""


@dataclass(frozen=True)
class McapSchema:
    id: int
    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True)
class McapChannel:
    id: int
    schema_id: int
    topic: str
    message_encoding: str
    metadata: dict[str, str]


@dataclass
class ChunkInfo:
    """Where a run of messages lies: a Chunk record, or top-level Message records (compression None)."""

    offset: int  # file offset of the chunk's compressed records, or of the first top-level record
    length: int  # bytes available there (less than declared when the file was cut off)
    start_ns: int
    end_ns: int
    compression: str | None
    in_order: bool | None  # log times never decrease in record order (None: not looked up yet)
    channels: set[int] = field(default_factory=set)  # empty: unknown (read it for every channel)
    index_offsets: dict[int, int] = field(default_factory=dict)  # channel -> its MessageIndex record


@dataclass(frozen=True)
class RawMessage:
    channel_id: int
    log_time_ns: int
    data: bytes


def _u16(b: bytes, o: int) -> int:
    return struct.unpack_from("<H", b, o)[0]


def _u32(b: bytes, o: int) -> int:
    return struct.unpack_from("<I", b, o)[0]


def _u64(b: bytes, o: int) -> int:
    return struct.unpack_from("<Q", b, o)[0]


def _string(b: bytes, o: int) -> tuple[str, int]:
    n = _u32(b, o)
    return b[o + 4 : o + 4 + n].decode(), o + 4 + n


def _parse_schema(body: bytes) -> McapSchema:
    sid = _u16(body, 0)
    name, o = _string(body, 2)
    encoding, o = _string(body, o)
    n = _u32(body, o)
    return McapSchema(sid, name, encoding, body[o + 4 : o + 4 + n])


def _parse_channel(body: bytes) -> McapChannel:
    cid, schema_id = _u16(body, 0), _u16(body, 2)
    topic, o = _string(body, 4)
    encoding, o = _string(body, o)
    size = _u32(body, o)
    o += 4
    end = o + size
    metadata = {}
    while o < end:
        key, o = _string(body, o)
        value, o = _string(body, o)
        metadata[key] = value
    return McapChannel(cid, schema_id, topic, encoding, metadata)


class _Stream:
    """Exact reads from a file region, decompressed on the fly (zstd, lz4) or not ('')."""

    def __init__(self, f: BinaryIO, offset: int, length: int, compression: str) -> None:
        f.seek(offset)
        self.f, self.left = f, length
        self.buffer = b""
        self.decompressor = None
        if compression == "zstd":
            try:
                from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
            except ImportError:
                from backports import zstd  # type: ignore[import-not-found,no-redef]
            self.decompressor = zstd.ZstdDecompressor()
        elif compression == "lz4":
            import lz4.frame

            self.decompressor = lz4.frame.LZ4FrameDecompressor()
        elif compression:
            raise McapReadError(f"unsupported chunk compression {compression!r}")

    def _raw(self, n: int) -> bytes:
        data = self.f.read(min(n, self.left))
        self.left -= len(data)
        if not data:
            self.left = 0
        return data

    def read(self, n: int) -> bytes:
        """n bytes, or fewer at the end of the region (a cut-off file)."""
        if self.decompressor is None:
            return self._raw(n)
        while len(self.buffer) < n:
            if getattr(self.decompressor, "eof", False) or (self.left <= 0 and self.decompressor.needs_input):
                break
            try:
                more = self.decompressor.decompress(self._raw(READ_BLOCK) if self.decompressor.needs_input else b"", n)
            except Exception:  # a compressed stream cut off or damaged: what came before stands
                break
            if not more and self.left <= 0:
                break
            self.buffer += more
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def skip(self, n: int) -> bool:
        if self.decompressor is None:
            if n > self.left:
                self.left = 0
                return False
            self.f.seek(n, 1)
            self.left -= n
            return True
        while n > 0:
            got = len(self.read(min(n, READ_BLOCK)))
            if not got:
                return False
            n -= got
        return True


class McapFile:
    """One MCAP storage file: schemas, channels, message counts and time-ordered messages."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.schemas: dict[int, McapSchema] = {}
        self.channels: dict[int, McapChannel] = {}
        self.counts: dict[int, int] = {}  # channel id -> messages (from Statistics or the scan)
        self.chunks: list[ChunkInfo] = []
        self.start_ns, self.end_ns = 0, 0
        self.truncated = False  # the file ends before its footer: a writer did not finish it
        self.indexed = False  # the counts come from the file's own summary
        self._f: BinaryIO | None = None

    def __enter__(self) -> McapFile:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self._f = self.path.open("rb")
        if self._f.read(len(MAGIC)) != MAGIC:
            self.close()
            raise McapReadError(f"{self.path}: not an MCAP file (bad magic)")
        self.size = self.path.stat().st_size
        if not self._read_summary():
            self._scan()
        times = [c for c in self.chunks if c.start_ns <= c.end_ns]
        if times:
            self.start_ns = min(c.start_ns for c in times)
            self.end_ns = max(c.end_ns for c in times)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    @property
    def f(self) -> BinaryIO:
        if self._f is None:
            raise McapReadError(f"{self.path}: not open")
        return self._f

    # --- summary (a complete file) ---------------------------------------------------------

    def _read_summary(self) -> bool:
        """Schemas, channels, chunk index and statistics from the summary; False without one."""
        f = self.f
        if self.size < len(MAGIC) * 2 + FOOTER_SIZE:
            return False
        f.seek(self.size - FOOTER_SIZE)
        tail = f.read(FOOTER_SIZE)
        if tail[-len(MAGIC) :] != MAGIC or tail[0] != OP_FOOTER:
            return False
        summary_start = _u64(tail, RECORD_PREFIX)
        if summary_start == 0:
            return False
        f.seek(summary_start)
        summary = f.read(self.size - FOOTER_SIZE - summary_start)
        statistics = None
        chunk_indexes = []
        o = 0
        while o + RECORD_PREFIX <= len(summary):
            op, n = summary[o], _u64(summary, o + 1)
            body = summary[o + RECORD_PREFIX : o + RECORD_PREFIX + n]
            o += RECORD_PREFIX + n
            if op == OP_SCHEMA:
                schema = _parse_schema(body)
                self.schemas[schema.id] = schema
            elif op == OP_CHANNEL:
                channel = _parse_channel(body)
                self.channels[channel.id] = channel
            elif op == OP_CHUNK_INDEX:
                chunk_indexes.append(body)
            elif op == OP_STATISTICS:
                statistics = body
        if not chunk_indexes or statistics is None:
            return False  # unchunked or without statistics: scan for times and counts
        for body in chunk_indexes:
            start, end, chunk_offset = (_u64(body, i) for i in (0, 8, 16))
            index_size = _u32(body, 32)
            offsets = {_u16(body, 36 + i): _u64(body, 38 + i) for i in range(0, index_size, 10)}
            o = 36 + index_size + 8  # message_index_length
            compression, o = _string(body, o)
            compressed_size = _u64(body, o)
            records_at = chunk_offset + RECORD_PREFIX + CHUNK_HEADER + 4 + len(compression.encode()) + 8
            in_order = None if offsets else False  # looked up from the message indexes when read
            info = ChunkInfo(records_at, compressed_size, start, end, compression, in_order, set(offsets), offsets)
            self.chunks.append(info)
        self.chunks.sort(key=lambda c: c.offset)
        # Statistics: message_count u64, schema_count u16, channel/attachment/metadata/chunk
        # counts u32 each, start and end times u64 (42 bytes), then the per-channel counts map.
        count_map_size = _u32(statistics, 42)
        self.counts = {_u16(statistics, 46 + i): _u64(statistics, 48 + i) for i in range(0, count_map_size, 10)}
        self.indexed = True
        return True

    def _chunk_in_order(self, index_offsets: dict[int, int]) -> bool:
        """Whether the chunk's message indexes show log times in record order."""
        entries: list[tuple[int, int]] = []  # (offset in chunk, log time)
        f = self.f
        for offset in index_offsets.values():
            f.seek(offset)
            head = f.read(RECORD_PREFIX)
            if len(head) < RECORD_PREFIX or head[0] != OP_MESSAGE_INDEX:
                return False
            body = f.read(_u64(head, 1))
            size = _u32(body, 2)
            entries.extend((_u64(body, 6 + i + 8), _u64(body, 6 + i)) for i in range(0, size, 16))
        entries.sort()
        return all(entries[i][1] <= entries[i + 1][1] for i in range(len(entries) - 1))

    # --- scan (no usable summary) ----------------------------------------------------------

    def _scan(self) -> None:
        """One pass over the records: schemas, channels, chunks (with times, order) and counts."""
        f = self.f
        self.schemas.clear()
        self.channels.clear()
        self.chunks.clear()
        self.counts = {}
        offset = len(MAGIC)
        f.seek(offset)
        loose: ChunkInfo | None = None  # the current run of top-level messages
        while True:
            head = f.read(RECORD_PREFIX)
            if len(head) < RECORD_PREFIX:
                self.truncated = True
                break
            op, n = head[0], _u64(head, 1)
            body_at = offset + RECORD_PREFIX
            if body_at + n > self.size:
                self.truncated = True
                if op == OP_CHUNK:  # cut off mid-chunk: the complete messages in it still count
                    self._scan_chunk(body_at, self.size - body_at)
                break
            if op == OP_MESSAGE:
                body = f.read(MESSAGE_HEADER)
                channel_id, log_time = _u16(body, 0), _u64(body, 6)
                if loose is None:
                    loose = ChunkInfo(offset, 0, log_time, log_time, None, True)
                    self.chunks.append(loose)
                loose.in_order &= log_time >= loose.end_ns
                loose.start_ns, loose.end_ns = min(loose.start_ns, log_time), max(loose.end_ns, log_time)
                loose.length = body_at + n - loose.offset
                loose.channels.add(channel_id)
                self.counts[channel_id] = self.counts.get(channel_id, 0) + 1
                f.seek(body_at + n)
            else:
                if op not in (OP_SCHEMA, OP_CHANNEL):
                    loose = None  # a run of top-level messages ends at any other record
                if op == OP_SCHEMA:
                    schema = _parse_schema(f.read(n))
                    self.schemas[schema.id] = schema
                elif op == OP_CHANNEL:
                    channel = _parse_channel(f.read(n))
                    self.channels[channel.id] = channel
                elif op == OP_CHUNK:
                    self._scan_chunk(body_at, n)
                elif op == OP_DATA_END:
                    break
                f.seek(body_at + n)
            offset = body_at + n

    def _scan_chunk(self, body_at: int, available: int) -> None:
        f = self.f
        f.seek(body_at)
        head = f.read(CHUNK_HEADER + 4)
        if len(head) < CHUNK_HEADER + 4:
            return
        name_length = _u32(head, CHUNK_HEADER)
        compression = f.read(name_length).decode()
        size_bytes = f.read(8)
        if len(size_bytes) < 8:
            return
        records_at = body_at + CHUNK_HEADER + 4 + name_length + 8
        length = min(_u64(size_bytes, 0), body_at + available - records_at)
        info = ChunkInfo(records_at, length, 1 << 63, 0, compression, True)
        last = -1
        for op, payload, _ in self._records(info, want_data=False):
            if op == OP_SCHEMA:
                schema = _parse_schema(payload)
                self.schemas[schema.id] = schema
            elif op == OP_CHANNEL:
                channel = _parse_channel(payload)
                self.channels[channel.id] = channel
            elif op == OP_MESSAGE:
                channel_id, log_time = _u16(payload, 0), _u64(payload, 6)
                info.in_order &= log_time >= last
                last = max(last, log_time)
                info.start_ns, info.end_ns = min(info.start_ns, log_time), max(info.end_ns, log_time)
                info.channels.add(channel_id)
                self.counts[channel_id] = self.counts.get(channel_id, 0) + 1
        if info.channels:
            self.chunks.append(info)

    # --- messages --------------------------------------------------------------------------

    def _records(
        self,
        chunk: ChunkInfo,
        want_data: bool,
        channels: Collection[int] | None = None,
        start_ns: int = 0,
        stop_ns: int = 1 << 63,
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(opcode, body, data) of each complete record in the chunk. For a message the body is
        its 22-byte header and data its payload (b"" outside the selection: skipped, never read;
        kept apart so a megabyte image is not copied again); other records have data b"".
        A record cut off ends the chunk."""
        stream = _Stream(self.f, chunk.offset, chunk.length, chunk.compression or "")
        while True:
            head = stream.read(RECORD_PREFIX)
            if len(head) < RECORD_PREFIX:
                return
            op, n = head[0], _u64(head, 1)
            if op == OP_MESSAGE and n >= MESSAGE_HEADER:
                header = stream.read(MESSAGE_HEADER)
                if len(header) < MESSAGE_HEADER:
                    return
                channel_id, log_time = _u16(header, 0), _u64(header, 6)
                selected = want_data and (channels is None or channel_id in channels) and start_ns <= log_time < stop_ns
                if selected:
                    data = stream.read(n - MESSAGE_HEADER)
                    if len(data) < n - MESSAGE_HEADER:
                        return
                    yield op, header, data
                else:
                    if not stream.skip(n - MESSAGE_HEADER):
                        return
                    yield op, header, b""
            elif op in (OP_SCHEMA, OP_CHANNEL):
                body = stream.read(n)
                if len(body) < n:
                    return
                yield op, body, b""
            elif chunk.compression is None and op != OP_MESSAGE:
                return  # the end of a run of top-level messages
            elif not stream.skip(n):
                return

    def messages(
        self, channels: Collection[int], start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Messages of the channels with start_ns <= log time < stop_ns, in log-time order.

        Each chunk is read once. A message is held back only until no chunk still to be read
        (nor, in a chunk not known to be in order, a later record of it) can be earlier.
        """
        lo = 0 if start_ns is None else start_ns
        hi = (1 << 63) if stop_ns is None else stop_ns
        wanted = set(channels)
        todo = [
            c for c in self.chunks if c.start_ns < hi and c.end_ns >= lo and (not c.channels or c.channels & wanted)
        ]
        todo.sort(key=lambda c: (c.start_ns, c.offset))
        pending: list[tuple[int, int, RawMessage]] = []  # (log time, arrival, message) heap
        arrival = 0
        for i, chunk in enumerate(todo):
            if chunk.in_order is None:
                chunk.in_order = self._chunk_in_order(chunk.index_offsets)
            later_start = min((c.start_ns for c in todo[i + 1 :]), default=1 << 63)
            for op, header, data in self._records(chunk, True, wanted, lo, hi):
                if op != OP_MESSAGE:
                    continue
                channel_id, log_time = _u16(header, 0), _u64(header, 6)
                if channel_id not in wanted or not lo <= log_time < hi:
                    continue
                heapq.heappush(pending, (log_time, arrival, RawMessage(channel_id, log_time, data)))
                arrival += 1
                if chunk.in_order:
                    watermark = min(log_time, later_start)
                    while pending and pending[0][0] <= watermark:
                        yield heapq.heappop(pending)[2]
            while pending and pending[0][0] <= later_start:
                yield heapq.heappop(pending)[2]
        while pending:
            yield heapq.heappop(pending)[2]
