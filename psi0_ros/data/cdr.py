"""Fast paths for the heavy messages of a teleop bag: sensor_msgs/JointState, Imu and Image.

The robot bridge publishes /joint_states and /imu/data at hundreds of Hz, and the generic
rosbags deserialiser spends most of the conversion's decoding time on them (validating 43 joint
names again and again); an Image's pixels are ~1 MB a frame, which rosbags copies out of the
message while the fast path returns a view of them. These decoders read the CDR (little-endian, as every ROS 2 middleware
on x86/ARM writes it) directly: stamps, and numpy views of the values; joint names are decoded
once per distinct name list. Anything they do not expect (big-endian data, lengths that overrun
the buffer) returns None and the caller falls back to rosbags. test_data_cdr.py checks both
against rosbags on varied messages.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_CDR_LE = (b"\x00\x01", b"\x00\x03")  # CDR and PL_CDR, little-endian
_HEADER = 4  # encapsulation header; CDR alignment is relative to the byte after it


class JointStateSample(NamedTuple):
    stamp_ns: int
    name: tuple[str, ...]
    position: np.ndarray  # (N,) float64
    velocity: np.ndarray  # (N,) or (0,)
    effort: np.ndarray  # (N,) or (0,)


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = _HEADER

    def align(self, size: int) -> None:
        self.pos += -(self.pos - _HEADER) % size

    def u32(self) -> int:
        self.align(4)
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return value

    def skip_string(self) -> None:
        length = self.u32()
        self.pos += length

    def doubles(self) -> np.ndarray:
        count = self.u32()
        if count:
            self.align(8)
        end = self.pos + 8 * count
        if end > len(self.data):
            raise ValueError("sequence overruns the message")
        values = np.frombuffer(self.data, dtype="<f8", count=count, offset=self.pos)
        self.pos = end
        return values


def _after_header(raw: bytes | memoryview) -> tuple[_Cursor, int]:
    """A cursor just past the std_msgs/Header, and the header stamp [ns].

    Raises ValueError for what the fast path does not read (not little-endian CDR, too short).
    """
    if bytes(raw[:2]) not in _CDR_LE or len(raw) < _HEADER + 12:
        raise ValueError("not little-endian CDR with a header")
    cursor = _Cursor(raw)
    sec, nanosec = _STAMP.unpack_from(raw, cursor.pos)
    cursor.pos += 8
    cursor.skip_string()  # frame_id
    return cursor, sec * 1_000_000_000 + nanosec


# Name sections seen so far (count + strings, as bytes) and their decoded names. A message whose
# bytes at the same place equal a known section has exactly those names: the section is a
# complete length-prefixed sequence, so equal bytes parse to equal strings ending at the same byte.
_known_names: list[tuple[bytes, tuple[str, ...]]] = []
_MAX_KNOWN = 16


def decode_joint_state(raw: bytes | memoryview) -> JointStateSample | None:
    """A JointState's fields from its CDR bytes, or None where the fast path does not apply."""
    try:
        cursor, stamp_ns = _after_header(raw)
        cursor.align(4)
        section_start = cursor.pos
        names = None
        for key, known in _known_names:
            if raw[section_start : section_start + len(key)] == key:
                names, cursor.pos = known, section_start + len(key)
                break
        if names is None:
            count = cursor.u32()
            names = _decode_names(raw, cursor.pos, count)
            for _ in range(count):
                cursor.skip_string()
            if cursor.pos > len(raw):
                return None
            if len(_known_names) < _MAX_KNOWN:
                _known_names.append((bytes(raw[section_start : cursor.pos]), names))
        position = cursor.doubles()
        velocity = cursor.doubles()
        effort = cursor.doubles()
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return JointStateSample(stamp_ns, names, position, velocity, effort)


def _decode_names(raw: bytes | memoryview, start: int, count: int) -> tuple[str, ...]:
    cursor = _Cursor(raw)
    cursor.pos = start
    names = []
    for _ in range(count):
        length = cursor.u32()
        if length == 0:
            raise ValueError("CDR string without its terminating NUL")
        names.append(bytes(raw[cursor.pos : cursor.pos + length - 1]).decode("utf-8"))
        cursor.pos += length
    return tuple(names)


class ImuSample(NamedTuple):
    stamp_ns: int
    orientation: np.ndarray  # (4,) xyzw
    angular_velocity: np.ndarray  # (3,) rad/s
    linear_acceleration: np.ndarray  # (3,) m/s^2


_IMU_DOUBLES = 4 + 9 + 3 + 9 + 3 + 9  # orientation, covariance, angular velocity, cov, acceleration, cov


def decode_imu(raw: bytes | memoryview) -> ImuSample | None:
    """An Imu's stamp, orientation, angular velocity and acceleration, or None (use rosbags)."""
    try:
        cursor, stamp_ns = _after_header(raw)
        cursor.align(8)
        if cursor.pos + 8 * _IMU_DOUBLES > len(raw):
            return None
        values = np.frombuffer(raw, dtype="<f8", count=_IMU_DOUBLES, offset=cursor.pos)
    except (struct.error, ValueError):
        return None
    return ImuSample(stamp_ns, values[0:4], values[13:16], values[25:28])


class ImageSample(NamedTuple):
    """The fields of a sensor_msgs/Image that the converter reads (the CameraAligner, image_to_rgb)."""

    stamp_ns: int
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray  # (step * height,) uint8, a view of the message's bytes (no copy)


def decode_image(raw: bytes | memoryview) -> ImageSample | None:
    """An Image's header stamp, size, encoding and pixel bytes (a view), or None (use rosbags)."""
    try:
        cursor, stamp_ns = _after_header(raw)
        height = cursor.u32()
        width = cursor.u32()
        length = cursor.u32()
        if length == 0 or cursor.pos + length > len(raw):
            return None
        encoding = bytes(raw[cursor.pos : cursor.pos + length - 1]).decode("utf-8")
        cursor.pos += length
        if cursor.pos >= len(raw):
            return None
        is_bigendian = raw[cursor.pos]
        cursor.pos += 1
        step = cursor.u32()
        count = cursor.u32()
        if cursor.pos + count > len(raw):
            return None
        data = np.frombuffer(raw, dtype=np.uint8, count=count, offset=cursor.pos)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return ImageSample(stamp_ns, height, width, encoding, is_bigendian, step, data)
