"""Bags as real recorders write them (issue 12), written here by independent writers (the `mcap`
library, raw sqlite3): CompressedImage, mcap without message index, unindexed and out of order,
cut off mid-file, split without metadata.yaml, replayed EpisodeEvents, bounded memory."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.independent_bags import (
    SOURCE_EPISODES,
    SOURCE_SMALL,
    Message,
    finish_db3,
    read_messages,
    small_source_bag,
    write_db3,
    write_mcap,
)
from mcap.writer import CompressionType, IndexType
from PIL import Image

from psi0_ros.constants import TOPIC_EPISODE_EVENTS, TOPIC_IMAGE
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.episodes import EventType
from psi0_ros.data.hdf5 import read_episode
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag
from psi0_ros.data.typestore import make_typestore
from psi0_ros.data.validate import inspect_paths

SMALL, EPISODES = SOURCE_SMALL, SOURCE_EPISODES
NAMES = ("rec_episode_000000.hdf5", "rec_episode_000001.hdf5")
KEYS = ("timestamps", "action", "observations/state", "observations/joint_positions", "observations/imu/orientation")
COMPRESSED_IMAGE_DEF = """std_msgs/Header header
string format
uint8[] data
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[list[Message], Path]:
    """The messages of a two-episode teleop bag and its reference conversion."""
    return small_source_bag(tmp_path_factory.mktemp("source"))


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {key: f[key][()] for key in KEYS}


def _assert_same(out: Path, reference: Path, names: tuple[str, ...] = NAMES) -> None:
    for name in names:
        a, b = _arrays(out / name), _arrays(reference / name)
        for key in KEYS:
            assert np.array_equal(a[key], b[key]), (name, key)


def _convert(bag: Path, out: Path):
    return convert_bags([bag], out, ConvertConfig(), workers=1)


def _compressed(messages: list[Message], fmt: str) -> tuple[list[Message], list[bytes]]:
    """The camera stream as image_transport's compressed plugin publishes it."""
    ts = make_typestore()
    out, encoded = [], []
    for m in messages:
        if m.topic != TOPIC_IMAGE:
            out.append(m)
            continue
        image = ts.deserialize_cdr(m.data, "sensor_msgs/msg/Image")
        rgb = np.asarray(image.data, dtype=np.uint8).reshape(image.height, image.width, 3)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=fmt.upper(), **({"quality": 80} if fmt == "jpeg" else {}))
        data = buffer.getvalue()
        encoded.append(data)
        msg = ts.types["sensor_msgs/msg/CompressedImage"](
            header=image.header, format=f"rgb8; {fmt} compressed bgr8", data=np.frombuffer(data, np.uint8)
        )
        payload = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
        out.append(
            Message(
                f"{TOPIC_IMAGE}/compressed",
                "sensor_msgs/msg/CompressedImage",
                COMPRESSED_IMAGE_DEF,
                m.log_time_ns,
                payload,
            )
        )
    return out, encoded


def test_compressed_jpeg_is_kept_byte_for_byte(source, tmp_path):
    messages, reference = source
    compressed, recorded = _compressed(messages, "jpeg")
    bag = write_mcap(tmp_path / "rec" / "rec_0.mcap", compressed)
    summary = _convert(bag.parent, tmp_path / "out")
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(tmp_path / "out", reference)
    episode = read_episode(tmp_path / "out" / NAMES[0])
    reference_episode = read_episode(reference / NAMES[0])
    frames = episode.images["ego"]
    assert len(frames) == len(reference_episode.images["ego"])
    assert all(frame in recorded for frame in frames)  # the recorder's own JPEG bytes, not re-encoded
    assert "as recorded" in episode.attrs["alignment"]["image_format"]


def test_compressed_png_is_decoded_and_stored_as_jpeg(source, tmp_path):
    messages, reference = source
    compressed, recorded = _compressed(messages, "png")
    bag = write_mcap(tmp_path / "rec" / "rec_0.mcap", compressed)
    summary = _convert(bag.parent, tmp_path / "out")
    assert summary.ok, summary.to_dict()
    episode = read_episode(tmp_path / "out" / NAMES[0])
    reference_episode = read_episode(reference / NAMES[0])
    # PNG is lossless: the frames are the reference's pixels, JPEG-encoded at the same quality.
    assert episode.images["ego"] == reference_episode.images["ego"]
    raw = convert_bags([bag.parent], tmp_path / "raw", ConvertConfig(image_format="raw"), workers=1)
    assert raw.ok
    pixels = read_episode(tmp_path / "raw" / NAMES[0]).images["ego"]
    decoded = {np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).tobytes() for png in recorded}
    assert pixels.shape[1:] == (32, 48, 3) and all(p.tobytes() in decoded for p in pixels)


