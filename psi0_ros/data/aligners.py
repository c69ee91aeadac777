"""One aligner per stream kind: collect an episode's messages, then put them on the control grid.

Each aligner takes the messages of its topic (add) and returns, per control tick, the value, a
valid mask and a late mask (align) by the rule of its stream (docs/data.md "Alignment"):
joint states interpolated or held, commands held, IMU held, camera frames nearest. Each records
the clock it aligned on (clock, docs/data.md "Clocks").
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image as PILImage

from psi0_ros.data.align import hold, interpolate, nearest, sort_by_time
from psi0_ros.data.bags import Stamped
from psi0_ros.data.cdr import RawJointState, decode_joint_state, decode_joint_state_batch
from psi0_ros.data.clocks import choose_times, near, seconds_to_ns
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.episode_schema import IMU_FIELDS
from psi0_ros.data.jpeg import encode_jpeg, encode_jpeg_message, packed_rgb8
from psi0_ros.data.streams import (
    UPPER_BODY_NAMES,
    imu_vectors,
    joint_columns,
    lower_body_vector,
    upper_body_columns,
)
from psi0_ros.g1 import ALL_JOINTS
from psi0_ros.image import image_to_rgb
from psi0_ros.layout import LOWER_BODY_DIM, NUM_JOINTS


class EpisodeError(Exception):
    """An episode that cannot be converted; the message says why (shown per episode)."""


class Samples:
    """Samples of one stream as read: both clocks and the payload per message.

    The payloads of a stream are vectors of one length (checked as they are added); align()
    stacks them with np.array, several times faster than np.stack on thousands of rows. The joint
    states' payloads are blocks of rows instead (JointStateAligner), joined with np.concatenate.
    """

    def __init__(self) -> None:
        self.receive: list[int] = []
        self.header: list[int] = []
        self.values: list[Any] = []

    def add(self, m: Stamped, value: Any) -> None:
        self.receive.append(m.receive_ns)
        self.header.append(m.header_ns)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def times(self, config: ConvertConfig) -> tuple[np.ndarray, str]:
        return choose_times(np.array(self.receive, dtype=np.int64), np.array(self.header, dtype=np.int64), config)


@dataclass
class Aligned:
    """A stream on the control grid (T ticks)."""

    values: Any  # (T, D) array; for the IMU a dict of them
    valid: np.ndarray  # (T,) bool: the tick has a value
    late: np.ndarray  # (T,) bool: the tick's value comes from a sample further away than the stream allows


def _group(groups: dict[tuple[str, ...], Samples], names: tuple[str, ...]) -> Samples:
    """The samples of one name list (created on its first message)."""
    samples = groups.get(names)
    if samples is None:
        samples = groups[names] = Samples()
    return samples


def _checked_vector(values: Any, length: int, topic: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (length,):
        raise EpisodeError(f"{topic}: a message has {array.size} positions for {length} names")
    return array


class JointStateAligner:
    """/joint_states: positions (and velocities, efforts when every message has them) of the 43
    joints, interpolated or held (config.state_rule); messages may each carry a subset of joints."""

    def __init__(self, topic: str, config: ConvertConfig) -> None:
        self.topic, self.config = topic, config
        self.groups: dict[tuple[str, ...], Samples] = {}
        # (length, layout) -> the names and the messages as bytes (RawJointState)
        self.raw: dict[tuple[int, bytes], tuple[tuple[str, ...], Samples]] = {}
        self.clock: str | None = None

    def add(self, m: Stamped) -> None:
        msg = m.msg
        if isinstance(msg, RawJointState):  # values decoded in align(), many messages at once
            key = (len(msg.raw), msg.layout)
            batch = self.raw.get(key)
            if batch is None:
                batch = self.raw[key] = (msg.name, Samples())
            batch[1].add(m, msg.raw)
            return
        names = tuple(msg.name)
        velocity = np.asarray(msg.velocity, dtype=np.float64)
        effort = np.asarray(msg.effort, dtype=np.float64)
        # A group's values are blocks of rows (positions, velocities or None, efforts or None):
        # one row per message here, a whole batch from _decode_raw.
        _group(self.groups, names).add(
            m,
            (
                _checked_vector(msg.position, len(names), self.topic)[None],
                velocity[None] if velocity.size == len(names) else None,
                effort[None] if effort.size == len(names) else None,
            ),
        )

    def _decode_raw(self) -> None:
        """Decode the messages add() kept as bytes, one batch per layout, into their name groups."""
        for names, batch in self.raw.values():
            arrays = decode_joint_state_batch(batch.values)
            group = _group(self.groups, names)
            if arrays is None:  # their sequences differ in length: one by one
                for receive, header, raw in zip(batch.receive, batch.header, batch.values, strict=True):
                    sample = decode_joint_state(raw)
                    if sample is None:
                        raise EpisodeError(f"{self.topic}: an undecodable JointState at {receive} ns")
                    self.add(Stamped(receive, header, sample))
                continue
            position, velocity, effort = arrays
            if position.shape[1] != len(names):
                raise EpisodeError(f"{self.topic}: a message has {position.shape[1]} positions for {len(names)} names")
            group.receive += batch.receive
            group.header += batch.header
            group.values.append(
                (
                    position,
                    velocity if velocity.shape[1] == len(names) else None,
                    effort if effort.shape[1] == len(names) else None,
                )
            )
        self.raw.clear()

    def align(self, ticks: np.ndarray) -> tuple[Aligned, np.ndarray | None, np.ndarray | None]:
        """(positions (T, 43), velocities or None, efforts or None)."""
        self._decode_raw()
        config = self.config
        t = ticks.size
        if not self.groups:
            return Aligned(np.zeros((t, NUM_JOINTS)), np.zeros(t, bool), np.zeros(t, bool)), None, None
        all_receive = [r for s in self.groups.values() for r in s.receive]
        all_header = [h for s in self.groups.values() for h in s.header]
        _, self.clock = choose_times(
            np.array(all_receive, dtype=np.int64), np.array(all_header, dtype=np.int64), config
        )
        use_header = self.clock == "header"
        positions = np.zeros((t, NUM_JOINTS))
        velocities = np.zeros((t, NUM_JOINTS))
        efforts = np.zeros((t, NUM_JOINTS))
        has_velocity = has_effort = True
        covered = np.zeros(NUM_JOINTS, dtype=bool)
        valid = np.ones(t, dtype=bool)
        late = np.zeros(t, dtype=bool)
        max_gap = seconds_to_ns(config.state_max_gap_s)
        for names, stream in self.groups.items():
            src, dst = joint_columns(names)
            if dst.size == 0:
                continue
            times = np.array(stream.header if use_header else stream.receive, dtype=np.int64)
            p = np.concatenate([v[0] for v in stream.values])[:, src]
            vel = [v[1] for v in stream.values]
            eff = [v[2] for v in stream.values]
            has_velocity &= all(v is not None for v in vel)
            has_effort &= all(v is not None for v in eff)
            columns = [p]
            if has_velocity:
                columns.append(np.concatenate(vel)[:, src])
            if has_effort:
                columns.append(np.concatenate(eff)[:, src])
            stacked = np.stack(columns, axis=1)  # (N, channels, k)
            times, stacked = sort_by_time(times, stacked)
            if config.state_rule == "interpolate":
                result = interpolate(times, stacked, ticks)
                values, ok, group_late = result.values, result.valid, result.span_ns > max_gap
            else:
                held = hold(times, stacked, ticks)
                ok = held.valid & (ticks <= times[-1] + max_gap)
                values, group_late = held.values, held.age_ns > max_gap
            positions[:, dst] = values[:, 0]
            if has_velocity:
                velocities[:, dst] = values[:, 1]
            if has_effort:
                efforts[:, dst] = values[:, 1 + int(has_velocity)]
            covered[dst] = True
            valid &= ok
            late |= group_late & ok
        if not covered.all():
            absent = [ALL_JOINTS[i] for i in np.flatnonzero(~covered)]
            raise EpisodeError(f"{self.topic} never reports joint(s) {absent}")
        return (
            Aligned(positions, valid, late),
            velocities if has_velocity else None,
            efforts if has_effort else None,
        )


class UpperBodyCommandAligner:
    """/psi0/upper_body_command (JointState by name): the 28 hand and arm targets in force."""

    def __init__(self, topic: str, config: ConvertConfig) -> None:
        self.topic, self.config = topic, config
        self.groups: dict[tuple[str, ...], Samples] = {}
        self.clock: str | None = None

    def add(self, m: Stamped) -> None:
        names = tuple(m.msg.name)
        _group(self.groups, names).add(m, _checked_vector(m.msg.position, len(names), self.topic))

    def align(self, ticks: np.ndarray) -> Aligned:
        config = self.config
        t = ticks.size
        out = np.zeros((t, len(UPPER_BODY_NAMES)))
        valid = np.ones(t, dtype=bool)
        late = np.zeros(t, dtype=bool)
        covered = np.zeros(len(UPPER_BODY_NAMES), dtype=bool)
        if not self.groups:
            return Aligned(out, np.zeros(t, bool), late)
        for names, stream in self.groups.items():
            src, dst = upper_body_columns(names)
            if dst.size == 0:
                continue
            times, self.clock = stream.times(config)
            times, values = sort_by_time(times, np.array(stream.values)[:, src])
            held = hold(times, values, ticks)
            out[:, dst] = held.values
            covered[dst] = True
            valid &= held.valid
            late |= held.valid & (held.age_ns > seconds_to_ns(config.command_timeout_s))
        if not covered.all():
            absent = [UPPER_BODY_NAMES[i] for i in np.flatnonzero(~covered)]
            raise EpisodeError(f"{self.topic} never commands joint(s) {absent}")
        return Aligned(out, valid, late)


class LowerBodyCommandAligner:
    """/psi0/lower_body_command: the 8-D lower-body command in force (sample-and-hold)."""

    def __init__(self, topic: str, config: ConvertConfig) -> None:
        self.topic, self.config = topic, config
        self.samples = Samples()
        self.clock: str | None = None

    def add(self, m: Stamped) -> None:
        self.samples.add(m, lower_body_vector(m.msg))

    def align(self, ticks: np.ndarray) -> Aligned:
        t = ticks.size
        if not len(self.samples):
            return Aligned(np.zeros((t, LOWER_BODY_DIM)), np.zeros(t, bool), np.zeros(t, bool))
        times, self.clock = self.samples.times(self.config)
        times, values = sort_by_time(times, np.array(self.samples.values))
        held = hold(times, values, ticks)
        late = held.valid & (held.age_ns > seconds_to_ns(self.config.command_timeout_s))
        return Aligned(held.values, held.valid, late)


class ImuAligner:
    """/imu/data: orientation, angular velocity, linear acceleration (sample-and-hold)."""

    def __init__(self, topic: str, config: ConvertConfig) -> None:
        self.topic, self.config = topic, config
        self.samples = Samples()
        self.clock: str | None = None

    def add(self, m: Stamped) -> None:
        self.samples.add(m, imu_vectors(m.msg))

    def align(self, ticks: np.ndarray) -> Aligned | None:
        """None when the bag has no IMU messages (the IMU is optional)."""
        if not len(self.samples):
            return None
        config = self.config
        times, self.clock = self.samples.times(config)
        order = np.argsort(times, kind="stable")
        times = times[order]
        held = hold(times, order, ticks)  # index of the sample in force
        max_gap = seconds_to_ns(config.state_max_gap_s)
        valid = held.valid & (ticks <= times[-1] + max_gap)
        values = {}
        for k, name in enumerate(IMU_FIELDS):
            column = np.array([v[k] for v in self.samples.values])
            values[name] = np.where(held.valid[:, None], column[held.values], 0.0)
        return Aligned(values, valid, held.valid & (held.age_ns > max_gap))


class _Pending:
    """The pixels of a frame whose JPEG is made only if a tick selects it (see CameraAligner)."""

    __slots__ = ("pixels",)

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels


class CameraAligner:
    """One camera's Image or CompressedImage topic: the nearest frame per tick, stored raw or JPEG.

    Frames far outside the episode window are never the nearest and are not encoded. Frames in
    the margins around it (outside START..STOP on both clocks, a few per episode) are kept as
    pixels and encoded only if a tick selects them; the JPEG is most of a frame's cost.
    """

    def __init__(self, name: str, topic: str, config: ConvertConfig, start_ns: int, stop_ns: int) -> None:
        self.name, self.topic, self.config = name, topic, config
        margin = seconds_to_ns(config.image_tolerance_s) + int(config.period_ns)
        self.lo, self.hi = start_ns - margin, stop_ns + margin
        self.start_ns, self.stop_ns = start_ns, stop_ns
        self.samples = Samples()
        self.shape: tuple[int, ...] | None = None
        self.clock: str | None = None
        self.kept_jpeg = False  # frames stored as the recorder compressed them

    def add(self, m: Stamped) -> None:
        if not near(m.receive_ns, m.header_ns, self.lo, self.hi):
            return
        msg = m.msg
        try:
            if hasattr(msg, "format"):  # sensor_msgs/CompressedImage
                shape, frame = self._compressed(msg)
            else:
                shape = (int(msg.height), int(msg.width), 3)
                if self.config.image_format == "raw":
                    frame = image_to_rgb(msg)
                elif near(m.receive_ns, m.header_ns, self.start_ns, self.stop_ns):
                    frame = encode_jpeg_message(msg, self.config.jpeg_quality)
                else:  # in a margin: encoded if selected (a packed rgb8 frame cannot fail to encode)
                    pixels = packed_rgb8(msg)
                    frame = encode_jpeg_message(msg, self.config.jpeg_quality) if pixels is None else _Pending(pixels)
        except ValueError as err:
            raise EpisodeError(f"camera {self.name} ({self.topic}): {err}") from err
        if self.shape is None:
            self.shape = shape
        elif self.shape != shape:
            raise EpisodeError(f"camera {self.name} changed size from {self.shape} to {shape}")
        self.samples.add(m, frame)

    def _compressed(self, msg: Any) -> tuple[tuple[int, int, int], Any]:
        """A CompressedImage: its JPEG bytes as they are when the episode stores JPEG (no
        decode, no re-encode), else decoded to RGB (raw storage, or PNG re-encoded as JPEG)."""
        data = bytes(msg.data)
        try:
            with PILImage.open(io.BytesIO(data)) as image:  # reads the header only
                width, height, kind, mode = image.width, image.height, image.format, image.mode
                if self.config.image_format == "jpeg" and kind == "JPEG" and mode == "RGB":
                    self.kept_jpeg = True
                    return (height, width, 3), data
                rgb = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError) as err:  # Pillow's errors for data that is no image
            raise ValueError(f"undecodable {msg.format!r} CompressedImage: {err}") from err
        if self.config.image_format == "raw":
            return rgb.shape, rgb
        return rgb.shape, encode_jpeg(rgb, self.config.jpeg_quality)

    def align(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index of the frame per tick, frame stamp - tick [ns], valid) per tick."""
        if not len(self.samples):
            t = ticks.size
            return np.zeros(t, dtype=np.intp), np.zeros(t, dtype=np.int64), np.zeros(t, dtype=bool)
        times, self.clock = self.samples.times(self.config)
        order = np.argsort(times, kind="stable")
        found = nearest(times[order], ticks)
        return order[found.index], found.offset_ns, np.ones(ticks.size, dtype=bool)

    def frames(self, selected: np.ndarray) -> Any:
        """The selected frames: (T, H, W, 3) uint8 when raw, else a list of JPEG bytes."""
        values = self.samples.values
        if self.config.image_format == "raw":
            return np.stack([values[i] for i in selected])
        for i in set(selected.tolist()):
            if isinstance(values[i], _Pending):
                values[i] = encode_jpeg(values[i].pixels, self.config.jpeg_quality)
        return [values[i] for i in selected]
