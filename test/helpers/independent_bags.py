"""Bags written the way other recorders write them, by code that is not the project's: the `mcap`
library's writer and rosbag2's sqlite3 layout written with the standard library's sqlite3.

The message bytes come from a synthetic teleop bag (read back with rosbags' reader), so a
conversion of the rewritten bag can be compared with a conversion of the original.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mcap.writer import CompressionType, IndexType, Writer
from rosbags.rosbag2 import Reader

from psi0_ros.data.synthetic import StreamSpec, SyntheticEpisode

# The source bag of small_source_bag(): small frames, two episodes.
SOURCE_SMALL = {"width": 48, "height": 32, "joint_states": StreamSpec(100.0), "imu": StreamSpec(100.0)}
SOURCE_EPISODES = (SyntheticEpisode(0.3, 1.3, task="stack the cups"), SyntheticEpisode(1.6, 2.6, task="wipe"))


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str
    msgdef: str  # ros2msg text as rosbag2 stores it
    log_time_ns: int
    data: bytes


def read_messages(bag: Path) -> list[Message]:
    """Every message of a bag in time order (rosbags' reader)."""
    with Reader(bag) as reader:
        return [
            Message(c.topic, c.msgtype, c.msgdef.data, int(t), bytes(raw))
            for c, t, raw in reader.messages(connections=reader.connections)
        ]


def write_mcap(
    path: Path,
    messages: list[Message],
    chunk_size: int = 64 * 1024,
    compression: CompressionType = CompressionType.ZSTD,
    index_types: IndexType = IndexType.ALL,
    use_chunking: bool = True,
) -> Path:
    """An MCAP file as the mcap library writes it, messages in the given order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        writer = Writer(
            stream, chunk_size=chunk_size, compression=compression, index_types=index_types, use_chunking=use_chunking
        )
        writer.start(profile="ros2", library="test-independent-writer")
        schemas: dict[str, int] = {}
        channels: dict[str, int] = {}
        for m in messages:
            if m.msgtype not in schemas:
                schemas[m.msgtype] = writer.register_schema(m.msgtype, "ros2msg", m.msgdef.encode())
            if m.topic not in channels:
                channels[m.topic] = writer.register_channel(m.topic, "cdr", schemas[m.msgtype])
            writer.add_message(channels[m.topic], m.log_time_ns, m.data, m.log_time_ns)
        writer.finish()
    return path


SQLITE_SCHEMA = """
CREATE TABLE schema (schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
CREATE TABLE metadata (id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE topics (id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
    serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL, type_description_hash TEXT NOT NULL);
CREATE TABLE message_definitions (id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL, encoding TEXT NOT NULL,
    encoded_message_definition TEXT NOT NULL, type_description_hash TEXT NOT NULL);
CREATE TABLE messages (id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
"""


def write_db3(path: Path, messages: list[Message], commit_every: int | None = None) -> sqlite3.Connection:
    """A rosbag2 sqlite3 file (schema version 4), committed every commit_every messages (None: once
    at the end). Returns the open connection (the caller closes it, or leaves it open mid-write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None)
    db.executescript(SQLITE_SCHEMA)
    db.execute("INSERT INTO schema VALUES (4, 'humble')")
    topics: dict[str, int] = {}
    defined: set[str] = set()
    db.execute("BEGIN")
    for i, m in enumerate(messages):
        if m.msgtype not in defined:
            db.execute(
                "INSERT INTO message_definitions (topic_type, encoding, encoded_message_definition, "
                "type_description_hash) VALUES (?, 'ros2msg', ?, '')",
                (m.msgtype, m.msgdef),
            )
            defined.add(m.msgtype)
        if m.topic not in topics:
            topics[m.topic] = len(topics) + 1
            db.execute(
                "INSERT INTO topics VALUES (?, ?, ?, 'cdr', '', '')",
                (topics[m.topic], m.topic, m.msgtype),
            )
        db.execute(
            "INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
            (topics[m.topic], m.log_time_ns, m.data),
        )
        if commit_every and (i + 1) % commit_every == 0:
            db.execute("COMMIT")
            db.execute("BEGIN")
    return db


def finish_db3(db: sqlite3.Connection) -> None:
    db.execute("COMMIT")
    db.close()


def small_source_bag(root: Path) -> tuple[list[Message], Path]:
    """A small two-episode synthetic teleop bag under root/rec, its messages, and its conversion by
    the project (root/reference): the source the rewritten bags are compared with."""
    from psi0_ros.data.config import ConvertConfig
    from psi0_ros.data.convert import convert_bags
    from psi0_ros.data.synthetic import SyntheticBag, write_synthetic_bag

    write_synthetic_bag(root / "rec", SyntheticBag(duration_s=3.0, episodes=SOURCE_EPISODES, **SOURCE_SMALL))
    summary = convert_bags([root / "rec"], root / "reference", ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 2
    return read_messages(root / "rec"), root / "reference"
