"""A rosbag2 writer fed with serialized messages: what `psi0 record` runs where `ros2 bag` is missing.

The bag is the format `ros2 bag record` writes (metadata.yaml + mcap or sqlite3, message
definitions and type hashes from the typestore), so the converter and `ros2 bag play` read
both alike. Subscription callbacks only enqueue (write() never blocks on the disk); a writer
thread does the I/O. A write failure (disk full, permission) stops the recording and is kept in
`error`, raised again by close(); messages that arrive while the queue is full are counted as
dropped, never silently. close() drains the queue and writes metadata.yaml, so Ctrl-C leaves
a complete bag.

The recording also commits as it goes, so a recorder killed (SIGKILL, power loss) or stopped by
a full disk keeps everything older than COMMIT_PERIOD_S: sqlite3 commits a transaction, mcap
closes its chunk (message indexes follow it) and flushes the file, every COMMIT_PERIOD_S. Such a
bag has no metadata.yaml (mcap: no summary either); the converter reads it regardless
(bags.py, mcap_read.py) and says which episode was cut short.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from psi0_ros.data.typestore import make_typestore

_STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_ZERO = QosTime(0, 0)  # rmw's "unspecified" deadline / lifespan / lease
# At most this much recording [s] is lost when the recorder dies. Each commit costs an mcap chunk
# (~100 bytes of record and index overhead per channel) or a sqlite transaction (one fsync-free
# journal write): 1 s keeps both small next to the MB/s of a teleop recording.
COMMIT_PERIOD_S = 1.0


def _commit(writer: Writer) -> None:
    """Make what was written so far durable without closing the bag (rosbags 0.11 storage writers:
    Sqlite3Writer.conn, McapWriter.close_chunk()/bio; both pinned in constraints.txt)."""
    storage = writer.storage
    if storage is None:
        return
    conn = getattr(storage, "conn", None)
    if conn is not None:  # sqlite3
        conn.commit()
        return
    chunk = getattr(storage, "chunk", None)
    if chunk is not None and chunk.msgs:  # mcap: a chunk with messages in it
        storage.close_chunk()
    bio = getattr(storage, "bio", None)
    if bio is not None:
        bio.flush()


class RecorderError(RuntimeError):
    """The bag cannot be created or written; the message names the bag and the cause."""


@dataclass(frozen=True)
class OfferedQos:
    """What a publisher offers, as stored in the bag's metadata (ros2 bag play re-offers it)."""

    reliable: bool = True
    transient_local: bool = False
    depth: int = 10

    def to_rosbags(self) -> Qos:
        return Qos(
            QosHistory.KEEP_LAST,
            self.depth,
            QosReliability.RELIABLE if self.reliable else QosReliability.BEST_EFFORT,
            QosDurability.TRANSIENT_LOCAL if self.transient_local else QosDurability.VOLATILE,
            _ZERO,
            _ZERO,
            QosLiveliness.AUTOMATIC,
            _ZERO,
            False,
        )


@dataclass
class RecorderStats:
    path: str
    messages: dict[str, int] = field(default_factory=dict)  # topic -> written
    dropped: dict[str, int] = field(default_factory=dict)  # topic -> dropped (queue full or after an error)
    bytes_written: int = 0
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.messages.values())


_STOP = object()


