"""Bags recorded with rosbag2's own compression (`ros2 bag record --compression-mode file|message
--compression-format zstd`) convert exactly like the uncompressed bag.

The bags are laid out as rosbag2_compression writes them (its SequentialCompressionWriter and
zstd plugin): file mode compresses each closed storage file whole into one zstd frame named
<file>.zstd, lists those names in relative_file_paths and records compression_format zstd /
compression_mode FILE; message mode stores each message's CDR bytes as one zstd frame (in sqlite3
and in mcap, where the mcap chunk compression comes on top) with compression_mode MESSAGE. A
recorder killed mid-recording leaves no metadata.yaml and its current file uncompressed. They
are written here with the `mcap` library, raw sqlite3 and `zstandard`, not with the project's
writer or its zstd binding."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
import zstandard
from helpers.independent_bags import (
    SOURCE_EPISODES,
    SOURCE_SMALL,
    Message,
    finish_db3,
    small_source_bag,
    write_db3,
    write_mcap,
)

from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.validate import inspect_paths

SMALL, EPISODES = SOURCE_SMALL, SOURCE_EPISODES
NAMES = ("rec_episode_000000.hdf5", "rec_episode_000001.hdf5")
KEYS = ("timestamps", "action", "observations/state", "observations/joint_positions", "observations/imu/orientation")
SUFFIX = {"mcap": ".mcap", "sqlite3": ".db3"}
ZSTD_LEVEL = 1  # rosbag2_compression_zstd's kDefaultZstdCompressionLevel


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[list[Message], Path]:
    return small_source_bag(tmp_path_factory.mktemp("source"))


def _write_storage(path: Path, messages: list[Message]) -> Path:
    if path.suffix == ".mcap":
        return write_mcap(path, messages)  # zstd chunks, as the mcap plugin's default
    finish_db3(write_db3(path, messages))
    return path


def _compress_file(path: Path) -> Path:
    """What rosbag2 does to a closed storage file in file mode: one zstd frame, original removed."""
    target = path.with_name(path.name + ".zstd")
    with path.open("rb") as src, target.open("wb") as dst:
        zstandard.ZstdCompressor(level=ZSTD_LEVEL).copy_stream(src, dst)
    path.unlink()
    return target


def _compress_messages(messages: list[Message]) -> list[Message]:
    """Message mode: each message's serialized bytes become one zstd frame (ZSTD_compressCCtx)."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return [replace(m, data=compressor.compress(m.data)) for m in messages]


def _write_metadata(bag: Path, storage: str, files: list[str], messages: list[Message], mode: str) -> None:
    """metadata.yaml with the fields and spellings rosbag2 (version 9) writes."""
    start, end = messages[0].log_time_ns, messages[-1].log_time_ns
    topics: dict[str, tuple[str, int]] = {}
    for m in messages:
        topics[m.topic] = (m.msgtype, topics.get(m.topic, (m.msgtype, 0))[1] + 1)
    info = {
        "version": 9,
        "storage_identifier": storage,
        "duration": {"nanoseconds": end - start},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": len(messages),
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": topic,
                    "type": msgtype,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": "",
                    "type_description_hash": "",
                },
                "message_count": count,
            }
            for topic, (msgtype, count) in topics.items()
        ],
        "compression_format": "zstd",
        "compression_mode": mode,
        "relative_file_paths": files,
        "files": [{"path": name, "message_count": 0} for name in files],
        "custom_data": None,
        "ros_distro": "humble",
    }
    (bag / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))


def _assert_same(out: Path, reference: Path) -> None:
    for name in NAMES:
        with h5py.File(out / name) as a, h5py.File(reference / name) as b:
            for key in KEYS:
                assert np.array_equal(a[key][()], b[key][()]), (name, key)
            assert a.attrs["outcome"] == b.attrs["outcome"] and a.attrs["task"] == b.attrs["task"]


def _split(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """Split inside episode 0 (its START in the first file, its STOP in the second)."""
    cut = messages[0].log_time_ns + 800_000_000
    return [m for m in messages if m.log_time_ns < cut], [m for m in messages if m.log_time_ns >= cut]


def _convert_and_check(bag: Path, reference: Path, out: Path) -> None:
    summary = convert_bags([bag], out, ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(out, reference)
    report = inspect_paths([bag])[0]
    assert report.kind == "bag" and report.valid, report.to_dict()
    assert [e["outcome"] for e in report.summary["episodes"]] == ["success", "success"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_file_compressed_split_bag(source, tmp_path, storage):
    messages, reference = source
    bag = tmp_path / "rec"
    files = []
    for i, part in enumerate(_split(messages)):
        files.append(_compress_file(_write_storage(bag / f"rec_{i}{SUFFIX[storage]}", part)).name)
    _write_metadata(bag, storage, files, messages, "FILE")
    assert sorted(p.name for p in bag.iterdir()) == sorted([*files, "metadata.yaml"])
    _convert_and_check(bag, reference, tmp_path / "out")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_message_compressed_bag(source, tmp_path, storage):
    messages, reference = source
    bag = tmp_path / "rec"
    _write_storage(bag / f"rec_0{SUFFIX[storage]}", _compress_messages(messages))
    _write_metadata(bag, storage, [f"rec_0{SUFFIX[storage]}"], messages, "MESSAGE")
    _convert_and_check(bag, reference, tmp_path / "out")


def test_killed_compressing_recorders_leave_readable_bags(source, tmp_path):
    """No metadata.yaml. File mode: the closed file compressed, the one being written not; killed
    while compressing, a partial .zstd beside its original (the original is read). Message mode:
    compressed messages recognised by their zstd frame."""
    messages, reference = source
    first, second = _split(messages)
    bag = tmp_path / "file_mode" / "rec"
    _compress_file(_write_storage(bag / "rec_0.mcap", first))
    written = _write_storage(bag / "rec_1.mcap", second)
    partial = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(written.read_bytes())
    (bag / "rec_1.mcap.zstd").write_bytes(partial[: len(partial) // 2])
    summary = convert_bags([bag], tmp_path / "out_file", ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(tmp_path / "out_file", reference)

    bag = tmp_path / "message_mode" / "rec"
    finish_db3(write_db3(bag / "rec_0.db3", _compress_messages(messages)))
    summary = convert_bags([bag], tmp_path / "out_message", ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 2, summary.to_dict()
    _assert_same(tmp_path / "out_message", reference)


def test_a_cut_off_compressed_file_keeps_what_it_holds(source, tmp_path):
    """A .mcap.zstd cut off (a copy that did not finish): the episode it holds converts, the
    file is named as not finished."""
    messages, reference = source
    bag = tmp_path / "rec"
    compressed = _compress_file(_write_storage(bag / "rec_0.mcap", messages))
    data = compressed.read_bytes()
    compressed.write_bytes(data[: int(len(data) * 0.75)])
    summary = convert_bags([bag], tmp_path / "out", ConvertConfig(), workers=1)
    by_index = {r.episode_index: r for r in summary.episodes}
    assert by_index[0].status == "ok", summary.to_dict()
    with h5py.File(tmp_path / "out" / NAMES[0]) as a, h5py.File(reference / NAMES[0]) as b:
        assert all(np.array_equal(a[key][()], b[key][()]) for key in KEYS)
    report = inspect_paths([bag])[0]
    assert any(str(compressed) in w and "not finished" in w for w in report.warnings), report.to_dict()
