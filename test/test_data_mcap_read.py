"""The MCAP reader's two ways through a chunk agree: an uncompressed chunk with message indexes is
read from its indexes (only the wanted records), any other chunk is walked record by record.
Files are written by the `mcap` library; the expected messages come from its own reader."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap.writer import CompressionType, IndexType, Writer

from psi0_ros.data.bags import BagError, BagReader
from psi0_ros.data.mcap_read import McapFile, McapReadError

TOPICS = ("/joint_states", "/imu/data", "/camera/ego/image_raw", "/psi0/upper_body_command")
SIZES = (600, 320, 90_000, 400)  # payload bytes: the camera's are above VIEW_BYTES (handed on as views)


def _write(
    path: Path, compression: CompressionType, index_types: IndexType = IndexType.ALL, ties: bool = False
) -> Path:
    """Four channels, chunks of a few interleaved messages whose log times are not in record
    order (a recorder's receive order), and a stretch where chunks overlap in time. ties: the
    four channels share their log times (else every log time is unique)."""
    rng = random.Random(3)
    records = []
    for i in range(400):
        channel = i % 4
        log_time = 1_000_000 + (i // 4) * 10_000 + rng.choice((0, 0, 3_000, -3_000)) + (0 if ties else channel)
        if 200 <= i < 240:
            log_time -= 150_005  # late arrivals: chunks overlap in time
        payload = bytes([i % 251]) * SIZES[channel]
        records.append((channel, log_time, payload))
    with path.open("wb") as stream:
        writer = Writer(stream, chunk_size=200_000, compression=compression, index_types=index_types)
        writer.start(profile="ros2", library="test")
        schema = writer.register_schema("demo/msg/Blob", "ros2msg", b"uint8[] data")
        channels = [writer.register_channel(topic, "cdr", schema) for topic in TOPICS]
        for sequence, (channel, log_time, payload) in enumerate(records):
            writer.add_message(channels[channel], log_time, payload, log_time, sequence)
        writer.finish()
    return path


def _expected(path: Path, start_ns: dict[int, int], stop_ns: int) -> list[tuple[int, int, bytes]]:
    """(channel, log time, payload) by the mcap library, in log-time order (ties in file order)."""
    with path.open("rb") as f:
        found = [
            (message.log_time, n, channel.id, message.data)
            for n, (_, channel, message) in enumerate(make_reader(f).iter_messages(log_time_order=False))
            if channel.id in start_ns and start_ns[channel.id] <= message.log_time < stop_ns
        ]
    return [(channel, log_time, data) for log_time, _, channel, data in sorted(found, key=lambda m: m[:2])]


def _read(path: Path, start_ns: dict[int, int], stop_ns: int) -> list[tuple[int, int, bytes]]:
    with McapFile(path) as f:
        first = min(start_ns.values())
        later = {c: t for c, t in start_ns.items() if t > first}
        return [(c, t, bytes(data)) for c, t, data in f.messages(start_ns, first, stop_ns, later)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mcap_read")
    return {
        "indexed": _write(root / "indexed.mcap", CompressionType.NONE),
        "zstd": _write(root / "zstd.mcap", CompressionType.ZSTD),
        "no_message_index": _write(root / "chunks_only.mcap", CompressionType.NONE, IndexType.CHUNK),
        "indexed_ties": _write(root / "indexed_ties.mcap", CompressionType.NONE, ties=True),
        "zstd_ties": _write(root / "zstd_ties.mcap", CompressionType.ZSTD, ties=True),
    }


@pytest.mark.parametrize("kind", ["indexed", "zstd", "no_message_index"])
@pytest.mark.parametrize(
    "start_ns",
    [
        {1: 0, 2: 0, 3: 0, 4: 0},
        {1: 1_500_000, 2: 1_500_000, 3: 1_500_000, 4: 1_100_000},  # one channel from earlier
        {3: 1_900_000, 4: 1_200_000},  # the camera only from late on
    ],
)
def test_each_way_reads_what_the_mcap_library_reads(files, kind, start_ns):
    stop_ns = 1_950_000
    got = _read(files[kind], start_ns, stop_ns)
    assert got, "the selection is not empty"
    assert got == _expected(files[kind], start_ns, stop_ns)


def test_the_index_and_the_walk_order_equal_log_times_alike(files):
    """Messages with equal log times (the four channels share them) come in one order either way:
    as the file holds them within a chunk, and chunk by chunk (by their start) across chunks."""
    start_ns = {1: 0, 2: 0, 3: 0, 4: 0}
    indexed, walked = _read(files["indexed_ties"], start_ns, 1 << 62), _read(files["zstd_ties"], start_ns, 1 << 62)
    assert len(indexed) == 400 and indexed == walked
    assert sorted(indexed, key=lambda m: m[1]) == indexed


def test_an_index_that_does_not_match_its_records_is_an_error(files, tmp_path):
    """A message index pointing at the wrong record fails the read; nothing wrong is returned."""
    path = tmp_path / "bad_index.mcap"
    data = bytearray(files["indexed"].read_bytes())
    with files["indexed"].open("rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[0]
    at = chunk.message_index_offsets[1] + 9 + 2 + 4  # channel 1's first (log time, offset) entry
    data[at + 8 : at + 16] = (int.from_bytes(data[at + 8 : at + 16], "little") + 1).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with McapFile(path) as f, pytest.raises(McapReadError, match="does not match its records"):
        list(f.messages([1]))
    with BagReader(path) as reader, pytest.raises(BagError, match="read failed"):
        list(reader.read([TOPICS[0]]))


def test_an_index_naming_one_record_twice_is_not_used(files, tmp_path):
    """Channel 1's second index entry of the first chunk rewritten to name its first record: the
    chunk is walked instead, and every message is read once."""
    path = tmp_path / "twice.mcap"
    data = bytearray(files["indexed"].read_bytes())
    with files["indexed"].open("rb") as f:
        chunk = make_reader(f).get_summary().chunk_indexes[0]
    at = chunk.message_index_offsets[1] + 9 + 2 + 4  # channel 1's (log time, offset) entries
    assert int.from_bytes(data[at - 4 : at], "little") >= 32, "two entries at least"
    data[at + 16 : at + 32] = data[at : at + 16]
    path.write_bytes(bytes(data))
    start_ns = {1: 0, 2: 0, 3: 0, 4: 0}
    assert _read(path, start_ns, 1 << 62) == _expected(files["indexed"], start_ns, 1 << 62)
