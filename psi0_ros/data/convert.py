"""rosbag2 teleop bags -> time-aligned episodes (HDF5 files, or a LeRobot v2.1 dataset).

plan: each bag's EpisodeEvents are read and cut into episodes (episodes.cut_episodes).
extract: one episode's streams are read in its time window and put on the control grid with
    the rule of each stream (align.py; docs/data.md "Alignment"), images JPEG-encoded.
write: the episode goes to its file under a temporary name, renamed when complete.
Episodes convert in parallel processes. Every failure is reported per episode (a bag that
cannot be opened fails its own episodes only) and the summary says what happened to each.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psi0_ros.data.align import control_grid, hold, interpolate, nearest, sort_by_time
from psi0_ros.data.bags import BagError, BagReader, find_bags, unique_bag_names
from psi0_ros.data.cdr import decode_imu, decode_joint_state
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.episodes import EpisodeSpan, Event, EventType, cut_episodes
from psi0_ros.data.hdf5 import EPISODE_SUFFIX, IMU_FIELDS, EpisodeData, write_episode
from psi0_ros.data.streams import (
    ALL_JOINTS,
    NUM_JOINTS,
    UPPER_BODY_NAMES,
    assemble_action,
    build_state,
    imu_vectors,
    joint_columns,
    lower_body_vector,
    upper_body_columns,
)
from psi0_ros.image import image_to_rgb
from psi0_ros.ros_messages import camera_info_to_attrs

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMU = "sensor_msgs/msg/Imu"
STRING = "std_msgs/msg/String"
LOWER_BODY_COMMAND = "psi0_ros/msg/LowerBodyCommand"
EPISODE_EVENT = "psi0_ros/msg/EpisodeEvent"

# Receive-time margins read around an episode. Messages reach the recorder after their header
# stamp, sometimes seconds later when the recorder falls behind on a loaded machine; a little
# before START covers a stamp slightly ahead of the recorder's clock.
READ_MARGIN_BEFORE_NS = 500_000_000
READ_MARGIN_NS = 5_000_000_000
# A stream's header stamps are on the recorder's clock when, in the median, they are at most
# this far ahead of the receive time (clocks of two hosts a little apart) and at most
# READ_MARGIN_NS behind it (the recorder lagging). Outside that window the stamps come from
# another clock (sim time, a robot clock never synchronised) and the stream is aligned on its
# receive time instead. A lagging recorder must not switch clocks: its receive times are late.
CLOCK_AHEAD_NS = 1_000_000_000
TAIL_NS = 500_000_000  # stamps this far past STOP: the stream has nothing more for the episode

STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_DISCARDED = "discarded"
STATUS_SKIPPED = "skipped"


class EpisodeError(Exception):
    """An episode that cannot be converted; the message says why (shown per episode)."""


def expected_types(config: ConvertConfig) -> dict[str, str]:
    """topic -> message type for every topic the converter reads."""
    types = {
        config.joint_states_topic: JOINT_STATE,
        config.upper_body_command_topic: JOINT_STATE,
        config.lower_body_command_topic: LOWER_BODY_COMMAND,
        config.imu_topic: IMU,
        config.camera_info_topic: CAMERA_INFO,
        config.events_topic: EPISODE_EVENT,
        config.instruction_topic: STRING,
    }
    types.update({topic: IMAGE for _, topic in config.cameras})
    return types


def required_topics(config: ConvertConfig) -> list[str]:
    return [
        config.joint_states_topic,
        config.upper_body_command_topic,
        config.lower_body_command_topic,
        *(topic for _, topic in config.cameras),
    ]


def choose_times(receive_ns: np.ndarray, header_ns: np.ndarray, config: ConvertConfig) -> tuple[np.ndarray, str]:
    """The stamps one stream is aligned on, and which clock that is (docs/data.md "Clocks")."""
    if config.time_source == "receive" or receive_ns.size == 0:
        return receive_ns, "receive"
    if np.any(header_ns == 0):
        return receive_ns, "receive (zero header stamps)"
    offset = float(np.median(header_ns - receive_ns))  # > 0: stamps ahead; < 0: received late
    if offset > CLOCK_AHEAD_NS or offset < -READ_MARGIN_NS:
        return receive_ns, f"receive (header clock off by {offset / 1e9:.1f} s)"
    return header_ns, "header"


def _near(receive_ns: int, header_ns: int, lo: int, hi: int) -> bool:
    """Whether a message may be near [lo, hi] on whichever clock its stream is aligned on."""
    return lo <= receive_ns <= hi or (header_ns != 0 and lo <= header_ns <= hi)


# --- planning --------------------------------------------------------------------------------


@dataclass
class EpisodeResult:
    """What happened to one episode (one entry of the JSON summary)."""

    bag: str
    episode_index: int | None
    status: str
    output: str | None = None
    frames: int = 0
    task: str = ""
    outcome: str = ""
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class EpisodeJob:
    """One unit of parallel work: an episode of a bag and where it goes."""

    bag: Path
    bag_name: str
    span: EpisodeSpan
    output: Path


def read_events(reader: BagReader, config: ConvertConfig) -> tuple[list[Event], list[tuple[int, str]]]:
    """The bag's EpisodeEvents on the alignment clock, and the instruction messages (t, text)."""
    present = reader.topics()
    topics = [t for t in (config.events_topic, config.instruction_topic) if t in present]
    for topic in topics:
        reader.check_type(topic, expected_types(config)[topic])
    raw_events: list[tuple[int, int, Any]] = []
    instructions: list[tuple[int, str]] = []
    for topic, m in reader.read(topics):
        if topic == config.events_topic:
            raw_events.append((m.receive_ns, m.header_ns, m.msg))
        else:
            instructions.append((m.receive_ns, str(m.msg.data)))
    receive = np.array([r for r, _, _ in raw_events], dtype=np.int64)
    header = np.array([h for _, h, _ in raw_events], dtype=np.int64)
    times, _ = choose_times(receive, header, config)
    events = []
    for t, (_, _, msg) in zip(times.tolist(), raw_events, strict=True):
        try:
            kind = EventType(int(msg.type))
        except ValueError:
            raise BagError(f"{reader.path}: EpisodeEvent with unknown type {msg.type}") from None
        events.append(Event(kind, int(t), int(msg.episode_index), str(msg.task)))
    return events, instructions


