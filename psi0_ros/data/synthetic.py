"""Generated teleop bags: every stream the converter reads, at chosen rates, jitter and drops.

Used by the tests and by `psi0 bench convert`; written with rosbags, so no ROS 2 is needed.
Values are known functions of time so that a test can say what a converted episode must hold:
- joint positions: smooth sinusoids of the header stamp (joint_positions_at);
- commands: piecewise constant, one new value per message, exactly representable in float32;
- images: a textured scene (fractal value-noise "table", coloured objects that move, a slow
  camera pan clutter with sharp edges and per-frame sensor noise σ=2.5 levels), so JPEG sizes resemble a real head camera
  rather than the tiny files of flat or black frames.
The returned SyntheticRecord lists exactly what was written (stamps and values per stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from psi0_ros.constants import (
    LOWER_BODY_COMMAND_NAMES,
    TOPIC_CAMERA_INFO,
    TOPIC_EPISODE_EVENTS,
    TOPIC_IMAGE,
    TOPIC_IMU,
    TOPIC_INSTRUCTION,
    TOPIC_JOINT_STATES,
    TOPIC_LOWER_BODY_COMMAND,
    TOPIC_UPPER_BODY_COMMAND,
)
from psi0_ros.data.episodes import EventType
from psi0_ros.data.streams import LOWER_BODY_FIELDS, UPPER_BODY_NAMES
from psi0_ros.data.typestore import make_typestore
from psi0_ros.g1 import ALL_JOINTS, JOINT_SPECS, table
from psi0_ros.layout import NUM_JOINTS

BAG_START_NS = 1_700_000_000_000_000_000
_FREQ = np.linspace(0.3, 1.2, NUM_JOINTS)  # Hz, one per joint
_PHASE = np.linspace(0.0, 3.0, NUM_JOINTS)


@dataclass(frozen=True)
class StreamSpec:
    """Nominal rate [Hz], timing jitter σ [s], probability of dropping a message, and the
    receive latency [s] (receive time = header stamp + latency)."""

    rate_hz: float
    jitter_s: float = 0.0
    drop: float = 0.0
    latency_s: float = 0.002


@dataclass(frozen=True)
class SyntheticEpisode:
    start_s: float  # seconds after the bag start
    stop_s: float
    task: str = "pick up the red cup and place it in the bin"
    discard: bool = False
    outcome: EventType | None = EventType.SUCCESS


@dataclass(frozen=True)
class SyntheticBag:
    duration_s: float = 4.0
    episodes: tuple[SyntheticEpisode, ...] = (SyntheticEpisode(0.5, 3.5),)
    image: StreamSpec = StreamSpec(30.0, latency_s=0.010)
    joint_states: StreamSpec = StreamSpec(250.0)
    imu: StreamSpec | None = StreamSpec(250.0)
    upper_body: StreamSpec = StreamSpec(30.0)
    lower_body: StreamSpec = StreamSpec(30.0)
    width: int = 640
    height: int = 480
    storage: str = "mcap"
    instruction: str | None = None  # published once at the bag start (latched topic)
    events: bool = True  # write EpisodeEvents (False: one episode per bag)
    extra_events: tuple[tuple[float, EventType, int], ...] = ()  # (seconds, type, episode index)
    omit_topics: tuple[str, ...] = ()  # streams to leave out (bad-input tests)
    seed: int = 0


@dataclass
class StreamRecord:
    header_ns: list[int] = field(default_factory=list)
    receive_ns: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.header_ns, dtype=np.int64), np.array(self.receive_ns, dtype=np.int64)


@dataclass
class SyntheticRecord:
    path: Path
    streams: dict[str, StreamRecord]
    raw_image_bytes: int = 0

    @property
    def image_frames(self) -> int:
        return len(self.streams[TOPIC_IMAGE].header_ns)


def joint_positions_at(t_s: np.ndarray) -> np.ndarray:
    """(N,) seconds since the bag start -> (N, 43) joint positions [rad], inside the joint limits."""
    lower, upper = table("lower"), table("upper")
    middle, half = (lower + upper) / 2.0, (upper - lower) / 2.0
    return middle + 0.4 * half * np.sin(2 * np.pi * _FREQ * np.asarray(t_s)[:, None] + _PHASE)


def command_values(seq: int, width: int) -> np.ndarray:
    """The seq-th command of a stream: width values, multiples of 1/1024 (exact in float32)."""
    k = np.arange(width)
    return np.round(np.sin(0.05 * seq + 0.3 * k) * 512.0) / 1024.0


def plausible_command(seq: int, names: tuple[str, ...]) -> np.ndarray:
    """command_values() spread over 80 % of each named value's plausible range (joint limits,
    episode_schema.LOWER_BODY_PLAUSIBLE), still multiples of 1/1024 (exact in float32)."""
    from psi0_ros.data.episode_schema import JOINT_LIMIT_MARGIN_RAD, plausible_range

    low, high = plausible_range(names)
    joint = np.array([name in JOINT_SPECS for name in names])
    low = np.where(joint, low + JOINT_LIMIT_MARGIN_RAD, low)
    high = np.where(joint, high - JOINT_LIMIT_MARGIN_RAD, high)
    unit = command_values(seq, len(names)) * 2.0  # in [-1, 1]
    return np.round(((low + high) / 2.0 + 0.8 * (high - low) / 2.0 * unit) * 1024.0) / 1024.0


class SceneRenderer:
    """Textured frames of a slowly panning table scene with moving objects."""

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.width, self.height = width, height
        big_w, big_h = width + 256, height + 128
        texture = np.zeros((big_h, big_w), dtype=np.float32)
        for cells, weight in ((4, 0.45), (12, 0.25), (40, 0.15), (120, 0.1), (360, 0.05)):
            small = rng.random((max(2, cells * big_h // big_w), cells)).astype(np.float32)
            image = Image.fromarray(small, mode="F").resize((big_w, big_h), Image.Resampling.BICUBIC)
            texture += weight * np.asarray(image)
        grain = np.sin(np.arange(big_w, dtype=np.float32) * 0.9 + 6.0 * texture) * 0.08  # wood grain
        wood = np.array([150.0, 110.0, 75.0], dtype=np.float32)
        rows = np.linspace(0.8, 1.15, big_h, dtype=np.float32)[:, None, None]  # lighting falloff
        scene = wood * (0.55 + 0.9 * texture[..., None] + grain[..., None]) * rows
        # Clutter with sharp edges (tools, labels, cables): what makes real frames cost bytes.
        for _ in range(60):
            h, w = rng.integers(6, 60, size=2)
            y, x = rng.integers(0, big_h - h), rng.integers(0, big_w - w)
            scene[y : y + h, x : x + w] = rng.uniform(20, 235, size=3) * (0.85 + 0.3 * rng.random((h, w, 1)))
        self.background = np.clip(scene, 0, 255).astype(np.uint8)
        self.noise = [rng.normal(0.0, 2.5, (height, width, 1)).astype(np.int16) for _ in range(6)]
        yy, xx = np.mgrid[0:height, 0:width]
        self._yy, self._xx = yy, xx

    def frame(self, t_s: float, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB at time t_s."""
        x0 = int(128 + 100 * np.sin(0.3 * t_s))
        y0 = int(64 + 50 * np.sin(0.2 * t_s))
        rgb = self.background[y0 : y0 + self.height, x0 : x0 + self.width].astype(np.int16)
        cx, cy = self.width * (0.5 + 0.25 * np.sin(0.8 * t_s)), self.height * 0.6
        cup = (self._xx - cx) ** 2 + ((self._yy - cy) * 1.4) ** 2 < (self.height * 0.08) ** 2
        rgb[cup] = (200, 30, 40)
        box_x = int(self.width * 0.15 + 40 * np.cos(0.5 * t_s))
        rgb[int(self.height * 0.3) : int(self.height * 0.45), box_x : box_x + self.width // 6] = (40, 70, 170)
        rgb += self.noise[index % len(self.noise)]
        return np.clip(rgb, 0, 255).astype(np.uint8)


def _jittered_times(spec: StreamSpec, start_ns: int, stop_ns: int, rng: np.random.Generator) -> np.ndarray:
    period = 1e9 / spec.rate_hz
    nominal = start_ns + np.arange(int((stop_ns - start_ns) / period) + 1) * period
    stamps = nominal + rng.normal(0.0, spec.jitter_s * 1e9, nominal.shape)
    keep = rng.random(nominal.shape) >= spec.drop
    return np.sort(stamps[keep].astype(np.int64))


def write_synthetic_bag(path: Path, spec: SyntheticBag) -> SyntheticRecord:
    """Write a teleop bag at path (which must not exist) and return what it holds."""
    ts = make_typestore()
    T = ts.types
    rng = np.random.default_rng(spec.seed)
    start, stop = BAG_START_NS, BAG_START_NS + int(spec.duration_s * 1e9)
    messages: list[tuple[int, str, Any]] = []
    streams: dict[str, StreamRecord] = {}

    def header(stamp_ns: int, frame_id: str = "") -> Any:
        time_msg = T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return T["std_msgs/msg/Header"](stamp=time_msg, frame_id=frame_id)

    def add(topic: str, typename: str, msg: Any, stamp_ns: int, latency_s: float, value: Any) -> None:
        # msg may be a function making the message, so that images are rendered while writing
        receive = stamp_ns + int(latency_s * 1e9)
        if callable(msg):
            messages.append((receive, topic, lambda: bytes(ts.serialize_cdr(msg(), typename))))
        else:
            messages.append((receive, topic, bytes(ts.serialize_cdr(msg, typename))))
        record = streams.setdefault(topic, StreamRecord())
        record.header_ns.append(stamp_ns)
        record.receive_ns.append(receive)
        record.values.append(value)

    js_type = "sensor_msgs/msg/JointState"
    for stamp in _jittered_times(spec.joint_states, start, stop, rng):
        q = joint_positions_at(np.array([(stamp - start) / 1e9]))[0]
        msg = T[js_type](
            header=header(int(stamp), "pelvis"),
            name=list(ALL_JOINTS),
            position=q,
            velocity=np.zeros(NUM_JOINTS),
            effort=np.zeros(NUM_JOINTS),
        )
        add(TOPIC_JOINT_STATES, js_type, msg, int(stamp), spec.joint_states.latency_s, q)
    if spec.imu is not None:
        imu_type = "sensor_msgs/msg/Imu"
        quat, vec3 = T["geometry_msgs/msg/Quaternion"], T["geometry_msgs/msg/Vector3"]
        for stamp in _jittered_times(spec.imu, start, stop, rng):
            yaw = 0.1 * np.sin((stamp - start) / 1e9)
            msg = T[imu_type](
                header=header(int(stamp), "imu_link"),
                orientation=quat(x=0.0, y=0.0, z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2))),
                orientation_covariance=np.zeros(9),
                angular_velocity=vec3(x=0.0, y=0.0, z=0.1),
                angular_velocity_covariance=np.zeros(9),
                linear_acceleration=vec3(x=0.0, y=0.0, z=9.81),
                linear_acceleration_covariance=np.zeros(9),
            )
            add(TOPIC_IMU, imu_type, msg, int(stamp), spec.imu.latency_s, yaw)
    for seq, stamp in enumerate(_jittered_times(spec.upper_body, start, stop, rng)):
        values = plausible_command(seq, UPPER_BODY_NAMES)
        msg = T[js_type](
            header=header(int(stamp)),
            name=list(UPPER_BODY_NAMES),
            position=values,
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )
        add(TOPIC_UPPER_BODY_COMMAND, js_type, msg, int(stamp), spec.upper_body.latency_s, values)
    lb_type = "psi0_ros/msg/LowerBodyCommand"
    for seq, stamp in enumerate(_jittered_times(spec.lower_body, start, stop, rng)):
        values = plausible_command(seq + 1000, LOWER_BODY_COMMAND_NAMES)
        msg = T[lb_type](
            header=header(int(stamp)), **{f: float(v) for f, v in zip(LOWER_BODY_FIELDS, values, strict=True)}
        )
        add(TOPIC_LOWER_BODY_COMMAND, lb_type, msg, int(stamp), spec.lower_body.latency_s, values)
    renderer = SceneRenderer(spec.width, spec.height, spec.seed)
    image_type = "sensor_msgs/msg/Image"
    raw_bytes = 0
    for i, stamp in enumerate(_jittered_times(spec.image, start, stop, rng)):

        def image(stamp: int = int(stamp), i: int = i) -> Any:
            return T[image_type](
                header=header(stamp, "head_camera_optical_frame"),
                height=spec.height,
                width=spec.width,
                encoding="rgb8",
                is_bigendian=0,
                step=spec.width * 3,
                data=renderer.frame((stamp - start) / 1e9, i).reshape(-1),
            )

        raw_bytes += spec.width * spec.height * 3
        add(TOPIC_IMAGE, image_type, image, int(stamp), spec.image.latency_s, i)
    info_type = "sensor_msgs/msg/CameraInfo"
    fx = 0.5 * spec.width / np.tan(np.radians(45.0))
    info = T[info_type](
        header=header(start, "head_camera_optical_frame"),
        height=spec.height,
        width=spec.width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([fx, 0, spec.width / 2, 0, fx, spec.height / 2, 0, 0, 1], dtype=np.float64),
        r=np.eye(3).reshape(-1),
        p=np.array([fx, 0, spec.width / 2, 0, 0, fx, spec.height / 2, 0, 0, 0, 1, 0], dtype=np.float64),
        binning_x=0,
        binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    add(TOPIC_CAMERA_INFO, info_type, info, start, 0.001, None)
    if spec.instruction is not None:
        add(
            TOPIC_INSTRUCTION,
            "std_msgs/msg/String",
            T["std_msgs/msg/String"](data=spec.instruction),
            start,
            0.001,
            spec.instruction,
        )
    if spec.events:
        ev_type = "psi0_ros/msg/EpisodeEvent"
        for index, episode in enumerate(spec.episodes):
            marks = [(episode.start_s, EventType.START), (episode.stop_s, EventType.STOP)]
            if episode.discard:
                marks.append((episode.stop_s + 0.05, EventType.DISCARD))
            elif episode.outcome is not None:
                marks.append((episode.stop_s + 0.05, episode.outcome))
            for at_s, kind in marks:
                stamp = start + int(at_s * 1e9)
                msg = T[ev_type](header=header(stamp), type=int(kind), episode_index=index, task=episode.task)
                add(TOPIC_EPISODE_EVENTS, ev_type, msg, stamp, 0.001, (int(kind), index))
        for at_s, kind, index in spec.extra_events:
            stamp = start + int(at_s * 1e9)
            msg = T[ev_type](header=header(stamp), type=int(kind), episode_index=index, task="")
            add(TOPIC_EPISODE_EVENTS, ev_type, msg, stamp, 0.001, (int(kind), index))

    messages = [m for m in messages if m[1] not in spec.omit_topics]
    streams = {topic: record for topic, record in streams.items() if topic not in spec.omit_topics}
    messages.sort(key=lambda m: m[0])
    plugin = StoragePlugin.MCAP if spec.storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections = {}
        for topic in streams:
            typename = {
                TOPIC_JOINT_STATES: js_type,
                TOPIC_UPPER_BODY_COMMAND: js_type,
                TOPIC_LOWER_BODY_COMMAND: lb_type,
                TOPIC_IMU: "sensor_msgs/msg/Imu",
                TOPIC_IMAGE: image_type,
                TOPIC_CAMERA_INFO: info_type,
                TOPIC_INSTRUCTION: "std_msgs/msg/String",
                TOPIC_EPISODE_EVENTS: "psi0_ros/msg/EpisodeEvent",
            }[topic]
            connections[topic] = writer.add_connection(topic, typename, typestore=ts)
        for receive, topic, payload in messages:
            writer.write(connections[topic], receive, payload() if callable(payload) else payload)
    return SyntheticRecord(Path(path), streams, raw_bytes)
