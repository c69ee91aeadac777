"""The episode file's layout (shared/DESIGN.md §5), in one place: keys, shapes, dtypes, attributes.

    /timestamps                         (T,)      float64  s since the episode's START
    /action                             (T, 36)   float32  command in force (constants.ACTION_NAMES)
    /observations/state                 (T, 36)   float32  32-D state zero-padded (layout.build_state)
    /observations/joint_positions       (T, 43)   float64  rad, psi0_ros.g1.ALL_JOINTS order
    /observations/joint_velocities      (T, 43)   float64  rad/s (when every joint_states has them)
    /observations/joint_efforts         (T, 43)   float64  N·m (when every joint_states has them)
    /observations/imu/orientation       (T, 4)    float64  xyzw (when the bag has /imu/data)
    /observations/imu/angular_velocity  (T, 3)    float64  rad/s
    /observations/imu/linear_acceleration (T, 3)  float64  m/s^2
    /observations/images/<camera>       (T,) vlen uint8 JPEG bytes, or (T, H, W, 3) uint8 raw
    /observations/image_offsets/<camera> (T,)     float32  s, frame stamp - tick (alignment error)

Root attributes: ROOT_ATTRS below. Every dataset carries a CRC-32 of its bytes (CHECKSUM_ATTR),
so `psi0 inspect` finds flipped bytes without decoding images. The writer and reader (hdf5.py),
`psi0 inspect` (validate.py) and the training statistics (policy/transforms.py, through the
reader) all take the layout from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psi0_ros.constants import ACTION_DIM, ACTION_NAMES, STATE_NAMES, STATE_PADDED_DIM
from psi0_ros.g1 import ALL_JOINTS, JOINT_SPECS, WAIST_JOINTS
from psi0_ros.layout import NUM_JOINTS, STATE_PAD_NAMES

SCHEMA_VERSION = 1
ROBOT = "unitree_g1_29dof_dex3"
EPISODE_SUFFIX = ".hdf5"
EPISODE_SUFFIXES = (EPISODE_SUFFIX, ".h5")  # what `psi0 inspect` takes for an episode file
TEMP_MARKER = ".tmp-"
STATE_FULL_NAMES: tuple[str, ...] = STATE_NAMES + STATE_PAD_NAMES  # 36

TIMESTAMPS = "timestamps"
ACTION = "action"
OBSERVATIONS = "observations"
STATE = "observations/state"
JOINT_POSITIONS = "observations/joint_positions"
JOINT_VELOCITIES = "observations/joint_velocities"
JOINT_EFFORTS = "observations/joint_efforts"
IMU = "observations/imu"
IMAGES = "observations/images"
IMAGE_OFFSETS = "observations/image_offsets"
IMU_FIELDS = {"orientation": 4, "angular_velocity": 3, "linear_acceleration": 3}

ENCODING_ATTR = "encoding"  # on each image dataset: "jpeg" or "raw"
CHECKSUM_ATTR = "crc32"  # on every dataset: zlib.crc32 of its bytes as stored (see hdf5.dataset_crc32)


@dataclass(frozen=True)
class ArraySpec:
    """One per-tick numeric dataset: (T,) when columns is None, else (T, columns)."""

    key: str
    columns: int | None
    dtype: type
    required: bool = True

    def shape(self, frames: int) -> tuple[int, ...]:
        return (frames,) if self.columns is None else (frames, self.columns)


ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec(TIMESTAMPS, None, np.float64),
    ArraySpec(ACTION, ACTION_DIM, np.float32),
    ArraySpec(STATE, STATE_PADDED_DIM, np.float32),
    ArraySpec(JOINT_POSITIONS, NUM_JOINTS, np.float64),
    ArraySpec(JOINT_VELOCITIES, NUM_JOINTS, np.float64, required=False),
    ArraySpec(JOINT_EFFORTS, NUM_JOINTS, np.float64, required=False),
)
IMU_ARRAYS: tuple[ArraySpec, ...] = tuple(
    ArraySpec(f"{IMU}/{name}", width, np.float64, required=False) for name, width in IMU_FIELDS.items()
)

# Root attributes: written by hdf5.write_episode (the first five from this module and psi0_ros,
# the rest from EpisodeData.attrs); JSON_ATTRS travel as JSON text.
ROOT_ATTRS = (
    "schema_version",
    "robot",
    "joint_names",
    "action_names",
    "state_names",
    "converter",
    "task",
    "episode_index",
    "outcome",
    "fps",
    "start_time_ns",
    "stop_time_ns",
    "first_tick_ns",
    "trimmed",
    "flags",
    "alignment",
    "source_bags",
)
JSON_ATTRS = ("flags", "alignment", "trimmed", "source_bags")


# --- Plausible values (what `psi0 inspect` checks) -----------------------------------------------
# Joint angles [rad] (measured, commanded, and the torso roll/pitch/yaw of the state, which are the
# waist joints) lie within the URDF limits of psi0_ros/g1.py, give or take JOINT_LIMIT_MARGIN_RAD:
# a PD-tracked joint overshoots a limit by a few hundredths of a rad (0.028 rad measured in the
# sim, issue 10), a sensor a little more; a value past the margin is a corrupt or misassigned one.
JOINT_LIMIT_MARGIN_RAD = 0.1
# The lower-body command and the torso height are no joints: physical bounds that no G1 command
# or pose comes near, so only garbage exceeds them (the safety layer's own, tighter, limits are
# in control/lower_body.py).
LOWER_BODY_PLAUSIBLE: dict[str, tuple[float, float]] = {
    "torso_roll": (-np.pi, np.pi),  # rad
    "torso_pitch": (-np.pi, np.pi),  # rad
    "torso_yaw": (-np.pi, np.pi),  # rad
    "torso_height": (0.0, 1.5),  # m, pelvis above the floor (the G1 stands about 0.75 m)
    "vx": (-3.0, 3.0),  # m/s (the G1's top walking speed is about 2 m/s)
    "vy": (-3.0, 3.0),  # m/s
    "vyaw": (-2 * np.pi, 2 * np.pi),  # rad/s
    "target_yaw": (-100.0, 100.0),  # rad: a heading that is wrapped never gets near 16 turns
}


def plausible_range(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) float64 per name of an action or state layout: joint limits widened by
    JOINT_LIMIT_MARGIN_RAD, LOWER_BODY_PLAUSIBLE for the rest, unbounded for others (padding)."""
    low, high = np.full(len(names), -np.inf), np.full(len(names), np.inf)
    # A commanded torso roll/pitch/yaw is bounded by the waist joint that carries it out.
    waist_yaw, waist_roll, waist_pitch = WAIST_JOINTS  # motor order: yaw, roll, pitch
    torso_joint = {"torso_roll": waist_roll, "torso_pitch": waist_pitch, "torso_yaw": waist_yaw}
    for i, name in enumerate(names):
        joint = JOINT_SPECS.get(name) or (JOINT_SPECS[torso_joint[name]] if name in torso_joint else None)
        if joint is not None:
            low[i], high[i] = joint.lower - JOINT_LIMIT_MARGIN_RAD, joint.upper + JOINT_LIMIT_MARGIN_RAD
        elif name in LOWER_BODY_PLAUSIBLE:
            low[i], high[i] = LOWER_BODY_PLAUSIBLE[name]
    return low, high


