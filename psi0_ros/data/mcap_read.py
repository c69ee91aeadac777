"""Reading MCAP storage files the way recorders really leave them (https://mcap.dev/spec).

rosbag2's and other writers' files may lack what an indexed reader needs: chunks without message
indexes, unchunked files whose messages are out of time order, files cut off mid-chunk by a
killed recorder (no summary, no footer). This reader uses the summary when the file has a valid
one and otherwise scans the records once; it reads every complete message, yields them in
log-time order, and holds memory to one message at a time for chunks known to be in order
(otherwise to the selected messages of one chunk). `truncated` says when the file ends early.

An uncompressed chunk with message indexes (what rosbag2 and the mcap library write by default)
is read from its indexes: the wanted messages are found there and only their records are read,
adjacent ones together (no walk over every record of the chunk). Everything else
(compressed chunks, chunks without indexes, files scanned for lack of a summary) is walked
record by record.
"""

from __future__ import annotations

import bisect
import heapq
import os
import struct
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_DATA_END = 0x07, 0x08, 0x0B, 0x0F
RECORD_PREFIX = 9  # opcode u8 + length u64
MESSAGE_HEADER = 22  # channel_id u16, sequence u32, log_time u64, publish_time u64
MESSAGE_RECORD = struct.Struct("<BQHIQ")  # opcode, length, then the header's channel_id, sequence, log_time
INDEX_ENTRY = struct.Struct("<QQ")  # a MessageIndex entry: log_time, offset of the record in the chunk
# A ChunkIndex: message start and end time, chunk offset and length, bytes of the map that follows
CHUNK_INDEX_HEAD = struct.Struct("<QQQQI")
INDEX_OFFSET = struct.Struct("<HQ")  # an entry of that map: channel id, offset of its MessageIndex record
CHUNK_HEADER = 28  # message_start_time u64, message_end_time u64, uncompressed_size u64, crc u32
FOOTER_SIZE = RECORD_PREFIX + 20 + len(MAGIC)  # footer record (8 + 8 + 4 bytes) and the magic
READ_BLOCK = 1 << 20  # bytes of compressed chunk data fed to a decompressor at a time
# Reading an uncompressed chunk from its indexes: a record of at least VIEW_BYTES (a camera frame)
# is read on its own and its payload handed on as a view of that read (no copy; reads of one
# size, so the allocator reuses the memory of the previous frame); adjacent smaller records are
# read together, up to RUN_BYTES, and each payload copied out (a decoder's numpy views of a
# joint state then keep its own 2 KB alive, not the whole read).
RUN_BYTES = 1 << 20
VIEW_BYTES = 64 << 10
END_OF_TIME = 1 << 63  # exclusive upper bound of log times when none is given


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
    index_length: int = 0  # bytes of all the chunk's MessageIndex records (they follow the chunk)


