"""Bad input: every failure is a clear error of its own episode (or bag), the other episodes still
convert, and no partial or temporary HDF5 file is left behind."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from psi0_ros.constants import TOPIC_IMU, TOPIC_JOINT_STATES
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.episodes import EventType
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag

SMALL = {"width": 48, "height": 32, "joint_states": StreamSpec(100.0), "imu": StreamSpec(100.0)}
EPISODES = (SyntheticEpisode(0.3, 1.0), SyntheticEpisode(1.3, 2.0))


def _bag(path: Path, **changes) -> Path:
    settings = {"duration_s": 2.3, "episodes": EPISODES, **SMALL, **changes}
    write_synthetic_bag(path, SyntheticBag(**settings))
    return path


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory) -> Path:
    return _bag(tmp_path_factory.mktemp("good") / "good")


def _outputs(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _by_bag(summary) -> dict[str, list]:
    out: dict[str, list] = {}
    for result in summary.episodes:
        out.setdefault(Path(result.bag).name, []).append(result)
    return out


def test_truncated_mcap_keeps_its_complete_episodes_and_says_what_is_missing(good_bag, tmp_path):
    """Issue 12 changed this: a cut-off mcap (a killed recorder) is no longer rejected outright;
    the episodes it holds completely convert, and the shortfall against metadata.yaml is an error
    naming the file."""
    broken = _bag(tmp_path / "broken")
    storage = next(broken.glob("*.mcap"))
    with storage.open("r+b") as f:
        f.truncate(storage.stat().st_size // 2)  # what a recorder killed mid-write leaves
    summary = convert_bags([good_bag, broken], tmp_path / "out", ConvertConfig(), workers=1)
    results = _by_bag(summary)
    assert [r.status for r in results["good"]] == ["ok", "ok"]
    statuses = {r.episode_index: r.status for r in results["broken"]}
    assert statuses[0] == "ok" and statuses[None] == "error", summary.to_dict()
    lost = next(r for r in results["broken"] if r.episode_index is None)
    assert str(broken) in lost.error and "declares" in lost.error
    assert not summary.ok
    assert _outputs(tmp_path / "out") == [
        "broken_episode_000000.hdf5",
        "good_episode_000000.hdf5",
        "good_episode_000001.hdf5",
    ]
    from psi0_ros.data.hdf5 import read_episode

    recovered = read_episode(tmp_path / "out" / "broken_episode_000000.hdf5")
    reference = read_episode(tmp_path / "out" / "good_episode_000000.hdf5")
    assert np.array_equal(recovered.action, reference.action)
    assert np.array_equal(recovered.joint_positions, reference.joint_positions)
    assert recovered.images["ego"] == reference.images["ego"]


def test_corrupt_sqlite_fails_its_bag_only(good_bag, tmp_path):
    broken = _bag(tmp_path / "corrupt", storage="sqlite3")
    storage = next(broken.glob("*.db3"))
    data = bytearray(storage.read_bytes())
    data[100:4096] = b"\xde\xad\xbe\xef" * ((4096 - 100) // 4)  # clobber the header and first pages
    storage.write_bytes(bytes(data))
    summary = convert_bags([broken, good_bag], tmp_path / "out", ConvertConfig(), workers=1)
    results = _by_bag(summary)
    assert [r.status for r in results["corrupt"]] == ["error"]
    assert str(broken) in results["corrupt"][0].error
    assert [r.status for r in results["good"]] == ["ok", "ok"]
    assert _outputs(tmp_path / "out") == ["good_episode_000000.hdf5", "good_episode_000001.hdf5"]


def test_missing_required_topic_is_named(good_bag, tmp_path):
    bag = _bag(tmp_path / "nojoints", omit_topics=(TOPIC_JOINT_STATES,))
    summary = convert_bags([bag, good_bag], tmp_path / "out", ConvertConfig(), workers=1)
    results = _by_bag(summary)
    assert [r.status for r in results["nojoints"]] == ["error", "error"]
    assert all("bag has no /joint_states topic (required)" in r.error for r in results["nojoints"])
    assert [r.status for r in results["good"]] == ["ok", "ok"]


def _rewrite_with_types(source: Path, target: Path, retype: dict[str, str], extra_topic: str | None = None) -> None:
    """Copy a bag, recording some topics under another (undefined) type and adding an extra topic."""
    with Reader(source) as reader:
        connections = list(reader.connections)
        messages = list(reader.messages())
    with Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        new = {}
        for c in connections:
            if c.topic in retype:
                new[c.id] = writer.add_connection(c.topic, retype[c.topic], msgdef="", rihs01="RIHS01_" + "0" * 64)
            else:
                new[c.id] = writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
        if extra_topic:
            weird = writer.add_connection(extra_topic, "vendor_msgs/msg/Blob", msgdef="", rihs01="RIHS01_" + "1" * 64)
            writer.write(weird, messages[0][1], b"\x00\x01\x00\x00\x07\x00\x00\x00")
        for conn, stamp, raw in messages:
            writer.write(new[conn.id], stamp, raw)


def test_unknown_types(good_bag, tmp_path):
    # An unneeded topic of an unknown type is ignored; a needed topic of the wrong type is an error.
    extra = tmp_path / "extra"
    _rewrite_with_types(good_bag, extra, {}, extra_topic="/vendor/blob")
    wrong = tmp_path / "wrong"
    _rewrite_with_types(good_bag, wrong, {TOPIC_IMU: "vendor_msgs/msg/FancyImu"})
    summary = convert_bags([extra, wrong], tmp_path / "out", ConvertConfig(), workers=1)
    results = _by_bag(summary)
    assert [r.status for r in results["extra"]] == ["ok", "ok"]
    assert [r.status for r in results["wrong"]] == ["error", "error"]
    assert (
        "topic /imu/data has type vendor_msgs/msg/FancyImu; expected sensor_msgs/msg/Imu" in results["wrong"][0].error
    )


def test_episode_without_frames_and_stop_without_start(tmp_path):
    episodes = (
        SyntheticEpisode(0.3, 1.0),
        SyntheticEpisode(2.6, 2.8),  # after every stream has stopped: no frame can be built
        SyntheticEpisode(1.2, 1.9),
    )
    bag = _bag(tmp_path / "mixed", episodes=episodes, extra_events=((2.2, EventType.STOP, 9),))
    summary = convert_bags([bag], tmp_path / "out", ConvertConfig(), workers=1)
    status = {r.episode_index: (r.status, r.error) for r in summary.episodes}
    assert status[0][0] == "ok" and status[2][0] == "ok"
    assert status[1][0] == "error" and status[1][1].startswith("episode has no frames: no data from joint_states")
    assert status[9][0] == "error" and re.fullmatch(r"STOP of episode 9 at t=2\.\d{3} s without a START", status[9][1])
    assert _outputs(tmp_path / "out") == ["mixed_episode_000000.hdf5", "mixed_episode_000002.hdf5"]


def test_nan_in_a_stream_is_kept_visible_for_inspect(tmp_path):
    """A NaN the robot published is data, not something to paper over: it stays and inspect flags it."""
    from psi0_ros.data.validate import validate_episode

    bag = _bag(tmp_path / "nan", episodes=(SyntheticEpisode(0.3, 1.0),))
    with Reader(bag) as reader:
        connections = list(reader.connections)
        messages = list(reader.messages())
    from psi0_ros.data.typestore import make_typestore

    store = make_typestore()
    target = tmp_path / "nan2"
    with Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        new = {
            c.id: writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest) for c in connections
        }
        for conn, stamp, raw in messages:
            if conn.topic == TOPIC_JOINT_STATES:
                msg = store.deserialize_cdr(raw, conn.msgtype)
                msg.position = np.where(np.arange(msg.position.size) == 20, np.nan, msg.position)
                raw = bytes(store.serialize_cdr(msg, conn.msgtype))
            writer.write(new[conn.id], stamp, raw)
    summary = convert_bags([target], tmp_path / "out", ConvertConfig(), workers=1)
    assert summary.ok
    report = validate_episode(Path(summary.episodes[0].output))
    assert not report.valid and any("NaN/inf" in e and "joint_positions" in e for e in report.errors)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_write_failure_leaves_no_partial_file(good_bag, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", "convert", str(good_bag), "-o", str(out), "-j", "1", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 1
    assert result.stdout.count("error") >= 2 and "0 converted, 2 failed" in result.stdout
    assert _outputs(out) == []  # neither the episode files nor their hidden temporaries


def test_a_changed_message_definition_is_read_with_the_bags_own_definition(tmp_path):
    """A bag recorded with another LowerBodyCommand (an extra field) decodes with the definition
    stored in the bag, not with the project's msg file."""
    from rosbags.typesys import get_types_from_msg

    from psi0_ros.constants import TOPIC_LOWER_BODY_COMMAND
    from psi0_ros.data.streams import LOWER_BODY_FIELDS
    from psi0_ros.data.typestore import make_typestore, message_definition_dir

    source = _bag(tmp_path / "source", episodes=(SyntheticEpisode(0.3, 1.0),))
    name = "psi0_ros/msg/LowerBodyCommand"
    definition = (message_definition_dir() / "LowerBodyCommand.msg").read_text()
    definition = definition.replace("float32 vx", "float32 brake\nfloat32 vx")  # a field before vx
    old_store, new_store = make_typestore(), make_typestore()
    new_store.fielddefs.pop(name)
    new_store.types.pop(name)
    new_store.register(get_types_from_msg(definition, name))
    msgdef, _ = new_store.generate_msgdef(name, ros_version=2)
    target = tmp_path / "changed"
    expected = []
    with Reader(source) as reader:
        connections = list(reader.connections)
        messages = list(reader.messages())
    with Writer(target, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        new = {}
        for c in connections:
            if c.topic == TOPIC_LOWER_BODY_COMMAND:
                new[c.id] = writer.add_connection(c.topic, name, msgdef=msgdef, rihs01=new_store.hash_rihs01(name))
            else:
                new[c.id] = writer.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data, rihs01=c.digest)
        for conn, stamp, raw in messages:
            if conn.topic == TOPIC_LOWER_BODY_COMMAND:
                old = old_store.deserialize_cdr(raw, name)
                fields = {f: getattr(old, f) for f in LOWER_BODY_FIELDS}
                msg = new_store.types[name](header=old.header, brake=7.5, **fields)
                raw = bytes(new_store.serialize_cdr(msg, name))
                expected.append([fields[f] for f in LOWER_BODY_FIELDS])
            writer.write(new[conn.id], stamp, raw)
    summary = convert_bags([target], tmp_path / "out", ConvertConfig(), workers=1)
    assert summary.ok, summary.to_dict()
    from psi0_ros.data.hdf5 import read_episode

    action = read_episode(Path(summary.episodes[0].output), images=False).action
    rows = {tuple(np.float32(v) for v in row) for row in expected}
    assert all(tuple(r) in rows for r in action[:, 28:])  # every tick holds one of the recorded commands