def instruction_for(span: EpisodeSpan, instructions: Sequence[tuple[int, str]]) -> str:
    """The instruction in force at the episode's START, else the first one during it, else ""."""
    before = [text for t, text in instructions if t <= span.start_ns]
    during = [text for t, text in instructions if span.start_ns < t <= span.stop_ns]
    return (before[-1:] or during[:1] or [""])[0]


def plan_bag(
    bag: Path, name: str, out_dir: Path, config: ConvertConfig, default_task: str
) -> tuple[list[EpisodeJob], list[EpisodeResult]]:
    """Cut one bag into episode jobs; discarded episodes and stray events become results."""
    try:
        with BagReader(bag) as reader:
            events, instructions = read_events(reader, config)
            cut = cut_episodes(events, reader.start_ns, reader.end_ns)
    except BagError as err:
        return [], [EpisodeResult(str(bag), None, STATUS_ERROR, error=str(err))]
    for span in cut.episodes:
        span.task = span.task or instruction_for(span, instructions) or default_task
    jobs: list[EpisodeJob] = []
    results = [EpisodeResult(str(bag), index, STATUS_ERROR, error=message) for index, message in cut.errors]
    for span in cut.episodes:
        if span.discarded:
            results.append(EpisodeResult(str(bag), span.index, STATUS_DISCARDED, task=span.task))
            continue
        output = out_dir / f"{name}_episode_{span.index:06d}{EPISODE_SUFFIX}"
        jobs.append(EpisodeJob(bag, name, span, output))
    return jobs, results


# --- extraction ------------------------------------------------------------------------------