# A message as messages() yields it: (channel id, log time [ns], payload). The payload is bytes,
# or a memoryview for a large one read from an indexed chunk (see VIEW_BYTES).
RawMessage = tuple[int, int, bytes | memoryview]


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
            start, end, chunk_offset, _, index_size = CHUNK_INDEX_HEAD.unpack_from(body)
            if index_size % INDEX_OFFSET.size or 36 + index_size > len(body):
                return False  # a damaged chunk index: scan the records instead
            offsets = dict(INDEX_OFFSET.iter_unpack(body[36 : 36 + index_size]))
            index_length = _u64(body, 36 + index_size)
            compression, o = _string(body, 36 + index_size + 8)
            compressed_size = _u64(body, o)
            records_at = chunk_offset + RECORD_PREFIX + CHUNK_HEADER + 4 + len(compression.encode()) + 8
            in_order = None if offsets else False  # looked up from the message indexes when read
            info = ChunkInfo(
                records_at, compressed_size, start, end, compression, in_order, set(offsets), offsets, index_length
            )
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
        for op, payload, _ in self._records(info):
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
        self, chunk: ChunkInfo, first_ns: Mapping[int, int] | None = None, stop_ns: int = END_OF_TIME
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """(opcode, body, data) of each complete record in the chunk, walked one by one. For a
        message the body is its 22-byte header and data its payload when it is selected (its
        channel in first_ns and first_ns[channel] <= log time < stop_ns), else b"" (skipped,
        never read); other records have data b"". A record cut off ends the chunk."""
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
                first = first_ns.get(_u16(header, 0)) if first_ns else None
                if first is not None and first <= _u64(header, 6) < stop_ns:
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

    def _walked(self, chunk: ChunkInfo, first_ns: Mapping[int, int], stop_ns: int) -> Iterator[RawMessage]:
        """The chunk's selected messages in record order, walking its records."""
        for op, header, data in self._records(chunk, first_ns, stop_ns):
            if op != OP_MESSAGE:
                continue
            channel_id, log_time = _u16(header, 0), _u64(header, 6)
            first = first_ns.get(channel_id)
            if first is not None and first <= log_time < stop_ns:
                yield channel_id, log_time, data

    def messages(
        self,
        channels: Collection[int],
        start_ns: int | None = None,
        stop_ns: int | None = None,
        channel_start_ns: Mapping[int, int] | None = None,
    ) -> Iterator[RawMessage]:
        """Messages of the channels with start_ns <= log time < stop_ns, in log-time order (equal
        log times in record order within a chunk, and chunk by chunk, by their start time and
        offset, across chunks). channel_start_ns: a later start for some channels.

        Each chunk is read once. A message is held back only until no chunk still to be read
        (nor, in a chunk not known to be in order, a later record of it) can be earlier.
        """
        lo = 0 if start_ns is None else start_ns
        hi = END_OF_TIME if stop_ns is None else stop_ns
        later = channel_start_ns or {}
        first_ns = {c: max(lo, later.get(c, lo)) for c in channels}
        earliest = min(first_ns.values(), default=lo)
        todo = [
            c
            for c in self.chunks
            if c.start_ns < hi
            and (
                c.end_ns >= earliest
                if not c.channels
                else any(c.end_ns >= first_ns[ch] for ch in c.channels if ch in first_ns)
            )
        ]
        todo.sort(key=lambda c: (c.start_ns, c.offset))
        # later_starts[i]: the earliest a message of a chunk after todo[i] can be
        later_starts = [END_OF_TIME] * len(todo)
        for i in range(len(todo) - 2, -1, -1):
            later_starts[i] = min(todo[i + 1].start_ns, later_starts[i + 1])
        pending: list[tuple[int, int, int, bytes | memoryview]] = []  # (log time, arrival, channel, data) heap
        arrival = 0
        for chunk, later_start in zip(todo, later_starts, strict=True):
            indexed = self._indexed(chunk, first_ns, hi)
            if indexed is not None:
                # In log-time order already: straight through while nothing held back is earlier.
                for log_time, channel_id, data in indexed:
                    if not pending and log_time <= later_start:
                        yield channel_id, log_time, data
                    else:
                        heapq.heappush(pending, (log_time, arrival, channel_id, data))
                        arrival += 1
            else:
                if chunk.in_order is None:
                    chunk.in_order = self._chunk_in_order(chunk.index_offsets)
                for channel_id, log_time, data in self._walked(chunk, first_ns, hi):
                    heapq.heappush(pending, (log_time, arrival, channel_id, data))
                    arrival += 1
                    if chunk.in_order:
                        watermark = min(log_time, later_start)
                        while pending and pending[0][0] <= watermark:
                            log_time, _, channel_id, data = heapq.heappop(pending)
                            yield channel_id, log_time, data
            while pending and pending[0][0] <= later_start:
                log_time, _, channel_id, data = heapq.heappop(pending)
                yield channel_id, log_time, data
        while pending:
            log_time, _, channel_id, data = heapq.heappop(pending)
            yield channel_id, log_time, data

    # --- reading an uncompressed chunk from its message indexes ----------------------------

    def _indexed(
        self, chunk: ChunkInfo, first_ns: Mapping[int, int], stop_ns: int
    ) -> Iterator[tuple[int, int, bytes | memoryview]] | None:
        """(log time, channel, payload) of the chunk's selected messages in (log time, record)
        order, found in its message indexes; None where the chunk has none to use (compressed,
        not indexed, indexes unreadable): it is then walked record by record."""
        if chunk.compression != "" or not chunk.index_offsets or chunk.index_length <= 0:
            return None
        block_at = min(chunk.index_offsets.values())
        block = _read_at(self.f, block_at, chunk.index_length)
        rows: list[tuple[int, int, int]] = []  # (log time, record offset, channel) of the selected
        boundaries: list[int] = []  # where every indexed record of the chunk begins
        for channel, offset in chunk.index_offsets.items():
            entries = _message_index(block, offset - block_at, channel)
            if entries is None:
                return None
            first = first_ns.get(channel)
            for log_time, record in entries:
                boundaries.append(record)
                if first is not None and first <= log_time < stop_ns:
                    rows.append((log_time, record, channel))
        boundaries.sort()
        if any(a == b for a, b in zip(boundaries, boundaries[1:], strict=False)):
            return None  # two entries for one record: not an index to trust
        rows.sort()
        return self._indexed_messages(chunk, rows, boundaries)

    def _indexed_messages(
        self, chunk: ChunkInfo, rows: list[tuple[int, int, int]], boundaries: list[int]
    ) -> Iterator[tuple[int, int, bytes | memoryview]]:
        """The payloads of the selected records ((log time, chunk-relative offset, channel) rows
        in yield order), checked against their index entries. A record ends at the latest where
        the next indexed record begins (boundaries, sorted); adjacent small records are read
        together (see RUN_BYTES) when the rows are in record order."""
        ends = [
            boundaries[k] if (k := bisect.bisect_right(boundaries, at)) < len(boundaries) else chunk.length
            for _, at, _ in rows
        ]
        follows = all(rows[i][1] < rows[i + 1][1] for i in range(len(rows) - 1))
        buffer, view, buffer_at, buffer_end = b"", memoryview(b""), 0, 0
        for i, (log_time, at, channel_id) in enumerate(rows):
            end = ends[i]
            if not at < end <= chunk.length:
                raise self._index_mismatch(chunk, channel_id, log_time, at)
            if not buffer_at <= at or end > buffer_end:
                buffer_at, buffer_end = at, end
                if follows and end - at < VIEW_BYTES:
                    j = i + 1
                    while (
                        j < len(rows)
                        and rows[j][1] == ends[j - 1]
                        and ends[j] - rows[j][1] < VIEW_BYTES
                        and ends[j] - at <= RUN_BYTES
                    ):
                        buffer_end = ends[j]
                        j += 1
                buffer = _read_at(self.f, chunk.offset + at, buffer_end - at)
                view = memoryview(buffer)
            p = at - buffer_at
            if len(buffer) < p + MESSAGE_RECORD.size:
                raise self._index_mismatch(chunk, channel_id, log_time, at)
            op, n, channel, _, time = MESSAGE_RECORD.unpack_from(buffer, p)
            if op != OP_MESSAGE or channel != channel_id or time != log_time:
                raise self._index_mismatch(chunk, channel_id, log_time, at)
            if not MESSAGE_HEADER <= n <= len(buffer) - p - RECORD_PREFIX:
                raise self._index_mismatch(chunk, channel_id, log_time, at)
            start, stop = p + RECORD_PREFIX + MESSAGE_HEADER, p + RECORD_PREFIX + n
            yield log_time, channel_id, view[start:stop] if stop - start >= VIEW_BYTES else buffer[start:stop]

    def _index_mismatch(self, chunk: ChunkInfo, channel_id: int, log_time: int, at: int) -> McapReadError:
        return McapReadError(
            f"{self.path}: the message index of the chunk at byte {chunk.offset} does not match its records "
            f"(channel {channel_id}, log time {log_time}, record at {at})"
        )


def _message_index(block: bytes, at: int, channel: int) -> Iterator[tuple[int, int]] | None:
    """The (log time, record offset) entries of one channel's MessageIndex record at block[at:],
    or None where no such record is there."""
    if at < 0 or at + RECORD_PREFIX + 6 > len(block) or block[at] != OP_MESSAGE_INDEX:
        return None
    length, size = _u64(block, at + 1), _u32(block, at + RECORD_PREFIX + 2)
    entries_at = at + RECORD_PREFIX + 6
    if _u16(block, at + RECORD_PREFIX) != channel or size % 16 or 6 + size > length or entries_at + size > len(block):
        return None
    return INDEX_ENTRY.iter_unpack(block[entries_at : entries_at + size])


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    """Up to n bytes of the file at offset (fewer at its end)."""
    if hasattr(os, "pread"):
        return os.pread(f.fileno(), n, offset)
    f.seek(offset)
    return f.read(n)