def _cli(*args: str, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec_fn,
    )


METADATA_DAMAGE = {
    "random bytes": np.random.default_rng(0).bytes(3000),
    "a yaml list": b"- 1\n- 2\n",
    "no file list": b"rosbag2_bagfile_information:\n  version: 9\n",
    "a count that is no number": (
        b"rosbag2_bagfile_information:\n  relative_file_paths: [good_0.mcap]\n  topics_with_message_count:\n"
        b"    - topic_metadata: {name: /joint_states}\n      message_count: many\n"
    ),
    "an unknown compression": (
        b"rosbag2_bagfile_information:\n  relative_file_paths: [good_0.mcap]\n"
        b"  compression_format: brotli\n  compression_mode: FILE\n"
    ),
}


@pytest.mark.parametrize("command", ["convert", "inspect"])
@pytest.mark.parametrize("damage", sorted(METADATA_DAMAGE))
def test_a_damaged_metadata_yaml_is_one_clear_line_and_exit_1(good_bag, tmp_path, command, damage):
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "good_0.mcap").write_bytes(next(good_bag.glob("*.mcap")).read_bytes())
    (bag / "metadata.yaml").write_bytes(METADATA_DAMAGE[damage])
    extra = ("-o", str(tmp_path / "out"), "-j", "1", "--no-progress") if command == "convert" else ()
    result = _cli(command, str(bag), *extra)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    named = [line for line in result.stdout.splitlines() if "metadata.yaml" in line]
    assert len(named) == 1 and "error" in named[0], result.stdout


@pytest.fixture(scope="module")
def wide_bag(tmp_path_factory) -> Path:
    """160x120 frames: an episode file outgrows a 64 KiB file-size limit part way through (this
    layout, 3.6 s with a 1 s second episode, crashed HDF5's shutdown every time)."""
    episodes = (SyntheticEpisode(0.3, 1.0), SyntheticEpisode(2.0, 3.0))
    return _bag(tmp_path_factory.mktemp("wide") / "wide", duration_s=3.6, episodes=episodes, width=160, height=120)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_file_size_limit_ends_convert_cleanly(wide_bag, tmp_path, jobs):
    """Python ignores SIGXFSZ, so a write past `ulimit -f` fails with EFBIG inside HDF5: that is
    reported per episode, and the process then exits 1 (no SIGSEGV from HDF5's shutdown, no
    traceback from a worker)."""

    def limit() -> None:  # the limit only: the disposition of SIGXFSZ is Python's own
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "out"
    result = _cli("convert", str(wide_bag), "-o", str(out), "-j", jobs, "--no-progress", preexec_fn=limit)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("error")]
    assert len(errors) == 2 and all("File too large (over the file-size limit" in e for e in errors), errors
    assert _outputs(out) == []
