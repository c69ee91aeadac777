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
_STAMP_AND_FRAME_ID = struct.Struct("<iII")  # header.stamp sec, nanosec, then the frame_id's length
_F8 = np.dtype("<f8")
_HEADER = 4  # encapsulation header; CDR alignment is relative to the byte after it


class JointStateSample(NamedTuple):
    stamp_ns: int
    name: tuple[str, ...]
    position: np.ndarray  # (N,) float64
    velocity: np.ndarray  # (N,) or (0,)
    effort: np.ndarray  # (N,) or (0,)


# The readers below are plain functions over (raw, position) pairs: they run for every message
# of the 250 Hz streams, where a cursor object's method calls cost as much as the decoding.


def _aligned(pos: int, size: int) -> int:
    return pos + -(pos - _HEADER) % size


def _u32(raw: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The aligned u32 at pos, and the position after it."""
    pos = _aligned(pos, 4)
    return _U32.unpack_from(raw, pos)[0], pos + 4


def _doubles(raw: bytes | memoryview, pos: int) -> tuple[np.ndarray, int]:
    """A float64 sequence at pos (a view of raw), and the position after it."""
    count, pos = _u32(raw, pos)
    if count:
        pos = _aligned(pos, 8)
    end = pos + 8 * count
    if end > len(raw):
        raise ValueError("sequence overruns the message")
    return np.frombuffer(raw, dtype=_F8, count=count, offset=pos), end


def _after_header(raw: bytes | memoryview) -> tuple[int, int]:
    """The position just past the std_msgs/Header, and the header stamp [ns].

    Raises ValueError for what the fast path does not read (not little-endian CDR, too short).
    """
    # CDR or PL_CDR, little-endian: encapsulation 0x00 0x01 or 0x00 0x03
    if len(raw) < _HEADER + 12 or raw[0] != 0 or raw[1] not in (1, 3):
        raise ValueError("not little-endian CDR with a header")
    sec, nanosec, frame_id_length = _STAMP_AND_FRAME_ID.unpack_from(raw, _HEADER)
    return _HEADER + 12 + frame_id_length, sec * 1_000_000_000 + nanosec


# Name sections seen so far (count + strings, as bytes) and their decoded names. A message whose
# bytes at the same place equal a known section has exactly those names: the section is a
# complete length-prefixed sequence, so equal bytes parse to equal strings ending at the same byte.
_known_names: list[tuple[bytes, tuple[str, ...]]] = []
_MAX_KNOWN = 16


def _names_end(raw: bytes | memoryview, section_start: int) -> tuple[tuple[str, ...], int]:
    """The joint names whose section starts at section_start, and the position after them."""
    for key, known in _known_names:
        # bytes() first: a memoryview compares element by element, ~6x slower for 1 KB of names
        if bytes(raw[section_start : section_start + len(key)]) == key:
            return known, section_start + len(key)
    count, pos = _u32(raw, section_start)
    names, pos = _decode_names(raw, pos, count)
    if pos > len(raw):
        raise ValueError("names overrun the message")
    if len(_known_names) < _MAX_KNOWN:
        _known_names.append((bytes(raw[section_start:pos]), names))
    return names, pos


def decode_joint_state(raw: bytes | memoryview) -> JointStateSample | None:
    """A JointState's fields from its CDR bytes, or None where the fast path does not apply."""
    try:
        pos, stamp_ns = _after_header(raw)
        names, pos = _names_end(raw, _aligned(pos, 4))
        position, pos = _doubles(raw, pos)
        velocity, pos = _doubles(raw, pos)
        effort, pos = _doubles(raw, pos)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return JointStateSample(stamp_ns, names, position, velocity, effort)


class RawJointState(NamedTuple):
    """A JointState read only up to its names (peek_joint_state); decode_joint_state_batch decodes
    the rest of many at once. Messages with equal `layout` have equal bytes up to the values, stamp aside."""

    stamp_ns: int
    name: tuple[str, ...]
    layout: bytes  # the encapsulation and everything from the frame_id to the values (of equal-length messages)
    raw: bytes


def peek_joint_state(raw: bytes | memoryview) -> RawJointState | None:
    """A JointState's stamp and names, its values left in its bytes (a copy), or None where the
    fast path does not apply. At hundreds of Hz, decoding each message's three arrays one by one
    costs more than everything else the converter does with it."""
    try:
        pos, stamp_ns = _after_header(raw)
        names, values_at = _names_end(raw, _aligned(pos, 4))
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    data = bytes(raw)
    # the stamp (bytes 4-12) is all that differs between messages of one layout
    return RawJointState(stamp_ns, names, data[:_HEADER] + data[_HEADER + 8 : values_at], data)


def _sequence_at(raw: bytes | memoryview, pos: int) -> tuple[int, int, int]:
    """(where its count is, where its float64 values start, the count) of the sequence at pos."""
    count_at = _aligned(pos, 4)
    count = _U32.unpack_from(raw, count_at)[0]
    start = _aligned(count_at + 4, 8) if count else count_at + 4
    if start + 8 * count > len(raw):
        raise ValueError("sequence overruns the message")
    return count_at, start, count


def decode_joint_state_batch(raws: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(positions, velocities, efforts), each (N, count) float64, of N messages of one layout and
    length (RawJointState.layout); None where they do not share where their
    three sequences sit (their counts differ), for the caller to decode them one by one."""
    first = raws[0]
    try:
        pos, _ = _after_header(first)
        _, pos = _names_end(first, _aligned(pos, 4))
        sequences = []
        for _ in range(3):
            count_at, start, count = _sequence_at(first, pos)
            sequences.append((count_at, start, count))
            pos = start + 8 * count
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    rows = np.frombuffer(b"".join(raws), dtype=np.uint8).reshape(len(raws), len(first))
    arrays = []
    for count_at, start, count in sequences:
        if not (rows[:, count_at : count_at + 4] == rows[0, count_at : count_at + 4]).all():
            return None
        arrays.append(np.ascontiguousarray(rows[:, start : start + 8 * count]).view(_F8).reshape(len(raws), count))
    return arrays[0], arrays[1], arrays[2]


def _decode_names(raw: bytes | memoryview, pos: int, count: int) -> tuple[tuple[str, ...], int]:
    """count CDR strings from pos, and the position after them."""
    names = []
    for _ in range(count):
        length, pos = _u32(raw, pos)
        if length == 0:
            raise ValueError("CDR string without its terminating NUL")
        names.append(bytes(raw[pos : pos + length - 1]).decode("utf-8"))
        pos += length
    return tuple(names), pos


class ImuSample(NamedTuple):
    stamp_ns: int
    orientation: np.ndarray  # (4,) xyzw
    angular_velocity: np.ndarray  # (3,) rad/s
    linear_acceleration: np.ndarray  # (3,) m/s^2


_IMU_DOUBLES = 4 + 9 + 3 + 9 + 3 + 9  # orientation, covariance, angular velocity, cov, acceleration, cov


def decode_imu(raw: bytes | memoryview) -> ImuSample | None:
    """An Imu's stamp, orientation, angular velocity and acceleration, or None (use rosbags)."""
    try:
        pos, stamp_ns = _after_header(raw)
        pos = _aligned(pos, 8)
        if pos + 8 * _IMU_DOUBLES > len(raw):
            return None
        values = np.frombuffer(raw, dtype=_F8, count=_IMU_DOUBLES, offset=pos)
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
        pos, stamp_ns = _after_header(raw)
        height, pos = _u32(raw, pos)
        width, pos = _u32(raw, pos)
        length, pos = _u32(raw, pos)
        if length == 0 or pos + length > len(raw):
            return None
        encoding = bytes(raw[pos : pos + length - 1]).decode("utf-8")
        pos += length
        if pos >= len(raw):
            return None
        is_bigendian = raw[pos]
        step, pos = _u32(raw, pos + 1)
        count, pos = _u32(raw, pos)
        if pos + count > len(raw):
            return None
        data = np.frombuffer(raw, dtype=np.uint8, count=count, offset=pos)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return ImageSample(stamp_ns, height, width, encoding, is_bigendian, step, data)