def plausible_ranges() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    """dataset key -> (low, high, column names) for the datasets whose values `psi0 inspect` bounds."""
    ranges = {
        ACTION: (*plausible_range(ACTION_NAMES), ACTION_NAMES),
        STATE: (*plausible_range(STATE_FULL_NAMES), STATE_FULL_NAMES),
        JOINT_POSITIONS: (*plausible_range(ALL_JOINTS), ALL_JOINTS),
    }
    return ranges


@dataclass
class EpisodeData:
    """One aligned episode in memory, exactly what the file holds (T ticks)."""

    timestamps: np.ndarray  # (T,) float64 s since START
    action: np.ndarray  # (T, 36) float32
    state: np.ndarray  # (T, 36) float32
    joint_positions: np.ndarray  # (T, 43) float64
    images: dict[str, Any]  # camera -> list of T JPEG bytes, or (T, H, W, 3) uint8
    image_offsets: dict[str, np.ndarray]  # camera -> (T,) float32 s
    joint_velocities: np.ndarray | None = None
    joint_efforts: np.ndarray | None = None
    imu: dict[str, np.ndarray] | None = None  # IMU_FIELDS name -> (T, n)
    camera_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)  # task, episode_index, outcome, flags, ...

    @property
    def num_frames(self) -> int:
        return int(self.timestamps.shape[0])

    def arrays(self) -> dict[str, np.ndarray | None]:
        """The ARRAYS datasets by key (None where the episode has no such data)."""
        return {
            TIMESTAMPS: self.timestamps,
            ACTION: self.action,
            STATE: self.state,
            JOINT_POSITIONS: self.joint_positions,
            JOINT_VELOCITIES: self.joint_velocities,
            JOINT_EFFORTS: self.joint_efforts,
        }
