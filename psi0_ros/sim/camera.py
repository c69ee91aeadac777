"""The egocentric head camera, rendered offscreen (MUJOCO_GL=egl works without a display).

HeadCamera owns its own MjData and renderer, so it can draw snapshots of a G1Sim from another
thread while physics keeps stepping. intrinsics() gives the pinhole model that /camera/ego/
camera_info publishes; project() maps world points to pixels with it (tests use it to find the
objects in the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from psi0_ros.sim.model import CAMERA_FOVY_DEG, CAMERA_HEIGHT, CAMERA_WIDTH, HEAD_CAMERA
from psi0_ros.sim.simulator import Snapshot


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float  # px
    fy: float  # px
    cx: float  # px
    cy: float  # px

    def matrix(self) -> np.ndarray:
        """3x3 K, row-major, as sensor_msgs/CameraInfo.k."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def intrinsics(width: int = CAMERA_WIDTH, height: int = CAMERA_HEIGHT, fovy_deg: float = CAMERA_FOVY_DEG) -> Intrinsics:
    """Pinhole intrinsics of a MuJoCo camera: square pixels, vertical field of view fovy."""
    fy = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    return Intrinsics(width, height, fy, fy, width / 2.0, height / 2.0)


class HeadCamera:
    """Renders (H, W, 3) uint8 RGB images from the head camera of a model built by psi0_ros.sim."""

    def __init__(self, model: mujoco.MjModel, width: int = CAMERA_WIDTH, height: int = CAMERA_HEIGHT) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, HEAD_CAMERA)
        if self.camera_id < 0:
            raise ValueError(f"model has no camera named {HEAD_CAMERA!r}")
        self.width, self.height = width, height
        try:
            self.renderer = mujoco.Renderer(model, height=height, width=width)
        except mujoco.FatalError as err:
            raise RuntimeError(
                f"cannot create an offscreen OpenGL context ({err}). Without a display, set MUJOCO_GL=egl "
                "before mujoco is first imported (importing psi0_ros.sim first does that); check `psi0 doctor`."
            ) from err
        self.intrinsics = intrinsics(width, height, float(model.cam_fovy[self.camera_id]))

    def _load(self, snapshot: Snapshot) -> None:
        self.data.qpos[:] = snapshot.qpos
        self.data.mocap_pos[:] = snapshot.mocap_pos
        self.data.mocap_quat[:] = snapshot.mocap_quat
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    def render(self, snapshot: Snapshot) -> np.ndarray:
        self._load(snapshot)
        self.renderer.update_scene(self.data, camera=self.camera_id)
        return self.renderer.render().copy()

    def pose(self, snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray]:
        """Camera position (3,) and rotation (3, 3) (columns: image right, image up, backward) in the world."""
        self._load(snapshot)
        return self.data.cam_xpos[self.camera_id].copy(), self.data.cam_xmat[self.camera_id].reshape(3, 3).copy()

    def project(self, points: np.ndarray, snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) [u right, v down] and depth (N,) [m]."""
        position, rotation = self.pose(snapshot)
        local = (np.asarray(points, dtype=np.float64) - position) @ rotation  # camera frame: x right, y up, -z ahead
        depth = -local[:, 2]
        k = self.intrinsics
        with np.errstate(divide="ignore", invalid="ignore"):
            u = k.cx + k.fx * local[:, 0] / depth
            v = k.cy - k.fy * local[:, 1] / depth
        return np.stack([u, v], axis=1), depth

    def close(self) -> None:
        self.renderer.close()