@pytest.mark.parametrize(
    "layout",
    ["chunk index, no message index", "no index at all", "unchunked, out of order", "lz4 chunks"],
)
def test_mcap_layouts_other_writers_produce(source, tmp_path, layout):
    messages, reference = source
    if layout == "chunk index, no message index":
        write_mcap(tmp_path / "rec" / "rec_0.mcap", messages, index_types=IndexType.CHUNK)
    elif layout == "no index at all":
        write_mcap(tmp_path / "rec" / "rec_0.mcap", messages, index_types=IndexType.NONE)
    elif layout == "lz4 chunks":
        write_mcap(tmp_path / "rec" / "rec_0.mcap", messages, compression=CompressionType.LZ4)
    else:
        shuffled = list(messages)
        rng = np.random.default_rng(3)
        for i in rng.choice(len(shuffled) - 1, size=len(shuffled) // 3, replace=False):
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]  # neighbours swapped: out of time order
        assert any(a.log_time_ns > b.log_time_ns for a, b in zip(shuffled, shuffled[1:], strict=False))
        write_mcap(tmp_path / "rec" / "rec_0.mcap", shuffled, use_chunking=False)
    summary = _convert(tmp_path / "rec", tmp_path / "out")
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(tmp_path / "out", reference)
    report = inspect_paths([tmp_path / "rec"])[0]
    assert report.kind == "bag" and report.valid, report.to_dict()
    assert len(report.summary["episodes"]) == 2


