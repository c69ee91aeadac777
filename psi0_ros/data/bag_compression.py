"""rosbag2's own compression: `ros2 bag record --compression-mode file|message` (format zstd).

What rosbag2 (rosbag2_compression, rosbag2_compression_zstd) leaves on disk:
- file mode: each storage file is compressed whole once it is closed (at a split or at the end)
  into `<name>.mcap.zstd` / `<name>.db3.zstd` (one zstd frame), and the uncompressed file is
  deleted. metadata.yaml names the compressed files in relative_file_paths and says
  `compression_format: zstd`, `compression_mode: FILE`. A recorder killed mid-recording leaves
  the file it was writing uncompressed (and no metadata.yaml); killed while compressing, it
  leaves the original beside a partial `.zstd`.
- message mode: each message's serialized (CDR) bytes are one zstd frame, stored in the storage
  file as the message data, in sqlite3 and in mcap alike (an mcap's own chunk compression comes
  on top of it); `compression_mode: MESSAGE`.
This module reads both: a compressed file is decompressed once per process into a private
temporary copy (streamed; what a cut-off file holds is kept), a compressed message on the fly.
It uses the zstd binding that `rosbags` depends on; nothing new to install.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

try:
    from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
except ImportError:
    from backports import zstd  # type: ignore[import-not-found,no-redef]

ZSTD_SUFFIX = ".zstd"  # rosbag2_compression_zstd's file identifier
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame; CDR data starts with its encapsulation header (0x00 ...)
MODES = ("none", "file", "message")
FORMATS = ("zstd",)  # the only compressor rosbag2 ships
READ_BLOCK = 1 << 20


class CompressionError(Exception):
    """A compressed file or message that cannot be decompressed; the message says why."""


def compression_of(info: dict) -> str:
    """The compression mode ("none", "file" or "message") metadata.yaml declares.

    Raises CompressionError for a mode or format rosbag2 does not write.
    """
    mode = str(info.get("compression_mode") or "none").strip().lower()
    fmt = str(info.get("compression_format") or "").strip().lower()
    if mode not in MODES:
        raise CompressionError(f"unknown compression_mode {mode!r} (rosbag2 writes none, file or message)")
    if mode != "none" and fmt not in FORMATS:
        raise CompressionError(f"compression_format {fmt!r} is not supported (rosbag2 writes zstd)")
    return mode


def inner_name(path: Path) -> str:
    """The storage file's own name: rec_0.mcap for rec_0.mcap.zstd."""
    return path.name[: -len(ZSTD_SUFFIX)] if path.name.endswith(ZSTD_SUFFIX) else path.name


def decompress_message(raw: bytes | memoryview) -> bytes | memoryview:
    """A message's CDR bytes from its zstd frame (message mode); anything else is returned as is."""
    if raw[:4] != ZSTD_MAGIC:
        return raw
    try:
        return zstd.decompress(raw)
    except zstd.ZstdError as err:
        raise CompressionError(f"damaged zstd-compressed message: {err}") from err


class _Copies:
    """Decompressed copies of compressed storage files, one per file and process (forked
    converter workers inherit the parent's), in a temporary directory removed at exit."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.owner = 0
        self.copies: dict[tuple[str, int, int], tuple[Path, bool]] = {}

    def get(self, path: Path) -> tuple[Path, bool]:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self.copies:
            if self.root is None:
                self.root, self.owner = Path(tempfile.mkdtemp(prefix="psi0-unzstd-")), os.getpid()
            folder = self.root / hashlib.sha1(key[0].encode()).hexdigest()[:16]
            folder.mkdir(exist_ok=True)
            target = folder / inner_name(path)
            self.copies[key] = (target, _decompress_file(path, target))
        return self.copies[key]

    def release(self) -> None:
        if self.root is not None and self.owner == os.getpid():
            shutil.rmtree(self.root, ignore_errors=True)
            self.root, self.copies = None, {}


_COPIES = _Copies()
atexit.register(_COPIES.release)


def decompressed_copy(path: Path) -> tuple[Path, bool]:
    """A decompressed copy of a `.zstd` storage file, and whether the compressed file was cut
    off (the copy then holds what the file still had)."""
    try:
        return _COPIES.get(Path(path))
    except OSError as err:
        raise CompressionError(f"cannot decompress {path}: {err.strerror or err}") from err


def release_decompressed() -> None:
    """Remove this process's decompressed copies now (otherwise at exit)."""
    _COPIES.release()


def _decompress_file(source: Path, target: Path) -> bool:
    """Stream source (zstd frames) into target, in bounded memory; True when source ends
    inside a frame (a cut-off file: the copy holds what it had)."""
    decompressor = zstd.ZstdDecompressor()
    in_frame = wrote = False
    with source.open("rb") as src, target.open("wb") as out:
        while block := src.read(READ_BLOCK):
            while True:
                try:
                    data = decompressor.decompress(block, READ_BLOCK)
                except zstd.ZstdError as err:
                    if not wrote:
                        raise CompressionError(f"{source}: not a zstd-compressed file ({err})") from err
                    return True  # damaged past here: what came before stands
                in_frame, block = True, b""
                out.write(data)
                wrote = wrote or bool(data)
                if decompressor.eof:  # another frame may follow
                    block, decompressor, in_frame = decompressor.unused_data, zstd.ZstdDecompressor(), False
                    if not block:
                        break
                elif decompressor.needs_input:
                    break
    return in_frame
