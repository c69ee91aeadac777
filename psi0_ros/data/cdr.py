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


def decode_joint_state(raw: bytes | memoryview) -> JointStateSample | None:
    """A JointState's fields from its CDR bytes, or None where the fast path does not apply."""
    try:
        pos, stamp_ns = _after_header(raw)
        section_start = pos = _aligned(pos, 4)
        for key, known in _known_names:
            if raw[section_start : section_start + len(key)] == key:
                names, pos = known, section_start + len(key)
                break
        else:
            count, pos = _u32(raw, pos)
            names, pos = _decode_names(raw, pos, count)
            if pos > len(raw):
                return None
            if len(_known_names) < _MAX_KNOWN:
                _known_names.append((bytes(raw[section_start:pos]), names))
        position, pos = _doubles(raw, pos)
        velocity, pos = _doubles(raw, pos)
        effort, pos = _doubles(raw, pos)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return JointStateSample(stamp_ns, names, position, velocity, effort)


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
