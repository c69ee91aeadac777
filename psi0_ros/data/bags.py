"""Finding rosbag2 bags and decoding their messages with `rosbags` (no ROS 2 install needed).

A bag is a directory with metadata.yaml and one or more storage files (mcap or sqlite3; several
files when `ros2 bag record` split it), or a bare .mcap/.db3 file (e.g. what a killed recorder
left without metadata.yaml). Every failure is a BagError naming the bag and the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from psi0_ros.data.typestore import shared_typestore

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
            elif path.suffix in STORAGE_SUFFIXES:
                found.append(path)
            else:
                raise BagError(f"{path}: not a rosbag2 bag (expected a directory, {METADATA}, .mcap or .db3)")
            continue
        bags = _bags_under(path)
        if not bags:
            raise BagError(f"{path}: no rosbag2 bag found (no {METADATA}, .mcap or .db3 below it)")
        found.extend(bags)
    unique: list[Path] = []
    for bag in found:
        if bag.resolve() not in {b.resolve() for b in unique}:
            unique.append(bag)
    return unique


def _bags_under(directory: Path) -> list[Path]:
    if (directory / METADATA).is_file():
        return [directory]
    bags: list[Path] = []
    # Storage files directly here without metadata.yaml: read each file on its own.
    bags.extend(sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES))
    for child in sorted(p for p in directory.iterdir() if p.is_dir()):
        bags.extend(_bags_under(child))
    return bags


def bag_name(bag: Path) -> str:
    """A short name for output files: the bag directory's name or the storage file's stem."""
    return bag.stem if bag.is_file() else bag.name


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


@dataclass(frozen=True)
class Stamped:
    """One decoded message with its two clocks [ns]: the bag's receive time and header.stamp."""

    receive_ns: int
    header_ns: int  # 0 when the message has no header (or a zero stamp)
    msg: Any


def header_stamp_ns(msg: Any) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return 0
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class BagReader:
    """An open bag: topics, types and decoding. Use as a context manager."""

    def __init__(self, path: Path, typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        self._typestore = typestore or shared_typestore()
        self._reader: Reader | None = None
        self._decoders: dict[int, Callable[[bytes], Any]] = {}

    def __enter__(self) -> BagReader:
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as err:  # rosbags raises ReaderError, sqlite3 errors, OSError, KeyError ...
            raise BagError(f"{self.path}: cannot open bag: {type(err).__name__}: {err}") from err
        self._reader = reader
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            finally:
                self._reader = None

    @property
    def reader(self) -> Reader:
        if self._reader is None:
            raise BagError(f"{self.path}: bag is not open")
        return self._reader

    @property
    def start_ns(self) -> int:
        return int(self.reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self.reader.end_time)

    def topics(self) -> dict[str, str]:
        """topic -> message type of every connection (the first type where a topic has several)."""
        result: dict[str, str] = {}
        for conn in self.reader.connections:
            result.setdefault(conn.topic, conn.msgtype)
        return result

    def message_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in self.reader.connections:
            counts[conn.topic] = counts.get(conn.topic, 0) + int(conn.msgcount)
        return counts

    def connections(self, topic: str) -> list[Connection]:
        return [c for c in self.reader.connections if c.topic == topic]

    def check_type(self, topic: str, expected: str) -> list[Connection]:
        """The connections of a topic, after checking they carry the expected type."""
        conns = self.connections(topic)
        wrong = sorted({c.msgtype for c in conns if c.msgtype != expected})
        if wrong:
            raise BagError(f"{self.path}: topic {topic} has type {', '.join(wrong)}; expected {expected}")
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
        if known and (not conn.digest or conn.digest == self._typestore.hash_rihs01(conn.msgtype)):
            return self._typestore
        # Unknown here, or recorded with another definition: use the definition stored in the bag.
        if conn.msgdef.format == MessageDefinitionFormat.MSG and conn.msgdef.data:
            store = get_typestore(Stores.EMPTY)
            try:
                store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
                store.get_msgdef(conn.msgtype)
            except Exception as err:
                raise BagError(
                    f"{self.path}: topic {conn.topic}: cannot parse the bag's definition of {conn.msgtype}: {err}"
                ) from err
            return store
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
        fast: Mapping[str, Callable[[bytes], Any]] | None = None,
    ) -> Iterator[tuple[str, Stamped]]:
        """Decoded messages of the given topics in receive-time order, within [start_ns, stop_ns).

        fast: per topic a decoder returning an object with a stamp_ns attribute, or None to
        fall back to the full rosbags decoding (see cdr.py).
        """
        conns = [c for c in self.reader.connections if c.topic in set(topics)]
        if not conns:
            return
        decoders = {c.id: self.decoder(c) for c in conns}
        shortcuts = {c.id: fast[c.topic] for c in conns if fast and c.topic in fast}
        try:
            for conn, receive_ns, raw in self.reader.messages(conns, start=start_ns, stop=stop_ns):
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