class BagRecorder:
    """Record serialized CDR messages into a new rosbag2 bag at path (which must not exist)."""

    def __init__(
        self,
        path: Path,
        storage: str = "mcap",
        typestore: Typestore | None = None,
        max_queue_bytes: int = 1 << 30,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        if storage not in _STORAGE:
            raise ValueError(f"storage must be one of {sorted(_STORAGE)}, got {storage!r}")
        self.path = Path(path)
        self.storage = storage
        self._typestore = typestore or make_typestore()
        self._max_queue_bytes = max_queue_bytes
        self._on_error = on_error
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._topics: dict[str, str] = {}
        self.stats = RecorderStats(str(self.path))
        self._closed = False

    @property
    def error(self) -> str | None:
        return self.stats.error

    @property
    def topics(self) -> dict[str, str]:
        return dict(self._topics)

    def open(self) -> BagRecorder:
        """Create the bag directory and storage file; RecorderError if that is impossible.

        The writer thread opens, writes and closes the storage (sqlite3 objects must stay on
        the thread that made them).
        """
        if self.path.exists():
            raise RecorderError(f"{self.path} exists already; choose a new bag name")
        opened = threading.Event()
        failure: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(opened, failure), name="bag-writer", daemon=True)
        self._thread.start()
        opened.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise RecorderError(failure[0])
        return self

    def add_topic(self, topic: str, msgtype: str, qos: OfferedQos | None = None) -> None:
        """Register a topic before its first message; RecorderError for a type without definition."""
        if topic in self._topics:
            if self._topics[topic] != msgtype:
                raise RecorderError(f"{topic} is recorded as {self._topics[topic]}, not {msgtype}")
            return
        try:
            msgdef, _ = self._typestore.generate_msgdef(msgtype, ros_version=2)
            digest = self._typestore.hash_rihs01(msgtype)
        except Exception as err:
            raise RecorderError(f"cannot record {topic}: no message definition for {msgtype} ({err})") from err
        self._topics[topic] = msgtype
        self._queue.put(("topic", topic, msgtype, msgdef, digest, (qos or OfferedQos()).to_rosbags()))

    def write(self, topic: str, data: bytes, timestamp_ns: int) -> bool:
        """Queue one serialized message (receive time in ns); False if it was dropped."""
        size = len(data)
        with self._lock:
            if self._closed:
                return False  # arrived after the recording ended: not part of it, not a loss
            if self.stats.error is not None or topic not in self._topics:
                self.stats.dropped[topic] = self.stats.dropped.get(topic, 0) + 1
                return False
            if self._queued_bytes + size > self._max_queue_bytes:
                self.stats.dropped[topic] = self.stats.dropped.get(topic, 0) + 1
                return False
            self._queued_bytes += size
        self._queue.put(("msg", topic, bytes(data), int(timestamp_ns)))
        return True

    def close(self) -> RecorderStats:
        """Write everything queued, then metadata.yaml. Raises RecorderError if writing failed."""
        with self._lock:
            if self._closed:
                return self.stats
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        if self.stats.error is not None:
            raise RecorderError(self.stats.error)
        return self.stats

    def _fail(self, message: str) -> None:
        with self._lock:
            first = self.stats.error is None
            if first:
                self.stats.error = message
        if first and self._on_error is not None:
            self._on_error(message)

    def _run(self, opened: threading.Event, failure: list[str]) -> None:
        try:
            writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=_STORAGE[self.storage])
            writer.open()
        except Exception as err:
            failure.append(f"cannot create bag {self.path}: {err}")
            opened.set()
            return
        opened.set()
        connections: dict[str, Any] = {}
        committed = time.monotonic()
        pending = False  # written since the last commit
        while True:
            try:
                item = self._queue.get(timeout=COMMIT_PERIOD_S)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if pending and self.stats.error is None and time.monotonic() - committed >= COMMIT_PERIOD_S:
                try:
                    _commit(writer)
                except Exception as err:
                    self._fail(f"writing bag {self.path} failed: {type(err).__name__}: {err}")
                committed, pending = time.monotonic(), False
            if item is None:
                continue
            if self.stats.error is not None:
                if item[0] == "msg":
                    with self._lock:
                        self._queued_bytes -= len(item[2])
                        self.stats.dropped[item[1]] = self.stats.dropped.get(item[1], 0) + 1
                continue
            try:
                if item[0] == "topic":
                    _, topic, msgtype, msgdef, digest, qos = item
                    connections[topic] = writer.add_connection(
                        topic, msgtype, msgdef=msgdef, rihs01=digest, offered_qos_profiles=[qos]
                    )
                    self.stats.messages.setdefault(topic, 0)
                else:
                    _, topic, data, stamp = item
                    try:
                        writer.write(connections[topic], stamp, data)
                    finally:
                        with self._lock:
                            self._queued_bytes -= len(data)
                    pending = True
                    self.stats.messages[topic] += 1
                    self.stats.bytes_written += len(data)
            except Exception as err:
                if item[0] == "msg":
                    self.stats.dropped[item[1]] = self.stats.dropped.get(item[1], 0) + 1
                self._fail(f"writing bag {self.path} failed: {type(err).__name__}: {err}")
        if self.stats.error is not None:
            # A failed write (disk full): keep what was committed and leave the bag marked
            # unfinished (no metadata.yaml, no mcap summary), so readers say what was cut short.
            try:
                writer.abort()
            except Exception:
                pass
            return
        try:
            writer.close()  # flushes the storage and writes metadata.yaml
        except Exception as err:
            self._fail(f"closing bag {self.path} failed: {type(err).__name__}: {err}")
            try:
                writer.abort()
            except Exception:
                pass
