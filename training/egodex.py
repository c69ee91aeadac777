"""EgoDex: 48-D hand actions from its own transforms, and a streaming reader (stage 1).

EgoDex (Apple, 2025) stores per episode <task>/<i>.hdf5 with /transforms/<joint> (T, 4, 4)
poses in a world frame for the camera and every hand joint, /camera/intrinsic (3, 3) and the
language description in the root attributes, plus <i>.mp4 (30 fps).

Psi0's 48-D action at frame t (src/psi/data/egodex/egodex_dataset.py, convert_to_delta_actions,
reading a precomputed /actions_48d whose script is not published) is, per hand (left, then right):
  wrist dxyz (3)   wrist position at t+s minus at t,
  wrist drpy (3)   roll/pitch/yaw (extrinsic xyz) of R_{t+s} R_t^T,
  zeros (3),
  5 fingertips dxyz (15)   thumb, index, middle, ring, little: position at t+s minus at t,
all expressed in the camera frame at t (the reference converts both poses with the inverse of
one camera extrinsic, the current one), with s the frame stride (Psi0: upsample_rate 3).

Camera-frame convention: EgoDex's camera transform is camera-to-world (ARKit: x right, y up,
z backwards), so inv(T_camera) @ T_joint is the joint in the camera frame. test_train_egodex
checks the consequences on synthetic data: a hand fixed in the world gives zero deltas however
the head moves; a hand moving along the camera's own x axis gives +dx whatever the camera's
world pose; a hand rotating about the camera's z axis gives only d-yaw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.video import DatasetError, VideoReader

HANDS = ("left", "right")
FINGERTIPS = ("Thumb", "Index", "Middle", "Ring", "Little")
CAMERA = "camera"
HAND_ACTION_DIM = 48


def joint_names(hand: str) -> list[str]:
    """EgoDex transform names of one hand's wrist and fingertips."""
    tips = [f"{hand}{finger}Tip" if finger == "Thumb" else f"{hand}{finger}FingerTip" for finger in FINGERTIPS]
    return [f"{hand}Hand"] + tips


def rpy_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) roll, pitch, yaw with R = Rz(yaw) Ry(pitch) Rx(roll) (scipy "xyz")."""
    r = np.asarray(rotation, dtype=np.float64)
    roll = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    pitch = np.arctan2(-r[..., 2, 0], np.hypot(r[..., 0, 0], r[..., 1, 0]))
    yaw = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([roll, pitch, yaw], axis=-1)


def hand_actions_48d(transforms: dict[str, np.ndarray], stride: int = 1) -> np.ndarray:
    """(T, 48) float32 actions from an episode's transforms; the last `stride` rows are zero
    (no future frame). transforms: name -> (T, 4, 4) world poses, including "camera"."""
    camera = np.asarray(transforms[CAMERA], dtype=np.float64)
    frames = camera.shape[0]
    to_camera = np.linalg.inv(camera)  # (T, 4, 4): world -> camera at t
    actions = np.zeros((frames, HAND_ACTION_DIM), dtype=np.float64)
    if frames <= stride:
        return actions.astype(np.float32)
    now, later = slice(0, frames - stride), slice(stride, frames)
    for h, hand in enumerate(HANDS):
        names = joint_names(hand)
        wrist = np.asarray(transforms[names[0]], dtype=np.float64)
        current = to_camera[now] @ wrist[now]
        future = to_camera[now] @ wrist[later]  # the future pose in the CURRENT camera frame
        base = 24 * h
        actions[now, base : base + 3] = future[:, :3, 3] - current[:, :3, 3]
        relative = future[:, :3, :3] @ np.swapaxes(current[:, :3, :3], -1, -2)
        actions[now, base + 3 : base + 6] = rpy_from_matrix(relative)
        for f, name in enumerate(names[1:]):
            tip = np.asarray(transforms[name], dtype=np.float64)[:, :, 3]  # (T, 4) homogeneous position
            tip_now = np.einsum("tij,tj->ti", to_camera[now], tip[now])[:, :3]
            tip_later = np.einsum("tij,tj->ti", to_camera[now], tip[later])[:, :3]
            column = base + 9 + 3 * f
            actions[now, column : column + 3] = tip_later - tip_now
    return actions.astype(np.float32)


@dataclass(frozen=True)
class EgoDexEpisode:
    hdf5: Path
    video: Path
    instruction: str
    actions: np.ndarray  # (T, 48) float32


def _description(attrs: dict, path: Path) -> str:
    def text(key: str) -> str:
        value = attrs.get(key, "")
        return value.decode() if isinstance(value, bytes) else str(value)

    if text("llm_type") == "reversible" and text("which_llm_description") == "2":
        return text("llm_description2") or text("llm_description")
    description = text("llm_description") or text("description")
    if not description:
        raise DatasetError(f"{path}: no language description (attribute llm_description)")
    return description


class EgoDexSource:
    """Indexes EgoDex episodes (48-D actions in memory, video frames on demand)."""

    def __init__(self, root: Path, stride: int = 1):
        import h5py

        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"EgoDex root not found: {root}")
        files = sorted(root.glob("part*/*/*.hdf5")) or sorted(root.glob("*/*.hdf5"))
        if not files:
            raise DatasetError(f"{root}: no EgoDex episodes (part*/<task>/<i>.hdf5)")
        self.episodes: list[EgoDexEpisode] = []
        self._videos: dict[int, VideoReader] = {}
        for path in files:
            video = path.with_suffix(".mp4")
            if not video.is_file():
                raise DatasetError(f"{path}: no video next to it ({video.name})")
            try:
                with h5py.File(path, "r") as f:
                    if "transforms" not in f:
                        raise DatasetError(f"{path}: no /transforms group")
                    needed = [CAMERA] + joint_names("left") + joint_names("right")
                    missing = [n for n in needed if n not in f["transforms"]]
                    if missing:
                        raise DatasetError(f"{path}: /transforms lacks {missing}")
                    transforms = {n: f["transforms"][n][()] for n in needed}
                    attrs = dict(f.attrs)
            except OSError as err:
                raise DatasetError(f"{path}: not a readable HDF5 file ({err})") from None
            shapes = {n: v.shape for n, v in transforms.items()}
            frames = transforms[CAMERA].shape[0]
            bad = {n: s for n, s in shapes.items() if s != (frames, 4, 4)}
            if bad or frames < 2:
                raise DatasetError(f"{path}: transforms must all be (T >= 2, 4, 4), got {bad or shapes[CAMERA]}")
            actions = hand_actions_48d(transforms, stride)
            if not np.isfinite(actions).all():
                raise DatasetError(f"{path}: transforms give non-finite actions (singular camera pose?)")
            # The last `stride` frames have no future pose: they are not samples.
            self.episodes.append(EgoDexEpisode(path, video, _description(attrs, path), actions[: frames - stride]))

    def image(self, episode: int, frame: int) -> np.ndarray:
        reader = self._videos.get(episode)
        if reader is None:
            for old in self._videos.values():
                old.close()
            self._videos = {episode: VideoReader(self.episodes[episode].video)}
            reader = self._videos[episode]
        return reader.frame(frame)

    def __getstate__(self) -> dict:
        return {"episodes": self.episodes, "_videos": {}}