class _Stream:
    """Samples of one stream as read: both clocks and the payload per message."""

    def __init__(self) -> None:
        self.receive: list[int] = []
        self.header: list[int] = []
        self.values: list[Any] = []

    def add(self, receive_ns: int, header_ns: int, value: Any) -> None:
        self.receive.append(receive_ns)
        self.header.append(header_ns)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def times(self, config: ConvertConfig) -> tuple[np.ndarray, str]:
        return choose_times(np.array(self.receive, dtype=np.int64), np.array(self.header, dtype=np.int64), config)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (4:2:0, libjpeg-turbo through Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_jpeg_message(msg: Any, quality: int) -> bytes:
    """An Image message -> JPEG bytes; a packed rgb8 image is encoded straight from its buffer."""
    from PIL import Image

    width, height = int(msg.width), int(msg.height)
    data = msg.data
    if str(msg.encoding).lower() != "rgb8" or int(msg.step) != width * 3 or len(data) != width * height * 3:
        return encode_jpeg(image_to_rgb(msg), quality)  # validates and converts other layouts
    if width <= 0 or height <= 0:
        raise ValueError(f"empty image: {width}x{height}")
    buffer = io.BytesIO()
    Image.frombuffer("RGB", (width, height), data, "raw", "RGB", 0, 1).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass
class _Aligned:
    values: Any  # (T, D) array; for the IMU a dict of them
    valid: np.ndarray
    late: np.ndarray  # (T,) bool: the tick's value comes from a sample further away than the stream allows


class _Extraction:
    """Reads one episode's window and aligns it; see extract_episode()."""

    def __init__(self, reader: BagReader, span: EpisodeSpan, config: ConvertConfig) -> None:
        self.reader, self.span, self.config = reader, span, config
        self.joints: dict[tuple[str, ...], _Stream] = {}
        self.upper: dict[tuple[str, ...], _Stream] = {}
        self.lower = _Stream()
        self.imu = _Stream()
        self.cameras = {name: _Stream() for name, _ in config.cameras}
        self.camera_info: dict[str, dict[str, Any]] = {}
        self.clocks: dict[str, str] = {}
        self.flags: list[str] = list(span.flags)

    def run(self) -> EpisodeData:
        self._read()
        return self._align()

    # reading
    def _read(self) -> None:
        config, reader = self.config, self.reader
        present = reader.topics()
        missing = [t for t in required_topics(config) if t not in present]
        if missing:
            raise EpisodeError(f"bag has no {', '.join(missing)} topic (required)")
        types = expected_types(config)
        topics = [t for t in types if t in present and t not in (config.events_topic, config.instruction_topic)]
        for topic in topics:
            reader.check_type(topic, types[topic])
        camera_of = {topic: name for name, topic in config.cameras}
        info_topic = config.camera_info_topic
        period = int(config.period_ns)
        tolerance = int(config.image_tolerance_s * 1e9)
        image_lo = self.span.start_ns - tolerance - period
        image_hi = self.span.stop_ns + tolerance + period
        # The commands in force at START may be older than the episode: read them back
        # lookback_s; everything else only from a margin before START.
        before = self.span.start_ns - READ_MARGIN_BEFORE_NS
        after = self.span.stop_ns + READ_MARGIN_NS
        commands = [t for t in (config.upper_body_command_topic, config.lower_body_command_topic) if t in topics]
        lookback = reader.read(commands, start_ns=before - int(config.lookback_s * 1e9), stop_ns=before)
        fast = {config.joint_states_topic: decode_joint_state, config.imu_topic: decode_imu}
        window = reader.read(topics, start_ns=before, stop_ns=after, fast=fast)
        # The read stops early once every stream has stamps past STOP + TAIL_NS: the receive-time
        # margin is only needed while some stream still lags behind.
        streaming = {t for t in topics if t != info_topic}
        done_after = self.span.stop_ns + TAIL_NS
        finished: set[str] = set()
        image_shape: dict[str, tuple[int, ...]] = {}
        for topic, m in itertools.chain(lookback, window):
            if (m.header_ns or m.receive_ns) > done_after and m.receive_ns > self.span.stop_ns:
                finished.add(topic)
                if finished >= streaming:
                    break
            msg = m.msg
            if topic == config.joint_states_topic:
                names = tuple(msg.name)
                velocity = np.asarray(msg.velocity, dtype=np.float64)
                effort = np.asarray(msg.effort, dtype=np.float64)
                stream = self.joints.setdefault(names, _Stream())
                stream.add(
                    m.receive_ns,
                    m.header_ns,
                    (
                        _checked_vector(msg.position, len(names), topic),
                        velocity if velocity.size == len(names) else None,
                        effort if effort.size == len(names) else None,
                    ),
                )
            elif topic == config.upper_body_command_topic:
                names = tuple(msg.name)
                self.upper.setdefault(names, _Stream()).add(
                    m.receive_ns, m.header_ns, _checked_vector(msg.position, len(names), topic)
                )
            elif topic == config.lower_body_command_topic:
                self.lower.add(m.receive_ns, m.header_ns, lower_body_vector(msg))
            elif topic == config.imu_topic:
                self.imu.add(m.receive_ns, m.header_ns, imu_vectors(msg))
            elif topic in camera_of:
                if not _near(m.receive_ns, m.header_ns, image_lo, image_hi):
                    continue  # frames far outside the episode are never the nearest: skip the encoding
                camera = camera_of[topic]
                shape = (int(msg.height), int(msg.width), 3)
                if image_shape.setdefault(camera, shape) != shape:
                    raise EpisodeError(f"camera {camera} changed size from {image_shape[camera]} to {shape}")
                try:
                    if config.image_format == "raw":
                        frame: Any = image_to_rgb(msg)
                    else:
                        frame = encode_jpeg_message(msg, config.jpeg_quality)
                except ValueError as err:
                    raise EpisodeError(f"camera {camera} ({topic}): {err}") from err
                self.cameras[camera].add(m.receive_ns, m.header_ns, frame)
            elif topic == info_topic:
                if not self.camera_info:
                    self.camera_info = {name: camera_info_to_attrs(msg) for name, _ in config.cameras[:1]}

    # alignment
    def _align(self) -> EpisodeData:
        config, span = self.config, self.span
        ticks = control_grid(span.start_ns, span.stop_ns, config.fps)
        if ticks.size == 0:
            raise EpisodeError("episode has no frames: it stops before it starts")
        positions, velocities, efforts = self._joint_states(ticks)
        upper = self._upper_body(ticks)
        lower = self._hold_stream(self.lower, ticks, config.lower_body_command_topic)
        imu = self._imu(ticks)
        cameras = {name: self._camera(name, ticks) for name, _ in config.cameras}

        streams = {
            "joint_states": positions.valid,
            "upper_body_command": upper.valid,
            "lower_body_command": lower.valid,
            **{f"camera {name}": valid for name, (_, _, valid) in cameras.items()},
        }
        if imu is not None:
            streams["imu"] = imu.valid
        valid = np.logical_and.reduce(list(streams.values()))
        if not valid.any():
            empty = [name for name, v in streams.items() if not v.any()]
            why = f"no data from {', '.join(empty)}" if empty else "the streams never overlap in time"
            raise EpisodeError(f"episode has no frames: {why} between START and STOP")
        keep = _longest_run(valid)
        if keep.stop - keep.start < int(valid.sum()):
            self.flags.append(f"split: kept the longest of several runs of complete ticks ({keep.stop - keep.start})")
        first, last = keep.start, keep.stop - 1

        def cut(a: np.ndarray) -> np.ndarray:
            return a[first : last + 1]

        self._flag("state_gap", cut(positions.late), f"joint_states further apart than {config.state_max_gap_s} s")
        self._flag("command_gap", cut(upper.late | lower.late), f"command older than {config.command_timeout_s} s")
        if imu is not None:
            self._flag("imu_gap", cut(imu.late), f"IMU sample older than {config.state_max_gap_s} s")
        images: dict[str, Any] = {}
        offsets: dict[str, np.ndarray] = {}
        for name, (frames, offset_ns, _) in cameras.items():
            offset_ns = cut(offset_ns)
            late = np.abs(offset_ns) > int(config.image_tolerance_s * 1e9)
            worst = float(np.abs(offset_ns).max()) / 1e9 if offset_ns.size else 0.0
            what = f"nearest frame > {config.image_tolerance_s} s away, worst {worst:.3f} s"
            self._flag(f"image_gap {name}", late, what)
            selected = cut(frames)
            if config.image_format == "raw":
                images[name] = np.stack([self.cameras[name].values[i] for i in selected])
            else:
                images[name] = [self.cameras[name].values[i] for i in selected]
            offsets[name] = (offset_ns / 1e9).astype(np.float32)

        joint_positions = cut(positions.values)
        lower_values = cut(lower.values)
        kept = cut(ticks)
        task = span.task
        if not task:
            self.flags.append("no_task: no task in the START event, on /psi0/instruction or given")
        attrs = {
            "task": task,
            "episode_index": span.index,
            "outcome": span.outcome,
            "fps": float(config.fps),
            "start_time_ns": int(span.start_ns),
            "stop_time_ns": int(span.stop_ns),
            "first_tick_ns": int(kept[0]),
            "trimmed": {"leading_ticks": int(first), "trailing_ticks": int(ticks.size - 1 - last)},
            "flags": self.flags,
            "alignment": self._alignment_attrs(),
        }
        return EpisodeData(
            timestamps=(kept - span.start_ns) / 1e9,
            action=assemble_action(cut(upper.values), lower_values),
            state=build_state(joint_positions, lower_values),
            joint_positions=joint_positions,
            joint_velocities=cut(velocities) if velocities is not None else None,
            joint_efforts=cut(efforts) if efforts is not None else None,
            imu={k: cut(v) for k, v in imu.values.items()} if imu is not None else None,
            images=images,
            image_offsets=offsets,
            camera_info=self.camera_info,
            attrs=attrs,
        )

    def _flag(self, name: str, mask: np.ndarray, what: str) -> None:
        count = int(np.count_nonzero(mask))
        if count:
            self.flags.append(f"{name}: {count} of {mask.size} ticks, {what}")

    def _joint_states(self, ticks: np.ndarray) -> tuple[_Aligned, np.ndarray | None, np.ndarray | None]:
        config = self.config
        t = ticks.size
        if not self.joints:
            return _Aligned(np.zeros((t, NUM_JOINTS)), np.zeros(t, bool), np.zeros(t, bool)), None, None
        all_receive = [r for s in self.joints.values() for r in s.receive]
        all_header = [h for s in self.joints.values() for h in s.header]
        _, clock = choose_times(np.array(all_receive, dtype=np.int64), np.array(all_header, dtype=np.int64), config)
        self.clocks[config.joint_states_topic] = clock
        use_header = clock == "header"
        positions = np.zeros((t, NUM_JOINTS))
        velocities = np.zeros((t, NUM_JOINTS))
        efforts = np.zeros((t, NUM_JOINTS))
        has_velocity = has_effort = True
        covered = np.zeros(NUM_JOINTS, dtype=bool)
        valid = np.ones(t, dtype=bool)
        late = np.zeros(t, dtype=bool)
        max_gap = int(config.state_max_gap_s * 1e9)
        for names, stream in self.joints.items():
            src, dst = joint_columns(names)
            if dst.size == 0:
                continue
            times = np.array(stream.header if use_header else stream.receive, dtype=np.int64)
            p = np.stack([v[0] for v in stream.values])[:, src]
            vel = [v[1] for v in stream.values]
            eff = [v[2] for v in stream.values]
            has_velocity &= all(v is not None for v in vel)
            has_effort &= all(v is not None for v in eff)
            columns = [p]
            if has_velocity:
                columns.append(np.stack(vel)[:, src])
            if has_effort:
                columns.append(np.stack(eff)[:, src])
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
            raise EpisodeError(f"{config.joint_states_topic} never reports joint(s) {absent}")
        return (
            _Aligned(positions, valid, late),
            velocities if has_velocity else None,
            efforts if has_effort else None,
        )

    def _upper_body(self, ticks: np.ndarray) -> _Aligned:
        config = self.config
        t = ticks.size
        topic = config.upper_body_command_topic
        out = np.zeros((t, len(UPPER_BODY_NAMES)))
        valid = np.ones(t, dtype=bool)
        late = np.zeros(t, dtype=bool)
        covered = np.zeros(len(UPPER_BODY_NAMES), dtype=bool)
        if not self.upper:
            return _Aligned(out, np.zeros(t, bool), late)
        for names, stream in self.upper.items():
            src, dst = upper_body_columns(names)
            if dst.size == 0:
                continue
            times, clock = stream.times(config)
            self.clocks[topic] = clock
            times, values = sort_by_time(times, np.stack(stream.values)[:, src])
            held = hold(times, values, ticks)
            out[:, dst] = held.values
            covered[dst] = True
            valid &= held.valid
            late |= held.valid & (held.age_ns > int(config.command_timeout_s * 1e9))
        if not covered.all():
            absent = [UPPER_BODY_NAMES[i] for i in np.flatnonzero(~covered)]
            raise EpisodeError(f"{topic} never commands joint(s) {absent}")
        return _Aligned(out, valid, late)

    def _hold_stream(self, stream: _Stream, ticks: np.ndarray, topic: str) -> _Aligned:
        t = ticks.size
        if not len(stream):
            return _Aligned(np.zeros((t, 8)), np.zeros(t, bool), np.zeros(t, bool))
        times, clock = stream.times(self.config)
        self.clocks[topic] = clock
        times, values = sort_by_time(times, np.stack(stream.values))
        held = hold(times, values, ticks)
        late = held.valid & (held.age_ns > int(self.config.command_timeout_s * 1e9))
        return _Aligned(held.values, held.valid, late)

    def _imu(self, ticks: np.ndarray) -> _Aligned | None:
        if not len(self.imu):
            return None
        config = self.config
        times, clock = self.imu.times(config)
        self.clocks[config.imu_topic] = clock
        order = np.argsort(times, kind="stable")
        times = times[order]
        held = hold(times, order, ticks)  # index of the sample in force
        max_gap = int(config.state_max_gap_s * 1e9)
        valid = held.valid & (ticks <= times[-1] + max_gap)
        values = {}
        for k, name in enumerate(IMU_FIELDS):
            column = np.stack([v[k] for v in self.imu.values])
            values[name] = np.where(held.valid[:, None], column[held.values], 0.0)
        return _Aligned(values, valid, held.valid & (held.age_ns > max_gap))

    def _camera(self, name: str, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        stream = self.cameras[name]
        if not len(stream):
            t = ticks.size
            return np.zeros(t, dtype=np.intp), np.zeros(t, dtype=np.int64), np.zeros(t, dtype=bool)
        times, clock = stream.times(self.config)
        self.clocks[dict(self.config.cameras)[name]] = clock
        order = np.argsort(times, kind="stable")
        found = nearest(times[order], ticks)
        return order[found.index], found.offset_ns, np.ones(ticks.size, dtype=bool)

    def _alignment_attrs(self) -> dict[str, Any]:
        c = self.config
        return {
            "grid": f"{c.fps} Hz from the episode START",
            "state": f"{c.state_rule} of {c.joint_states_topic} (gap flag > {c.state_max_gap_s} s)",
            "action": f"command in force (sample-and-hold) of {c.upper_body_command_topic} and "
            f"{c.lower_body_command_topic} (gap flag > {c.command_timeout_s} s)",
            "images": f"nearest frame (flag > {c.image_tolerance_s} s)",
            "imu": f"sample-and-hold of {c.imu_topic}",
            "image_format": c.image_format if c.image_format == "raw" else f"jpeg q{c.jpeg_quality}",
            "clocks": self.clocks,
        }


def _checked_vector(values: Any, length: int, topic: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (length,):
        raise EpisodeError(f"{topic}: a message has {array.size} positions for {length} names")
    return array


def _longest_run(mask: np.ndarray) -> slice:
    best, start = slice(0, 0), None
    for i, ok in enumerate(np.append(mask, False)):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start > best.stop - best.start:
                best = slice(start, i)
            start = None
    return best


def extract_episode(reader: BagReader, span: EpisodeSpan, config: ConvertConfig) -> EpisodeData:
    """Read an episode's window from an open bag and align it on the control grid."""
    episode = _Extraction(reader, span, config).run()
    episode.attrs["source_bags"] = [str(reader.path)]
    return episode


# --- one episode, start to finish (runs in a worker process) ----------------------------------


# Where a converted episode goes: a picklable callable (it travels to the worker processes).
EpisodeSink = Callable[[EpisodeData, EpisodeJob], Path]


@dataclass(frozen=True)
class HDF5Sink:
    overwrite: bool = False

    def __call__(self, episode: EpisodeData, job: EpisodeJob) -> Path:
        return write_episode(episode, job.output, overwrite=self.overwrite)


def convert_episode(job: EpisodeJob, config: ConvertConfig, sink: EpisodeSink) -> EpisodeResult:
    """Extract and write one episode; every failure becomes an error result (no file left)."""
    started = time.perf_counter()
    result = EpisodeResult(str(job.bag), job.span.index, STATUS_ERROR, task=job.span.task, outcome=job.span.outcome)
    try:
        with BagReader(job.bag) as reader:
            episode = extract_episode(reader, job.span, config)
        written = sink(episode, job)
        result.status, result.output = STATUS_OK, str(written)
        result.frames, result.task = episode.num_frames, str(episode.attrs.get("task", ""))
        result.flags = list(episode.attrs.get("flags", []))
    except FileExistsError as err:
        result.status, result.error = STATUS_SKIPPED, str(err)
    except (BagError, EpisodeError, OSError, ValueError) as err:
        result.error = str(err)
    except Exception as err:  # a bug or an unforeseen input: report it, keep converting the rest
        result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"
    result.seconds = round(time.perf_counter() - started, 3)
    return result


# --- many bags -------------------------------------------------------------------------------


@dataclass
class ConversionSummary:
    output: str
    format: str
    bags: list[str]
    episodes: list[EpisodeResult]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in (STATUS_OK, STATUS_ERROR, STATUS_DISCARDED, STATUS_SKIPPED)}
        for result in self.episodes:
            counts[result.status] += 1
        return counts

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.episodes)

    @property
    def ok(self) -> bool:
        return self.counts[STATUS_ERROR] == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "format": self.format,
            "bags": self.bags,
            "counts": self.counts,
            "frames": self.frames,
            "seconds": self.seconds,
            **self.extra,
            "episodes": [asdict(r) for r in self.episodes],
        }


