"""`psi0 convert`: every bag layout (mcap, sqlite3, split, bare file, directory of bags) into the
HDF5 schema of shared/DESIGN.md §5, with the summary, skip/overwrite and parallel workers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from ruamel.yaml import YAML

from psi0_ros.constants import ACTION_NAMES, TOPIC_INSTRUCTION
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.hdf5 import read_episode
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag
from psi0_ros.g1 import ALL_JOINTS

SMALL = {"width": 48, "height": 32, "joint_states": StreamSpec(100.0), "imu": StreamSpec(100.0)}
TWO_EPISODES = (SyntheticEpisode(0.3, 1.3, task="stack the cups"), SyntheticEpisode(1.6, 2.6, task="wipe"))


def _psi0(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psi0_ros.cli", *args], capture_output=True, text=True, timeout=300)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {
            name: f[name][()] for name in ("timestamps", "action", "observations/state", "observations/joint_positions")
        }


def _assert_same_episodes(a_dir: Path, b_dir: Path) -> None:
    """The two episodes of session_a converted into a_dir and b_dir hold identical arrays."""
    for name in ("session_a_episode_000000.hdf5", "session_a_episode_000001.hdf5"):
        a, b = _arrays(a_dir / name), _arrays(b_dir / name)
        for key in a:
            assert np.array_equal(a[key], b[key]), (name, key)


@pytest.fixture(scope="module")
def mcap_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "session_a"
    write_synthetic_bag(path, SyntheticBag(duration_s=3.0, episodes=TWO_EPISODES, **SMALL))
    return path


def test_episode_file_follows_the_schema(mcap_bag, tmp_path):
    summary = convert_bags([mcap_bag], tmp_path, ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "session_a_episode_000000.hdf5",
        "session_a_episode_000001.hdf5",
    ]
    with h5py.File(tmp_path / "session_a_episode_000000.hdf5") as f:
        t = f["timestamps"].shape[0]
        assert t == 31  # 1 s at 30 Hz, both ends included
        assert f["action"].shape == (t, 36) and f["action"].dtype == np.float32
        assert f["observations/state"].shape == (t, 36) and f["observations/state"].dtype == np.float32
        assert f["observations/joint_positions"].shape == (t, 43)
        assert f["observations/joint_velocities"].shape == (t, 43)
        assert f["observations/imu/orientation"].shape == (t, 4)
        assert f["observations/images/ego"].shape == (t,) and f["observations/images/ego"].attrs["encoding"] == "jpeg"
        assert f["observations/images/ego"].attrs["width"] == 48  # from /camera/ego/camera_info
        assert bytes(f["observations/images/ego"][0][:2]) == b"\xff\xd8"  # JPEG start-of-image
        assert np.all(f["observations/state"][:, 32:] == 0)
        attrs = dict(f.attrs)
        assert attrs["schema_version"] == 1 and attrs["fps"] == 30.0 and attrs["robot"] == "unitree_g1_29dof_dex3"
        assert attrs["task"] == "stack the cups" and attrs["outcome"] == "success" and attrs["episode_index"] == 0
        assert [str(n) for n in attrs["joint_names"]] == list(ALL_JOINTS)
        assert [str(n) for n in attrs["action_names"]] == list(ACTION_NAMES)
        assert [str(b) for b in attrs["source_bags"]] == [str(mcap_bag)]
        assert "command in force" in json.loads(attrs["alignment"])["action"]


def test_sqlite3_bag_converts_to_the_same_episodes(mcap_bag, tmp_path):
    sqlite = tmp_path / "session_a"
    write_synthetic_bag(sqlite, SyntheticBag(duration_s=3.0, episodes=TWO_EPISODES, storage="sqlite3", **SMALL))
    assert next(sqlite.glob("*.db3"))
    convert_bags([sqlite], tmp_path / "from_sqlite", ConvertConfig(), workers=1)
    convert_bags([mcap_bag], tmp_path / "from_mcap", ConvertConfig(), workers=1)
    _assert_same_episodes(tmp_path / "from_sqlite", tmp_path / "from_mcap")


def _split(source: Path, target: Path, at_fraction: float) -> None:
    """Rewrite a bag as one bag directory with two storage files, as `ros2 bag record -b` does."""
    with Reader(source) as reader:
        connections = list(reader.connections)
        messages = list(reader.messages())
        cut = reader.start_time + int((reader.end_time - reader.start_time) * at_fraction)
    parts = []
    for i, chunk in enumerate(([m for m in messages if m[1] < cut], [m for m in messages if m[1] >= cut])):
        part = target.parent / f"{target.name}_part{i}"
        with Writer(part, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            new = {
                c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
                for c in connections
            }
            for conn, stamp, raw in chunk:
                writer.write(new[conn.id], stamp, raw)
        parts.append(part)
    target.mkdir()
    yaml = YAML(typ="safe")
    infos = [yaml.load((p / "metadata.yaml").read_text())["rosbag2_bagfile_information"] for p in parts]
    merged = infos[0]
    files = []
    for i, (part, info) in enumerate(zip(parts, infos, strict=True)):
        name = f"{target.name}_{i}.mcap"
        next(part.glob("*.mcap")).rename(target / name)
        files.append({**info["files"][0], "path": name})
    merged["relative_file_paths"] = [f["path"] for f in files]
    merged["files"] = files
    merged["message_count"] = sum(i["message_count"] for i in infos)
    start = min(i["starting_time"]["nanoseconds_since_epoch"] for i in infos)
    end = max(i["starting_time"]["nanoseconds_since_epoch"] + i["duration"]["nanoseconds"] for i in infos)
    merged["starting_time"]["nanoseconds_since_epoch"], merged["duration"]["nanoseconds"] = start, end - start
    for topic in merged["topics_with_message_count"]:
        name = topic["topic_metadata"]["name"]
        topic["message_count"] = sum(
            t["message_count"]
            for i in infos
            for t in i["topics_with_message_count"]
            if t["topic_metadata"]["name"] == name
        )
    with (target / "metadata.yaml").open("w") as stream:
        yaml.dump({"rosbag2_bagfile_information": merged}, stream)
    for part in parts:
        shutil.rmtree(part)


def test_split_bag_equals_the_unsplit_one(mcap_bag, tmp_path):
    split = tmp_path / "session_a"
    _split(mcap_bag, split, at_fraction=0.3)  # the cut falls inside the first episode
    assert len(list(split.glob("*.mcap"))) == 2
    convert_bags([split], tmp_path / "split", ConvertConfig(), workers=1)
    convert_bags([mcap_bag], tmp_path / "whole", ConvertConfig(), workers=1)
    _assert_same_episodes(tmp_path / "split", tmp_path / "whole")


def test_directory_of_bags_bare_files_and_bags_without_events(tmp_path):
    sessions = tmp_path / "sessions"
    no_events = SyntheticBag(duration_s=1.5, events=False, instruction="open the drawer", **SMALL)
    write_synthetic_bag(sessions / "day1" / "run", no_events)
    write_synthetic_bag(sessions / "day2" / "run", SyntheticBag(duration_s=2.0, episodes=TWO_EPISODES[:1], **SMALL))
    bare = tmp_path / "loose"
    write_synthetic_bag(bare, no_events)
    mcap_file = next(bare.glob("*.mcap"))
    summary = convert_bags([sessions, mcap_file], tmp_path / "out", ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 3, summary.to_dict()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    # Two bags named "run": the second gets a suffix instead of overwriting the first.
    assert names == ["loose_episode_000000.hdf5", "run_1_episode_000000.hdf5", "run_episode_000000.hdf5"]
    episode = read_episode(tmp_path / "out" / "run_episode_000000.hdf5", images=False)
    assert episode.attrs["task"] == "open the drawer"  # no START event: the task from /psi0/instruction
    assert "no_events" in episode.attrs["flags"]
    # The whole bag is the episode; ticks before every stream has a sample are trimmed.
    assert 40 <= episode.num_frames <= 46


def test_task_falls_back_to_the_command_line(tmp_path):
    bag = tmp_path / "bag"
    write_synthetic_bag(bag, SyntheticBag(duration_s=1.0, events=False, omit_topics=(TOPIC_INSTRUCTION,), **SMALL))
    summary = convert_bags([bag], tmp_path / "out", ConvertConfig(), workers=1, default_task="pour water")
    assert summary.episodes[0].task == "pour water"
    summary = convert_bags([bag], tmp_path / "out2", ConvertConfig(), workers=1)
    assert any(f.startswith("no_task") for f in summary.episodes[0].flags)


def test_cli_parallel_json_summary_skip_and_overwrite(mcap_bag, tmp_path):
    out, report = tmp_path / "out", tmp_path / "summary.json"
    first = _psi0("convert", str(mcap_bag), "-o", str(out), "-j", "2", "--json", str(report), "--no-progress")
    assert first.returncode == 0, first.stderr
    document = json.loads(report.read_text())
    assert document["counts"] == {"ok": 2, "error": 0, "discarded": 0, "skipped": 0}
    assert document["frames"] == 62 and [e["frames"] for e in document["episodes"]] == [31, 31]
    before = (out / "session_a_episode_000000.hdf5").stat().st_mtime_ns
    again = _psi0("convert", str(mcap_bag), "-o", str(out), "-j", "1", "--no-progress")
    assert again.returncode == 0 and "skipped" in again.stdout and "--overwrite" in again.stdout
    assert (out / "session_a_episode_000000.hdf5").stat().st_mtime_ns == before
    forced = _psi0("convert", str(mcap_bag), "-o", str(out), "--overwrite", "--no-progress", "--state-rule", "hold")
    assert forced.returncode == 0 and "2 converted" in forced.stdout
    assert "hold" in json.loads(h5py.File(out / "session_a_episode_000000.hdf5").attrs["alignment"])["state"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_bad_options_are_usage_errors(mcap_bag, tmp_path):
    result = _psi0("convert", str(mcap_bag), "-o", str(tmp_path), "--fps", "-5")
    assert result.returncode == 2 and "convert.fps must be in (0, 1000] Hz, got -5.0" in result.stderr
    result = _psi0("convert", str(mcap_bag), "-o", str(tmp_path), "--jpeg-quality", "101")
    assert result.returncode == 2 and "jpeg_quality" in result.stderr


def test_a_reader_without_the_project_types_uses_the_bags_definitions(mcap_bag, tmp_path):
    """On a machine without psi0_ros's msg files, mcap bags still decode: they carry the definitions."""
    from rosbags.typesys import Stores, get_typestore

    from psi0_ros.data.bags import BagReader
    from psi0_ros.data.streams import LOWER_BODY_FIELDS

    bare = get_typestore(Stores.LATEST)
    assert "psi0_ros/msg/LowerBodyCommand" not in bare.types
    with BagReader(mcap_bag, typestore=bare) as reader:
        events = [m.msg for _, m in reader.read(["/psi0/episode_events"])]
        commands = [m.msg for _, m in reader.read(["/psi0/lower_body_command"])]
    with BagReader(mcap_bag) as reader:  # the project's own definitions
        reference = [m.msg for _, m in reader.read(["/psi0/lower_body_command"])]
    assert [e.type for e in events[:3]] == [0, 1, 3] and events[0].task == "stack the cups"
    assert len(commands) == len(reference) > 50
    pairs = zip(commands, reference, strict=True)
    assert all(getattr(a, f) == getattr(b, f) for a, b in pairs for f in LOWER_BODY_FIELDS)
