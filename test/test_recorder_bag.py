"""BagRecorder: the rosbag2 writer behind `psi0 record` (no ROS needed: bytes in, bag out)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from rosbags.rosbag2 import Reader

from psi0_ros.constants import TOPIC_EPISODE_EVENTS, TOPIC_INSTRUCTION
from psi0_ros.data.recorder import BagRecorder, OfferedQos, RecorderError
from psi0_ros.data.typestore import make_typestore

STORE = make_typestore()


def _instruction(text: str) -> bytes:
    return bytes(STORE.serialize_cdr(STORE.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_bag_reads_back_with_definitions_and_qos(tmp_path, storage):
    recorder = BagRecorder(tmp_path / "bag", storage=storage).open()
    recorder.add_topic(
        TOPIC_INSTRUCTION, "std_msgs/msg/String", OfferedQos(reliable=True, transient_local=True, depth=1)
    )
    recorder.add_topic(TOPIC_EPISODE_EVENTS, "psi0_ros/msg/EpisodeEvent")
    for i in range(50):
        assert recorder.write(TOPIC_INSTRUCTION, _instruction(f"task {i}"), 1_000 + i)
    assert not recorder.write("/never/added", b"\x00\x01\x00\x00", 5)
    stats = recorder.close()
    assert stats.messages == {TOPIC_INSTRUCTION: 50, TOPIC_EPISODE_EVENTS: 0}
    assert stats.dropped == {"/never/added": 1}
    with Reader(tmp_path / "bag") as reader:
        topics = reader.topics
        assert topics[TOPIC_INSTRUCTION].msgcount == 50
        assert topics[TOPIC_EPISODE_EVENTS].msgtype == "psi0_ros/msg/EpisodeEvent"
        connection = topics[TOPIC_INSTRUCTION].connections[0]
        assert connection.digest == STORE.hash_rihs01("std_msgs/msg/String")
        assert connection.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
        texts = [STORE.deserialize_cdr(raw, c.msgtype).data for c, _, raw in reader.messages()]
        stamps = [t for _, t, _ in reader.messages()]
    assert texts == [f"task {i}" for i in range(50)] and stamps == list(range(1_000, 1_050))
    if storage == "mcap":  # the definition travels with the bag (converter fallback for unknown types)
        with Reader(tmp_path / "bag") as reader:
            assert "uint8 START=0" in reader.topics[TOPIC_EPISODE_EVENTS].msgdef.data


def test_refusals_are_clear(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(RecorderError, match="exists already"):
        BagRecorder(tmp_path / "taken").open()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RecorderError, match="cannot create bag"):
        BagRecorder(tmp_path / "file" / "bag").open()
    recorder = BagRecorder(tmp_path / "ok").open()
    with pytest.raises(RecorderError, match="no message definition for vendor_msgs/msg/Blob"):
        recorder.add_topic("/blob", "vendor_msgs/msg/Blob")
    recorder.close()


def test_a_full_queue_drops_and_counts(tmp_path):
    recorder = BagRecorder(tmp_path / "bag", max_queue_bytes=64).open()
    recorder.add_topic(TOPIC_INSTRUCTION, "std_msgs/msg/String")
    assert not recorder.write(TOPIC_INSTRUCTION, _instruction("x" * 200), 1)
    assert recorder.write(TOPIC_INSTRUCTION, _instruction("short"), 2)
    stats = recorder.close()
    assert stats.dropped == {TOPIC_INSTRUCTION: 1} and stats.messages == {TOPIC_INSTRUCTION: 1}


def test_disk_full_is_reported_not_swallowed(tmp_path):
    """A file-size limit makes the storage writes fail like a full disk (EFBIG instead of ENOSPC)."""
    program = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        from psi0_ros.data.recorder import BagRecorder, RecorderError
        seen = []
        recorder = BagRecorder({str(tmp_path / "bag")!r}, on_error=seen.append).open()
        recorder.add_topic("/big", "std_msgs/msg/String")
        payload = b"\\x00\\x01\\x00\\x00" + (100_000).to_bytes(4, "little") + b"y" * 99_999 + b"\\x00"
        for i in range(40):
            recorder.write("/big", payload, i)
        try:
            recorder.close()
        except RecorderError as err:
            print("ERROR", err, "| callback:", len(seen), "| dropped:", sum(recorder.stats.dropped.values()))
            sys.exit(3)
        sys.exit(0)
        """
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "ERROR writing bag" in result.stdout and "File too large" in result.stdout
    assert "callback: 1" in result.stdout and "dropped: 0" not in result.stdout
