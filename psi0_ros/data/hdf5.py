"""The episode file (shared/DESIGN.md §5): one HDF5 file per episode on the control grid.

    /timestamps                         (T,)      float64  s since the episode's START
    /action                             (T, 36)   float32  command in force (constants.ACTION_NAMES)
    /observations/state                 (T, 36)   float32  32-D state zero-padded (streams.build_state)
    /observations/joint_positions       (T, 43)   float64  rad, psi0_ros.g1.ALL_JOINTS order
    /observations/joint_velocities      (T, 43)   float64  rad/s (when every joint_states has them)
    /observations/joint_efforts         (T, 43)   float64  N·m (when every joint_states has them)
    /observations/imu/orientation       (T, 4)    float64  xyzw (when the bag has /imu/data)
    /observations/imu/angular_velocity  (T, 3)    float64  rad/s
    /observations/imu/linear_acceleration (T, 3)  float64  m/s^2
    /observations/images/<camera>       (T,) vlen uint8 JPEG bytes, or (T, H, W, 3) uint8 raw
    /observations/image_offsets/<camera> (T,)     float32  s, frame stamp - tick (alignment error)

Root attributes: schema_version, robot, fps, task, episode_index, outcome, joint_names,
action_names, state_names, source_bags, start_time_ns, flags (JSON list), alignment (JSON),
converter. A file is written as a hidden temporary next to its destination and renamed only
after it is complete and closed, so a reader never sees a partial episode.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import psi0_ros
from psi0_ros.constants import ACTION_DIM, ACTION_NAMES, STATE_NAMES, STATE_PADDED_DIM
from psi0_ros.data.streams import NUM_JOINTS, STATE_PAD_NAMES
from psi0_ros.g1 import ALL_JOINTS

SCHEMA_VERSION = 1
ROBOT = "unitree_g1_29dof_dex3"
EPISODE_SUFFIX = ".hdf5"
TEMP_MARKER = ".tmp-"
IMU_FIELDS = {"orientation": 4, "angular_velocity": 3, "linear_acceleration": 3}
STATE_FULL_NAMES: tuple[str, ...] = STATE_NAMES + STATE_PAD_NAMES  # 36


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

    def image_encoding(self, camera: str) -> str:
        return "raw" if isinstance(self.images[camera], np.ndarray) else "jpeg"


def temp_path_for(path: Path) -> Path:
    """The hidden temporary a file is written to before the rename (unique per process)."""
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")


def is_temp_file(path: Path) -> bool:
    return path.name.startswith(".") and TEMP_MARKER in path.name


def write_episode(episode: EpisodeData, path: Path, overwrite: bool = False) -> Path:
    """Write the episode to path atomically (temporary + rename); no file is left on failure."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    _check_shapes(episode)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    try:
        with h5py.File(temp, "w") as f:
            _write(f, episode)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _check_shapes(e: EpisodeData) -> None:
    t = e.num_frames
    expected = {
        "action": (e.action, (t, ACTION_DIM)),
        "state": (e.state, (t, STATE_PADDED_DIM)),
        "joint_positions": (e.joint_positions, (t, NUM_JOINTS)),
    }
    for name, (array, shape) in expected.items():
        if array.shape != shape:
            raise ValueError(f"episode {name} has shape {array.shape}, expected {shape}")
    for camera, frames in e.images.items():
        if len(frames) != t:
            raise ValueError(f"camera {camera} has {len(frames)} frames for {t} ticks")


def _write(f: h5py.File, e: EpisodeData) -> None:
    f.create_dataset("timestamps", data=e.timestamps.astype(np.float64))
    f.create_dataset("action", data=e.action.astype(np.float32))
    obs = f.create_group("observations")
    obs.create_dataset("state", data=e.state.astype(np.float32))
    obs.create_dataset("joint_positions", data=e.joint_positions.astype(np.float64))
    if e.joint_velocities is not None:
        obs.create_dataset("joint_velocities", data=e.joint_velocities.astype(np.float64))
    if e.joint_efforts is not None:
        obs.create_dataset("joint_efforts", data=e.joint_efforts.astype(np.float64))
    if e.imu is not None:
        imu = obs.create_group("imu")
        for name, array in e.imu.items():
            imu.create_dataset(name, data=array.astype(np.float64))
    images = obs.create_group("images")
    offsets = obs.create_group("image_offsets")
    for camera, frames in e.images.items():
        if isinstance(frames, np.ndarray):
            ds = images.create_dataset(camera, data=frames, chunks=(1,) + frames.shape[1:])
            ds.attrs["encoding"] = "raw"
        else:
            ds = images.create_dataset(camera, (len(frames),), dtype=h5py.vlen_dtype(np.uint8))
            column = np.empty(len(frames), dtype=object)
            for i, jpeg in enumerate(frames):
                column[i] = np.frombuffer(jpeg, dtype=np.uint8)
            if len(frames):
                ds.id.write(h5py.h5s.ALL, h5py.h5s.ALL, column)
            ds.attrs["encoding"] = "jpeg"
        for key, value in e.camera_info.get(camera, {}).items():
            ds.attrs[key] = value
        offsets.create_dataset(camera, data=e.image_offsets[camera].astype(np.float32))
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "robot": ROBOT,
        "joint_names": list(ALL_JOINTS),
        "action_names": list(ACTION_NAMES),
        "state_names": list(STATE_FULL_NAMES),
        "converter": f"psi0_ros {psi0_ros.__version__}",
        **e.attrs,
    }
    for key, value in attrs.items():
        f.attrs[key] = _attr_value(value)


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value)
    ):
        return json.dumps(value)  # nested or empty structures travel as JSON text
    if isinstance(value, (list, tuple)):
        return np.array(value, dtype=h5py.string_dtype())
    return value


JSON_ATTRS = ("flags", "alignment", "trimmed", "source_bags")


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attributes as Python values (JSON-encoded ones decoded, string arrays as lists)."""
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
            value = [v.decode() if isinstance(v, bytes) else str(v) for v in value]
        elif isinstance(value, np.generic):
            value = value.item()
        if key in JSON_ATTRS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def read_episode(path: Path, images: bool = True) -> EpisodeData:
    """Load an episode file (images as JPEG bytes lists or raw arrays; skipped if images=False)."""
    with h5py.File(path, "r") as f:
        obs = f["observations"]
        frames: dict[str, Any] = {}
        infos: dict[str, dict[str, Any]] = {}
        for camera, ds in obs["images"].items():
            infos[camera] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds.attrs.items()}
            if not images:
                continue
            if ds.attrs.get("encoding") == "raw":
                frames[camera] = ds[()]
            else:
                frames[camera] = [bytes(x) for x in ds[()]]
        return EpisodeData(
            timestamps=f["timestamps"][()],
            action=f["action"][()],
            state=obs["state"][()],
            joint_positions=obs["joint_positions"][()],
            images=frames,
            image_offsets={c: d[()] for c, d in obs["image_offsets"].items()},
            joint_velocities=obs["joint_velocities"][()] if "joint_velocities" in obs else None,
            joint_efforts=obs["joint_efforts"][()] if "joint_efforts" in obs else None,
            imu={k: d[()] for k, d in obs["imu"].items()} if "imu" in obs else None,
            camera_info=infos,
            attrs=read_attrs(f),
        )