def plan(
    paths: Iterable[Path | str], out_dir: Path, config: ConvertConfig, default_task: str = ""
) -> tuple[list[Path], list[EpisodeJob], list[EpisodeResult]]:
    """Find the bags under paths and cut each into episode jobs (errors become results)."""
    results: list[EpisodeResult] = []
    bags: list[Path] = []
    for path in paths:
        try:
            bags.extend(find_bags([path]))
        except BagError as err:
            results.append(EpisodeResult(str(path), None, STATUS_ERROR, error=str(err)))
    jobs: list[EpisodeJob] = []
    for bag, name in zip(bags, unique_bag_names(bags), strict=True):
        bag_jobs, bag_results = plan_bag(bag, name, out_dir, config, default_task)
        jobs.extend(bag_jobs)
        results.extend(bag_results)
    return bags, jobs, results


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; elsewhere (macOS, Windows) spawn is the safe default.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def run_jobs(
    jobs: Sequence[EpisodeJob],
    config: ConvertConfig,
    sink: EpisodeSink,
    workers: int,
    progress: bool = False,
) -> list[EpisodeResult]:
    """Convert the jobs, in parallel when workers > 1; results in job order."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="episode", disable=not progress, file=sys.stderr, desc="convert")
    results: list[EpisodeResult | None] = [None] * len(jobs)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = convert_episode(job, config, sink)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=_pool_context()) as pool:
                futures = {pool.submit(convert_episode, job, config, sink): i for i, job in enumerate(jobs)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def convert_bags(
    paths: Iterable[Path | str],
    out_dir: Path,
    config: ConvertConfig,
    workers: int | None = None,
    overwrite: bool = False,
    default_task: str = "",
    progress: bool = False,
) -> ConversionSummary:
    """Convert bags to one HDF5 file per episode in out_dir."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags, jobs, results = plan(paths, out_dir, config, default_task)
    results.extend(run_jobs(jobs, config, HDF5Sink(overwrite), workers or default_workers(), progress))
    results.sort(key=lambda r: (r.bag, -1 if r.episode_index is None else r.episode_index))
    return ConversionSummary(
        str(out_dir), "hdf5", [str(b) for b in bags], results, round(time.perf_counter() - started, 3)
    )


def export_lerobot(
    paths: Iterable[Path | str],
    out_dir: Path,
    config: ConvertConfig,
    workers: int | None = None,
    default_task: str = "",
    progress: bool = False,
    codec: str = "h264",
) -> ConversionSummary:
    """Convert bags to a new LeRobot v2.1 dataset in out_dir (episodes numbered in bag order)."""
    from psi0_ros.data.lerobot import LeRobotSink, check_output, finalize

    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_output(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags, jobs, results = plan(paths, out_dir, config, default_task)
    converted = run_jobs(jobs, config, LeRobotSink(out_dir, config.fps, codec), workers or default_workers(), progress)
    staged = [Path(r.output) for r in converted if r.status == STATUS_OK and r.output]
    written = finalize(out_dir, staged, config.fps)
    for result in converted:
        if result.status == STATUS_OK and result.output:
            result.output = str(written[result.output])
    results.extend(converted)
    results.sort(key=lambda r: (r.bag, -1 if r.episode_index is None else r.episode_index))
    return ConversionSummary(
        str(out_dir), "lerobot", [str(b) for b in bags], results, round(time.perf_counter() - started, 3)
    )