def test_mcap_cut_off_mid_file_keeps_its_complete_episodes(source, tmp_path):
    messages, reference = source
    bag = write_mcap(tmp_path / "rec" / "rec_0.mcap", messages, chunk_size=16 * 1024)
    stop_1 = next(
        m.log_time_ns
        for m in messages
        if m.topic == TOPIC_EPISODE_EVENTS and m.log_time_ns > messages[0].log_time_ns + 2_000_000_000
    )
    # Cut the file where the recorder was 0.2 s into episode 1 (after its START, before its STOP).
    whole = bag.read_bytes()
    written = write_mcap(tmp_path / "probe.mcap", [m for m in messages if m.log_time_ns < stop_1 - 400_000_000])
    bag.write_bytes(whole[: written.stat().st_size - 100])
    summary = _convert(bag.parent, tmp_path / "out")
    by_index = {r.episode_index: r for r in summary.episodes}
    assert by_index[0].status == "ok", summary.to_dict()
    assert by_index[1].status == "error" and "cut short" in by_index[1].error and str(bag) in by_index[1].error
    _assert_same(tmp_path / "out", reference, NAMES[:1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [NAMES[0]]
    report = inspect_paths([bag.parent])[0]
    assert not report.valid and any("cut short" in e for e in report.errors)
    assert any("not finished" in w for w in report.warnings)


def test_fewer_messages_than_declared_is_an_error_naming_the_file(source, tmp_path):
    """metadata.yaml (what ros2 bag writes) declares more than the storage file holds."""
    messages, _ = source
    bag = tmp_path / "rec"
    write_synthetic_bag(bag, SyntheticBag(duration_s=3.0, episodes=EPISODES, **SMALL))
    storage = next(bag.glob("*.mcap"))
    kept = [m for m in messages if m.log_time_ns < messages[0].log_time_ns + 1_500_000_000]
    write_mcap(storage, kept)  # a complete, valid file holding only the first half
    summary = _convert(bag, tmp_path / "out")
    bag_errors = [r.error for r in summary.episodes if r.episode_index is None]
    assert bag_errors and str(bag) in bag_errors[0] and "declares" in bag_errors[0], summary.to_dict()
    assert not any("no frames" in (r.error or "") for r in summary.episodes)
    report = inspect_paths([bag])[0]
    assert not report.valid and any("declares" in e and str(bag) in e for e in report.errors)


def test_split_bag_without_metadata_reads_as_one_bag_in_file_order(source, tmp_path):
    messages, reference = source
    # Split inside episode 0: its START is in the first file, its STOP in the second.
    cut = messages[0].log_time_ns + 800_000_000
    names = [f"rec_{i}.mcap" for i in range(11)]
    write_mcap(tmp_path / "rec" / names[0], [m for m in messages if m.log_time_ns < cut])
    # Files sort as rec_0, rec_1, ..., rec_10 (numeric, not text order): empty middle files.
    for name in names[1:-1]:
        write_mcap(tmp_path / "rec" / name, [])
    write_mcap(tmp_path / "rec" / names[-1], [m for m in messages if m.log_time_ns >= cut])
    summary = _convert(tmp_path / "rec", tmp_path / "out")
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(tmp_path / "out", reference)
    report = inspect_paths([tmp_path / "rec"])[0]
    assert report.kind == "bag" and report.valid, report.to_dict()
    # A directory above it: inspect finds the bag (and the converted episodes) as convert would.
    reports = inspect_paths([tmp_path])
    assert [r.path for r in reports if r.kind == "bag"] == [str(tmp_path / "rec")]
    assert len([r for r in reports if r.kind == "episode"]) == 2 and all(r.valid for r in reports)


def test_raw_sqlite3_bag_converts_like_the_reference(source, tmp_path):
    messages, reference = source
    finish_db3(write_db3(tmp_path / "rec" / "rec_0.db3", messages))
    summary = _convert(tmp_path / "rec", tmp_path / "out")
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(tmp_path / "out", reference)
    assert inspect_paths([tmp_path / "rec"])[0].valid


def test_replayed_episode_events_create_no_episodes(source, tmp_path):
    messages, reference = source
    ts = make_typestore()
    t0 = messages[0].log_time_ns
    event_def = next(m.msgdef for m in messages if m.topic == TOPIC_EPISODE_EVENTS)
    old_session = t0 - 3600 * 10**9  # an hour before this recording

    def event(stamp_ns: int, kind: EventType, index: int, received_ns: int) -> Message:
        T = ts.types
        header = T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=""
        )
        msg = T["psi0_ros/msg/EpisodeEvent"](header=header, type=int(kind), episode_index=index, task="old")
        data = bytes(ts.serialize_cdr(msg, "psi0_ros/msg/EpisodeEvent"))
        return Message(TOPIC_EPISODE_EVENTS, "psi0_ros/msg/EpisodeEvent", event_def, received_ns, data)

    # The latched last events of an earlier session arrive as the recorder subscribes ...
    replays = [
        event(old_session, EventType.START, 7, t0 + 1_000),
        event(old_session + 10**9, EventType.STOP, 7, t0 + 2_000),
        event(old_session + 10**9, EventType.START, 8, t0 + 3_000),
    ]
    # ... and this session's START is delivered twice (a second subscription match).
    first_start = next(m for m in messages if m.topic == TOPIC_EPISODE_EVENTS)
    again = replace(first_start, log_time_ns=first_start.log_time_ns + 5_000_000)
    bag = write_mcap(tmp_path / "rec" / "rec_0.mcap", sorted([*messages, *replays, again], key=lambda m: m.log_time_ns))
    summary = _convert(bag.parent, tmp_path / "out")
    assert summary.ok and [r.episode_index for r in summary.episodes] == [0, 1], summary.to_dict()
    _assert_same(tmp_path / "out", reference)
    report = inspect_paths([bag.parent])[0]
    assert report.valid and any("replayed" in w for w in report.warnings)


def test_late_delivered_episode_events_keep_their_own_stamps(source, tmp_path):
    """EpisodeEvents the recorder got only when its subscription matched again (a restarted
    publisher; transient-local delivery): received seconds after their stamps, and more of them
    late than on time. Each event takes effect at its own stamp, so the episodes are the
    reference's exactly."""
    messages, reference = source
    t0 = messages[0].log_time_ns
    events = [m for m in messages if m.topic == TOPIC_EPISODE_EVENTS]
    assert len(events) == 6  # START, STOP, SUCCESS of episodes 0 and 1
    late = [replace(m, log_time_ns=t0 + 7_000_000_000 + i) for i, m in enumerate(events[:4])]
    rest = [m for m in messages if m not in events[:4]]
    bag = write_mcap(tmp_path / "rec" / "rec_0.mcap", sorted([*rest, *late], key=lambda m: m.log_time_ns))
    summary = _convert(bag.parent, tmp_path / "out")
    assert summary.ok and [(r.episode_index, r.outcome) for r in summary.episodes] == [(0, "success"), (1, "success")]
    _assert_same(tmp_path / "out", reference)
    for name in NAMES:
        with h5py.File(tmp_path / "out" / name) as a, h5py.File(reference / name) as b:
            assert (
                a.attrs["start_time_ns"] == b.attrs["start_time_ns"]
                and a.attrs["stop_time_ns"] == b.attrs["stop_time_ns"]
            )


def _chunk_holding(bag: Path, log_time_ns: int):
    from mcap.reader import make_reader

    with bag.open("rb") as f:
        indexes = make_reader(f).get_summary().chunk_indexes
    return next(c for c in indexes if c.message_start_time <= log_time_ns <= c.message_end_time)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_mcap_killed_mid_chunk_after_the_outcome(source, tmp_path, compression):
    """The recorder dies while writing the chunk that holds episode 0's SUCCESS (after its STOP).
    Uncompressed, the SUCCESS is still in the file and is read; in a zstd chunk cut inside its
    only block it is gone, and the summary says the outcome may have been lost."""
    messages, reference = source
    kind = CompressionType.NONE if compression == "none" else CompressionType.ZSTD
    bag = write_mcap(tmp_path / "rec" / "rec_0.mcap", messages, chunk_size=64 * 1024, compression=kind)
    success = [m for m in messages if m.topic == TOPIC_EPISODE_EVENTS][2]
    chunk = _chunk_holding(bag, success.log_time_ns)
    assert chunk.message_start_time < success.log_time_ns < chunk.message_end_time
    whole = bag.read_bytes()
    if compression == "none":  # cut right after the SUCCESS record
        cut = whole.index(success.data, chunk.chunk_start_offset) + len(success.data) + 10
    else:
        cut = chunk.chunk_start_offset + chunk.chunk_length // 2
    bag.write_bytes(whole[:cut])
    summary = _convert(bag.parent, tmp_path / "out")
    assert [(r.episode_index, r.status) for r in summary.episodes] == [(0, "ok")], summary.to_dict()
    result = summary.episodes[0]
    with h5py.File(tmp_path / "out" / NAMES[0]) as f:
        outcome, flags = f.attrs["outcome"], list(f.attrs["flags"])
    if compression == "none":
        assert result.outcome == outcome == "success" and not result.flags, summary.to_dict()
    else:
        assert result.outcome == outcome == "unknown"
        lost = [flag for flag in result.flags if flag.startswith("outcome_lost")]
        assert len(lost) == 1 and str(bag) in lost[0] and lost[0] in flags, result.flags
    _assert_same(tmp_path / "out", reference, NAMES[:1])
    report = inspect_paths([bag.parent])[0]
    episodes = report.summary["episodes"]
    assert [e["outcome"] for e in episodes] == ["success" if compression == "none" else "unknown"]
    assert any(f.startswith("outcome_lost") for f in episodes[0]["flags"]) == (compression == "zstd")


MEMORY_PROBE = """
import resource, sys
from pathlib import Path
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = convert_bags([Path(sys.argv[1])], Path(sys.argv[2]), ConvertConfig(), workers=1)
assert summary.ok, summary.to_dict()
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_a_single_huge_chunk_does_not_grow_memory_with_its_size(tmp_path):
    """One uncompressed 150 MB chunk of raw 640x480 images: the converter's peak memory grows by
    much less than the chunk (each chunk streamed once per episode, not held in memory)."""
    spec = SyntheticBag(duration_s=5.0, episodes=(SyntheticEpisode(0.5, 4.5),), joint_states=StreamSpec(100.0))
    write_synthetic_bag(tmp_path / "src", spec)
    bag = write_mcap(
        tmp_path / "huge" / "huge_0.mcap",
        read_messages(tmp_path / "src"),
        chunk_size=1 << 40,
        compression=CompressionType.NONE,
    )
    chunk_kib = bag.stat().st_size // 1024
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(bag.parent), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    before_kib, peak_kib = map(int, probe.stdout.split())
    assert peak_kib - before_kib < chunk_kib // 2, (before_kib, peak_kib, chunk_kib)
