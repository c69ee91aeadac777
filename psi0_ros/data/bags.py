"""Finding rosbag2 bags and decoding their messages with `rosbags` (no ROS 2 install needed).

A bag is a directory with metadata.yaml and one or more storage files (mcap or sqlite3; several
files when `ros2 bag record` split it), a directory of storage files without metadata.yaml (a
recorder that never finished: its files are read as one bag, in split order), or a bare
.mcap/.db3 file. Storage files are read by storage.py, which recovers what killed recorders
leave. Every failure is a BagError naming the bag and the cause.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import yaml
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.typesys.store import Typestore

from psi0_ros.data.bag_compression import (
    ZSTD_MAGIC,
    ZSTD_SUFFIX,
    CompressionError,
    compression_of,
    decompress_message,
    decompressed_copy,
    inner_name,
)
from psi0_ros.data.storage import StorageError, open_storage
from psi0_ros.data.typestore import bag_definition_store, shared_typestore

STORAGE_SUFFIXES = (".mcap", ".db3")
METADATA = "metadata.yaml"


class BagError(Exception):
    """A bag (or one of its topics) that cannot be read; the message says which and why."""


def find_bags(paths: Iterable[Path | str]) -> list[Path]:
    """Expand bag paths, bag directories and directories of bags into a sorted list of bags.

    Raises BagError for a path that does not exist or holds no bag.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise BagError(f"{path}: no such file or directory")
        if path.is_file():
            if path.name == METADATA:
                found.append(path.parent)
            elif is_storage_file(path):
                found.append(path)
            else:
                raise BagError(
                    f"{path}: not a rosbag2 bag (expected a directory, {METADATA}, .mcap, .db3 or their .zstd)"
                )
            continue
        bags = bags_under(path)
        if not bags:
            raise BagError(f"{path}: no rosbag2 bag found (no {METADATA}, .mcap or .db3 below it)")
        found.extend(bags)
    unique: list[Path] = []
    for bag in found:
        if bag.resolve() not in {b.resolve() for b in unique}:
            unique.append(bag)
    return unique


def bags_under(directory: Path) -> list[Path]:
    """Bags at or below a directory: one with metadata.yaml or storage files is one bag."""
    if (directory / METADATA).is_file():
        return [directory]
    if any(p.is_file() and is_storage_file(p) for p in directory.iterdir()):
        return [directory]  # storage files without metadata.yaml: one bag, read in split order
    bags: list[Path] = []
    for child in sorted(p for p in directory.iterdir() if p.is_dir()):
        bags.extend(bags_under(child))
    return bags


def is_bag(path: Path) -> bool:
    """Whether path is itself a bag as find_bags() takes it (not a directory of bags)."""
    if path.is_file():
        return path.name == METADATA or is_storage_file(path)
    return path.is_dir() and bags_under(path) == [path]


def is_storage_file(path: Path) -> bool:
    """A .mcap or .db3 storage file, or one rosbag2 compressed whole (.mcap.zstd, .db3.zstd)."""
    return PurePath(inner_name(path)).suffix in STORAGE_SUFFIXES


def bag_name(bag: Path) -> str:
    """A short name for output files: the bag directory's name or the storage file's stem."""
    return PurePath(inner_name(bag)).stem if bag.is_file() else bag.name


def unique_bag_names(bags: Sequence[Path]) -> list[str]:
    """bag_name() of each bag, suffixed where two bags share a name."""
    names = [bag_name(b) for b in bags]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        unique.append(name if count == 0 else f"{name}_{count}")
    return unique


class Stamped(NamedTuple):
    """One decoded message with its two clocks [ns]: the bag's receive time and header.stamp."""

    receive_ns: int
    header_ns: int  # 0 when the message has no header (or a zero stamp)
    msg: Any


def header_stamp_ns(msg: Any) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return 0
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass(frozen=True)
class BagMetadata:
    """What the reader takes from a bag's metadata.yaml."""

    files: list[str]  # relative_file_paths
    declared: dict[str, int]  # messages per topic (topics_with_message_count)
    compression: str  # "none", "file" or "message"


