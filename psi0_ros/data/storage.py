"""One rosbag2 storage file (.mcap or .db3) as a reader sees it: connections, counts, time range,
raw messages in time order. bags.py puts a bag's files together.

MCAP goes through mcap_read.py (summary when complete, a scan when a recorder died); sqlite3
through the standard library's sqlite3. A .db3 left with a hot journal or WAL by a killed writer
is recovered in a private copy (sqlite rolls back the unfinished transaction there), so every
committed batch reads and the original files stay untouched.
"""

from __future__ import annotations

import functools
import shutil
import sqlite3
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat, Qos
from rosbags.rosbag2.metadata import parse_qos

from psi0_ros.data.mcap_read import McapFile, McapReadError

# Schema encodings of message definitions (MCAP schema.encoding, rosbag2 sqlite message_definitions).
DEFINITION_FORMATS = {
    "ros2msg": MessageDefinitionFormat.MSG,
    "ros2idl": MessageDefinitionFormat.IDL,
    "omgidl": MessageDefinitionFormat.IDL,
    "": MessageDefinitionFormat.NONE,
}
SQLITE_SIDE_FILES = ("-journal", "-wal")  # what an unfinished sqlite transaction leaves beside the file


class StorageError(Exception):
    """A storage file that cannot be read; the message names it."""


@functools.lru_cache(maxsize=256)
def _qos(text: str) -> list[Qos]:
    """A channel's offered QoS profiles (rosbags parses the YAML text with ruamel, ~0.1 ms; the
    same few texts recur in every file and every time an episode opens its bag)."""
    return parse_qos(text)


def _definition(encoding: str, data: str) -> MessageDefinition:
    return MessageDefinition(DEFINITION_FORMATS.get(encoding, MessageDefinitionFormat.NONE), data)


class McapStorage:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = McapFile(path)
        self.connections: list[Connection] = []

    def open(self) -> None:
        try:
            self.file.open()
        except (McapReadError, OSError) as err:
            raise StorageError(str(err)) from err
        f = self.file
        for channel in f.channels.values():
            schema = f.schemas.get(channel.schema_id)
            name = schema.name if schema else channel.topic
            definition = _definition(schema.encoding, schema.data.decode()) if schema else _definition("", "")
            qos = _qos(channel.metadata.get("offered_qos_profiles", "")) if channel.metadata else []
            self.connections.append(
                Connection(
                    channel.id,
                    channel.topic,
                    name,
                    definition,
                    "",
                    int(f.counts.get(channel.id, 0)),
                    ConnectionExtRosbag2(channel.message_encoding, qos),
                    self,
                )
            )

    @property
    def truncated(self) -> bool:
        return self.file.truncated

    @property
    def time_range(self) -> tuple[int, int] | None:
        return (self.file.start_ns, self.file.end_ns) if self.file.chunks else None

    def messages(
        self, ids: Collection[int], start: int | None, stop: int | None, id_start: Mapping[int, int] | None = None
    ) -> Iterator[tuple[int, int, bytes | memoryview]]:
        """(id, receive time, payload) in time order; id_start: a later start for some ids."""
        return self.file.messages(ids, start, stop, id_start)

    def close(self) -> None:
        self.file.close()


class SqliteStorage:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections: list[Connection] = []
        self.truncated = False  # an unfinished transaction rolled back, or the file never closed
        self._db: sqlite3.Connection | None = None
        self._copy: tempfile.TemporaryDirectory | None = None
        self.time_range: tuple[int, int] | None = None

    def open(self) -> None:
        path = self.path
        side = [Path(f"{path}{suffix}") for suffix in SQLITE_SIDE_FILES]
        try:
            if any(p.is_file() and p.stat().st_size for p in side):
                # A killed writer: let sqlite recover in a private copy, never in the original.
                self._copy = tempfile.TemporaryDirectory(prefix="psi0-db3-")
                target = Path(self._copy.name) / path.name
                shutil.copyfile(path, target)
                for p in side:
                    if p.is_file():
                        shutil.copyfile(p, Path(f"{target}{p.name[len(path.name) :]}"))
                self.truncated = True
                self._db = sqlite3.connect(str(target))
            else:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self._load()
        except sqlite3.Error as err:
            self.close()
            raise StorageError(f"{path}: cannot read sqlite3 storage: {err}") from err

    def _load(self) -> None:
        db = self._db
        assert db is not None
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"topics", "messages"} <= tables:
            raise sqlite3.DatabaseError("no topics and messages tables (not a rosbag2 file)")
        columns = {row[1] for row in db.execute("PRAGMA table_info(topics)")}
        definitions: dict[str, tuple[str, str, str]] = {}
        if "message_definitions" in tables:
            for name, encoding, text, digest in db.execute(
                "SELECT topic_type, encoding, encoded_message_definition, type_description_hash FROM message_definitions"
            ):
                definitions[name] = (encoding, text, digest)
        qos_column = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
        digest_column = "type_description_hash" if "type_description_hash" in columns else "''"
        rows = db.execute(
            f"SELECT id, name, type, serialization_format, {qos_column}, {digest_column} FROM topics ORDER BY id"
        ).fetchall()
        counts = dict(db.execute("SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id").fetchall())
        for tid, topic, msgtype, serialization, qos, digest in rows:
            encoding, text, stored_digest = definitions.get(msgtype, ("", "", ""))
            self.connections.append(
                Connection(
                    int(tid),
                    topic,
                    msgtype,
                    _definition(encoding, text),
                    digest or stored_digest or "",
                    int(counts.get(tid, 0)),
                    ConnectionExtRosbag2(serialization, parse_qos(qos) if qos else []),
                    self,
                )
            )
        if "metadata" in tables and db.execute("SELECT COUNT(*) FROM metadata").fetchone()[0] == 0:
            self.truncated = True  # rosbag2 (and rosbags) fill this table when they close the file
        low, high = db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM messages").fetchone()
        if low is not None:
            self.time_range = (int(low), int(high))

    def messages(
        self, ids: Collection[int], start: int | None, stop: int | None, id_start: Mapping[int, int] | None = None
    ) -> Iterator[tuple[int, int, bytes]]:
        """(id, receive time, payload) in time order; id_start: a later start for some ids."""
        assert self._db is not None
        ids = list(ids)
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        lo = -(1 << 63) if start is None else start
        hi = (1 << 63) - 1 if stop is None else stop
        later = {i: t for i, t in (id_start or {}).items() if i in ids and t > lo}
        per_id = ""
        if later:  # each id from its own start: "timestamp >= CASE topic_id WHEN id THEN start ... END"
            per_id = f" AND timestamp >= CASE topic_id {'WHEN ? THEN ? ' * len(later)}ELSE ? END"
        query = (
            f"SELECT topic_id, timestamp, data FROM messages WHERE topic_id IN ({marks}) "
            f"AND timestamp >= ? AND timestamp < ?{per_id} ORDER BY timestamp, id"
        )
        starts = [value for pair in later.items() for value in pair] + [lo] if later else []
        for tid, stamp, data in self._db.execute(query, (*ids, lo, hi, *starts)):
            yield int(tid), int(stamp), bytes(data)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._copy is not None:
            self._copy.cleanup()
            self._copy = None


def open_storage(path: Path) -> McapStorage | SqliteStorage:
    """An opened reader for one storage file, chosen by its suffix."""
    storage: McapStorage | SqliteStorage
    if path.suffix == ".mcap":
        storage = McapStorage(path)
    elif path.suffix == ".db3":
        storage = SqliteStorage(path)
    else:
        raise StorageError(f"{path}: unknown storage file type (expected .mcap or .db3)")
    storage.open()
    return storage
