"""Humanoid Everyday as stage-1 data: 48-D hand actions from its recorded wrist and fingertip targets.

Psi0's stage-1 transform for Humanoid Everyday (src/psi/config/transform.py,
HEPretrainRepackTransform) builds the same 48-D layout as EgoDex from each frame's
action.wrists.{left,right}.{xyz,rpy} and action.hands.<hand>_<finger>.xyz: per hand wrist dxyz,
wrist drpy (extrinsic xyz of R(t+s) R(t)^T), 3 zeros, 5 fingertip dxyz (a missing fingertip is 0),
as stored (no camera conversion). The statistics are EgoDex's when stage 1 also reads EgoDex.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training.egodex import HAND_ACTION_DIM, EgoDexEpisode, rpy_from_matrix
from training.readers import _decode_jpeg
from training.video import DatasetError

# Fingertip keys per hand in the HE action dict (the first present one is used).
FINGER_KEYS = (
    ("thumb",),
    ("index",),
    ("middle", "middle_finger"),
    ("ring_finger", "ring"),
    ("little_finger", "little"),
)


def _matrix_from_rpy(rpy: np.ndarray) -> np.ndarray:
    """(T, 3) extrinsic xyz angles -> (T, 3, 3) = Rz(yaw) Ry(pitch) Rx(roll)."""
    roll, pitch, yaw = (rpy[:, i] for i in range(3))
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
            np.stack([-sp, cp * sr, cp * cr], -1),
        ],
        axis=-2,
    )


def he_hand_actions_48d(frames: list[dict[str, Any]], path: Path, stride: int = 1) -> np.ndarray:
    """(T, 48) float32 from HE frames; the last `stride` rows are zero (no future frame)."""
    count = len(frames)
    actions = np.zeros((count, HAND_ACTION_DIM), dtype=np.float64)
    if count <= stride:
        return actions.astype(np.float32)
    for h, hand in enumerate(("left", "right")):
        try:
            xyz = np.array([f["action"]["wrists"][hand]["xyz"] for f in frames], dtype=np.float64)
            rpy = np.array([f["action"]["wrists"][hand]["rpy"] for f in frames], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{path}: action.wrists.{hand}.xyz/rpy missing or malformed ({err})") from None
        if xyz.shape != (count, 3) or rpy.shape != (count, 3):
            raise DatasetError(f"{path}: action.wrists.{hand} xyz/rpy must be 3 values per frame")
        base = 24 * h
        actions[:-stride, base : base + 3] = xyz[stride:] - xyz[:-stride]
        rotation = _matrix_from_rpy(rpy)
        actions[:-stride, base + 3 : base + 6] = rpy_from_matrix(
            rotation[stride:] @ np.swapaxes(rotation[:-stride], -1, -2)
        )
        hands = [f["action"].get("hands", {}) or {} for f in frames]
        for k, names in enumerate(FINGER_KEYS):
            key = next((f"{hand}_{n}" for n in names if f"{hand}_{n}" in hands[0]), None)
            if key is None:
                continue  # the reference leaves a missing fingertip at zero
            tips = np.array([entry[key]["xyz"] for entry in hands], dtype=np.float64)
            column = base + 9 + 3 * k
            actions[:-stride, column : column + 3] = tips[stride:] - tips[:-stride]
    return actions.astype(np.float32)


class HEHandSource:
    """Humanoid Everyday episodes with 48-D hand actions (same interface as EgoDexSource)."""

    def __init__(self, root: Path, stride: int = 1):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"Humanoid Everyday root not found: {root}")
        files = sorted(root.glob("*/*/episode_*/data.json"))
        if not files:
            raise DatasetError(f"{root}: no <category>/<task>/episode_*/data.json files")
        described = root / "task_description_dict.json"
        descriptions = json.loads(described.read_text()) if described.is_file() else {}
        self.episodes: list[EgoDexEpisode] = []
        self.images: list[list[Path]] = []
        for path in files:
            try:
                frames = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}: not valid JSON ({err})") from None
            if not isinstance(frames, list) or len(frames) <= stride:
                raise DatasetError(f"{path}: needs a list of more than {stride} frames")
            actions = he_hand_actions_48d(frames, path, stride)
            task = path.parent.parent.name
            text = descriptions.get(task, task.replace("_", " "))
            text = text[0] if isinstance(text, list) and text else text
            self.episodes.append(EgoDexEpisode(path, path, str(text), actions[: len(frames) - stride]))
            self.images.append([path.parent / f["image"] for f in frames])

    def image(self, episode: int, frame: int) -> np.ndarray:
        path = self.images[episode][frame]
        if not path.is_file():
            raise DatasetError(f"{path}: image missing")
        return _decode_jpeg(path.read_bytes(), str(path))