def read_metadata(path: Path) -> BagMetadata:
    """Parse a rosbag2 metadata.yaml; anything else is a BagError naming the file and the problem."""

    def bad(reason: str) -> BagError:
        return BagError(f"{path}: unreadable rosbag2 metadata: {reason}")

    try:
        text = path.read_bytes().decode("utf-8")
        document = _load_yaml(text)
    except OSError as err:
        raise bad(err.strerror or str(err)) from err
    except UnicodeDecodeError as err:
        raise bad(f"not UTF-8 text (byte {err.start})") from err
    except yaml.YAMLError as err:
        raise bad(f"not YAML ({str(err).splitlines()[0]})") from err
    except RecursionError as err:
        raise bad("nested too deeply") from err
    info = document.get("rosbag2_bagfile_information") if isinstance(document, dict) else None
    if not isinstance(info, dict):
        raise bad("no rosbag2_bagfile_information mapping")
    files = info.get("relative_file_paths")
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise bad("relative_file_paths is not a list of file names")
    declared: dict[str, int] = {}
    entries = info.get("topics_with_message_count") or []
    for entry in entries if isinstance(entries, list) else [entries]:
        try:
            topic, count = entry["topic_metadata"]["name"], entry["message_count"]
        except (KeyError, TypeError):
            raise bad(
                f"topics_with_message_count entry {entry!r:.80} lacks topic_metadata.name or message_count"
            ) from None
        if not isinstance(topic, str) or isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise bad(f"topics_with_message_count: {topic!r:.80} has message_count {count!r:.40}")
        declared[topic] = declared.get(topic, 0) + count
    try:
        compression = compression_of(info)
    except CompressionError as err:
        raise bad(str(err)) from err
    return BagMetadata(files, declared, compression)


def _load_yaml(text: str) -> Any:
    """yaml.safe_load, through libyaml where PyYAML has it (a bag's metadata.yaml loads ~8x
    faster, and every episode opens its bag). A document libyaml refuses is loaded again by the
    pure-Python loader, whose error (or result) is the one that counts."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)  # CSafeLoader: the safe loader in C
        except Exception:
            pass
    return yaml.safe_load(text)


def storage_files(bag: Path) -> tuple[list[Path], BagMetadata | None]:
    """The storage files of a bag in recording order, and its metadata.yaml (or None).

    Without metadata.yaml, a directory's storage files are one bag split by the recorder
    (name_0, name_1, ... in numeric order; where rosbag2 compressed a file but was killed before
    removing the original, the original); a file is a bag of its own.
    """
    if bag.is_file():
        return [bag], None
    metadata_path = bag / METADATA
    if metadata_path.is_file():
        info = read_metadata(metadata_path)
        files = [bag / PurePath(name).name for name in info.files]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise BagError(f"{bag}: storage file(s) named in {METADATA} are missing: {missing}")
        return files, info
    found = [p for p in bag.iterdir() if p.is_file() and is_storage_file(p)]
    names = {p.name for p in found}
    files = sorted(
        (p for p in found if not (p.name.endswith(ZSTD_SUFFIX) and inner_name(p) in names)), key=_split_order
    )
    if not files:
        raise BagError(f"{bag}: no {METADATA} and no .mcap/.db3 storage file")
    return files, None


def _split_order(path: Path) -> tuple[str, int, str]:
    """rosbag2 names split files <bag>_<n>.<ext>: order by the name, then n as a number."""
    name = PurePath(inner_name(path))
    stem, _, number = name.stem.rpartition("_")
    if stem and number.isdigit():
        return stem, int(number), name.suffix
    return name.stem, -1, name.suffix


class BagReader:
    """An open bag (all its storage files, read as one in time order). Use as a context manager.

    Connections keep their storage file's own fields but get bag-wide ids. truncated_files lists
    the storage files a recorder did not finish (read up to their last complete message).
    """

    def __init__(self, path: Path, typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        self._typestore = typestore or shared_typestore()
        self._storages: list[Any] | None = None
        self._connections: list[Connection] = []
        self._source: dict[int, tuple[Any, int]] = {}  # bag-wide id -> (storage, its own id)
        self._decoders: dict[int, Callable[[bytes], Any]] = {}
        self._declared: dict[str, int] = {}
        self._cut_files: list[Path] = []  # compressed storage files that end inside their zstd frame
        self._zstd_messages = False
        self.files: list[Path] = []

    def __enter__(self) -> BagReader:
        try:
            self.files, info = storage_files(self.path)
        except BagError as err:
            raise BagError(f"{self.path}: cannot open bag: {err}") from err
        # Message-mode compression: declared by metadata.yaml; without one (a killed recorder) each
        # message is looked at (a zstd frame's magic never starts CDR data).
        self._zstd_messages = info is None or info.compression == "message"
        self._storages = []
        try:
            for file in self.files:
                self._storages.append(self._open_storage(file))
        except (StorageError, CompressionError, OSError) as err:
            self.__exit__()
            raise BagError(f"{self.path}: cannot open bag: {err}") from err
        for storage in self._storages:
            for conn in storage.connections:
                bag_id = len(self._connections) + 1
                self._connections.append(conn._replace(id=bag_id))
                self._source[bag_id] = (storage, conn.id)
        if info is not None:
            self._declared = dict(info.declared)
        if not info:  # an MCAP file's own statistics say how many messages it holds
            for storage in self._storages:
                if getattr(storage, "file", None) is not None and storage.file.indexed:
                    for conn in storage.connections:
                        self._declared[conn.topic] = self._declared.get(conn.topic, 0) + conn.msgcount
        return self

    def _open_storage(self, file: Path) -> Any:
        """A storage file; one rosbag2 compressed whole (.zstd) is read from a decompressed copy."""
        if not file.name.endswith(ZSTD_SUFFIX):
            return open_storage(file)
        copy, cut = decompressed_copy(file)
        try:
            storage = open_storage(copy)
        except StorageError as err:
            raise StorageError(f"{file} (decompressed): {str(err).replace(str(copy), inner_name(file))}") from err
        storage.path = file  # reports name the file in the bag
        if cut:
            self._cut_files.append(file)
        return storage

    def __exit__(self, *exc: object) -> None:
        for storage in self._storages or []:
            storage.close()
        self._storages = None

    @property
    def storages(self) -> list[Any]:
        if self._storages is None:
            raise BagError(f"{self.path}: bag is not open")
        return self._storages

    @property
    def truncated_files(self) -> list[Path]:
        """Storage files their recorder did not finish: cut off, or the last file of a bag
        directory without metadata.yaml (rosbag2 writes it when the recording ends)."""
        files = [s.path for s in self.storages if s.truncated or s.path in self._cut_files]
        if self.path.is_dir() and not (self.path / METADATA).is_file() and self.files[-1] not in files:
            files.append(self.files[-1])
        return files

    def _time_ranges(self) -> list[tuple[int, int]]:
        return [s.time_range for s in self.storages if s.time_range is not None]

    @property
    def start_ns(self) -> int:
        ranges = self._time_ranges()
        return min(r[0] for r in ranges) if ranges else 0

    @property
    def end_ns(self) -> int:
        ranges = self._time_ranges()
        return max(r[1] for r in ranges) + 1 if ranges else 0  # one past the last message

    @property
    def connections_all(self) -> list[Connection]:
        self.storages  # noqa: B018 - raises when closed
        return list(self._connections)

    def topics(self) -> dict[str, str]:
        """topic -> message type of every connection (the first type where a topic has several)."""
        result: dict[str, str] = {}
        for conn in self.connections_all:
            result.setdefault(conn.topic, conn.msgtype)
        return result

    def message_counts(self) -> dict[str, int]:
        """Messages per topic that the storage files hold (what a full read returns)."""
        counts: dict[str, int] = {}
        for conn in self.connections_all:
            counts[conn.topic] = counts.get(conn.topic, 0) + int(conn.msgcount)
        return counts

    def declared_counts(self) -> dict[str, int]:
        """Messages per topic that the bag says it holds (metadata.yaml, or an MCAP's statistics)."""
        return dict(self._declared)

    def connections(self, topic: str) -> list[Connection]:
        return [c for c in self.connections_all if c.topic == topic]

    def check_type(self, topic: str, expected: str | Collection[str]) -> list[Connection]:
        """The connections of a topic, after checking they carry the (or one of the) expected type(s)."""
        accepted = {expected} if isinstance(expected, str) else set(expected)
        conns = self.connections(topic)
        wrong = sorted({c.msgtype for c in conns if c.msgtype not in accepted})
        if wrong:
            want = " or ".join(sorted(accepted))
            raise BagError(f"{self.path}: topic {topic} has type {', '.join(wrong)}; expected {want}")
        return conns

    def decoder(self, conn: Connection) -> Callable[[bytes], Any]:
        """A function decoding this connection's CDR bytes (types from the project or the bag)."""
        if conn.id not in self._decoders:
            store, typename = self._store_for(conn), conn.msgtype

            def decode(raw: bytes, store: Typestore = store, typename: str = typename) -> Any:
                return store.deserialize_cdr(raw, typename)

            self._decoders[conn.id] = decode
        return self._decoders[conn.id]

    def _store_for(self, conn: Connection) -> Typestore:
        known = conn.msgtype in self._typestore.types
        bag_store: Typestore | None = None
        parse_error: Exception | None = None
        if conn.msgdef.format == MessageDefinitionFormat.MSG and conn.msgdef.data:
            try:
                bag_store = bag_definition_store(conn.msgdef.data, conn.msgtype)
            except Exception as err:
                bag_store, parse_error = None, err
        if known:
            ours = self._typestore.hash_rihs01(conn.msgtype)
            digest = conn.digest
            if not digest and bag_store is not None:  # no hash recorded: hash the bag's own definition
                try:
                    digest = bag_store.hash_rihs01(conn.msgtype)
                except Exception:
                    digest = ""
            if not digest or digest == ours:
                return self._typestore
        # Unknown here, or recorded with another definition: use the definition stored in the bag.
        if bag_store is not None:
            return bag_store
        if parse_error is not None:
            raise BagError(
                f"{self.path}: topic {conn.topic}: cannot parse the bag's definition of {conn.msgtype}: {parse_error}"
            ) from parse_error
        if known:
            return self._typestore  # only the hash differs and the bag has no definition: trust the name
        raise BagError(
            f"{self.path}: topic {conn.topic} has unknown message type {conn.msgtype} "
            "and the bag stores no definition for it"
        )

    def read(
        self,
        topics: Sequence[str],
        start_ns: int | None = None,
        stop_ns: int | None = None,
        fast: Mapping[str, Callable[[bytes | memoryview], Any]] | None = None,
        topic_start_ns: Mapping[str, int] | None = None,
    ) -> Iterator[tuple[str, Stamped]]:
        """Decoded messages of the given topics in receive-time order, within [start_ns, stop_ns).

        fast: per topic a decoder returning an object with a stamp_ns attribute, or None to
        fall back to the full rosbags decoding (see cdr.py).
        topic_start_ns: a later start for some topics (their earlier messages are not read).
        """
        wanted = set(topics)
        conns = [c for c in self.connections_all if c.topic in wanted]
        if not conns:
            return
        decoders = {c.id: self.decoder(c) for c in conns}
        shortcuts = {c.id: fast[c.topic] for c in conns if fast and c.topic in fast}
        later = {c.id: topic_start_ns[c.topic] for c in conns if topic_start_ns and c.topic in topic_start_ns}
        zstd_messages = self._zstd_messages
        try:
            for conn, receive_ns, raw in self._raw(conns, start_ns, stop_ns, later):
                if zstd_messages and raw[:4] == ZSTD_MAGIC:
                    try:
                        raw = decompress_message(raw)
                    except CompressionError as err:
                        raise BagError(f"{self.path}: topic {conn.topic}: message at {receive_ns} ns: {err}") from err
                shortcut = shortcuts.get(conn.id)
                if shortcut is not None:
                    sample = shortcut(raw)
                    if sample is not None:
                        yield conn.topic, Stamped(int(receive_ns), int(sample.stamp_ns), sample)
                        continue
                try:
                    msg = decoders[conn.id](raw)
                except Exception as err:
                    raise BagError(
                        f"{self.path}: topic {conn.topic}: undecodable {conn.msgtype} message at "
                        f"{receive_ns} ns: {type(err).__name__}: {err}"
                    ) from err
                yield conn.topic, Stamped(int(receive_ns), header_stamp_ns(msg), msg)
        except BagError:
            raise
        except Exception as err:
            raise BagError(f"{self.path}: read failed: {type(err).__name__}: {err}") from err

    def _raw(
        self,
        conns: Sequence[Connection],
        start_ns: int | None,
        stop_ns: int | None,
        conn_start_ns: Mapping[int, int] | None = None,
    ) -> Iterator[tuple[Connection, int, bytes | memoryview]]:
        """Raw messages of the connections from every storage file, merged in time order
        (conn_start_ns: a later start for some connections, by bag-wide id)."""
        streams = []
        for storage in self.storages:
            local = {self._source[c.id][1]: c for c in conns if self._source[c.id][0] is storage}
            if local:
                starts = {
                    own: conn_start_ns[c.id] for own, c in local.items() if conn_start_ns and c.id in conn_start_ns
                }
                streams.append((local, storage.messages(local, start_ns, stop_ns, starts)))
        if len(streams) == 1:
            local, messages = streams[0]
            for own, stamp, raw in messages:
                yield local[own], stamp, raw
            return

        def stream(
            local: dict[int, Connection], messages: Iterator[tuple[int, int, Any]]
        ) -> Iterator[tuple[int, Connection, Any]]:
            for own, stamp, raw in messages:
                yield stamp, local[own], raw

        for stamp, conn, raw in heapq.merge(*(stream(*s) for s in streams), key=lambda item: item[0]):
            yield conn, stamp, raw

    def count_messages(self, topics: Sequence[str] | None = None) -> dict[str, int]:
        """Messages per topic that a full read returns (reads every message, decodes none)."""
        conns = [c for c in self.connections_all if topics is None or c.topic in topics]
        counts = {c.topic: 0 for c in conns}
        try:
            for conn, _, _ in self._raw(conns, None, None):
                counts[conn.topic] += 1
        except Exception as err:
            raise BagError(f"{self.path}: read failed: {type(err).__name__}: {err}") from err
        return counts

    def missing_messages(self, topics: Sequence[str] | None = None) -> list[str]:
        """One line per topic for which a full read returns fewer messages than the bag declares."""
        declared = self.declared_counts()
        read = self.count_messages(topics)
        return [
            f"{self.path}: topic {topic}: the bag declares {declared[topic]} messages, its files hold {count}"
            for topic, count in sorted(read.items())
            if topic in declared and count < declared[topic]
        ]
