"""One interface for every robot the bridge can drive (DESIGN §2: sim and unitree)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from psi0_ros.control.command import JointCommand


@dataclass(frozen=True)
class RobotState:
    """What the robot reports, for the 43 joints in psi0_ros.g1.ALL_JOINTS order."""

    stamp: float  # s, the backend's clock (sim time, or monotonic time of the state's arrival)
    q: np.ndarray  # (43,) rad
    dq: np.ndarray  # (43,) rad/s
    tau: np.ndarray  # (43,) N·m, estimated joint torque
    imu_quaternion: np.ndarray  # (4,) wxyz, pelvis orientation in the world
    imu_gyro: np.ndarray  # (3,) rad/s, pelvis frame
    imu_accel: np.ndarray  # (3,) m/s^2 specific force, pelvis frame


@dataclass(frozen=True)
class CameraFrame:
    """One image of a backend's camera."""

    seq: int  # 1, 2, ... in render order
    sim_time: float  # s, the backend's clock when the image was taken
    rgb: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class CameraModel:
    """What sensor_msgs/CameraInfo says about a pinhole camera without distortion."""

    width: int  # px
    height: int  # px
    k: np.ndarray  # (3, 3) intrinsic matrix [px]
    rate_hz: float  # frames per second of the backend's clock


class BackendCamera(Protocol):
    """A camera that comes with the robot backend (the sim's head camera); optional capability."""

    model: CameraModel

    def latest_frame(self) -> CameraFrame | None:
        """The newest image (None before the first); any thread may call it."""
        ...


class LowerBodyFollower(Protocol):
    """Turns the 8-D lower-body command into 15 leg+waist targets (e.g. the sim's kinematic mode)."""

    def step(self, command: np.ndarray | None, dt: float) -> np.ndarray: ...


class RobotBackend(abc.ABC):
    """A robot the bridge commands. Methods other than read_state() are called from one thread."""

    name: str = ""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections / start helper threads."""

    @abc.abstractmethod
    def read_state(self) -> RobotState | None:
        """The newest state, or None before the robot has reported one."""

    @abc.abstractmethod
    def write_command(self, command: JointCommand) -> None:
        """Send one PD command for all 43 joints (already checked by the safety layer)."""

    def advance(self, dt: float) -> None:  # noqa: B027 - hardware runs on its own clock
        """Let dt seconds pass: a simulation steps its physics; a real robot needs nothing."""

    def lower_body_follower(self) -> LowerBodyFollower | None:
        """A follower for the 8-D lower-body command, where this backend has one."""
        return None

    def camera(self) -> BackendCamera | None:
        """The backend's own camera, where it has one (published by robot_bridge_node)."""
        return None

    def sim_time(self) -> float | None:
        """Seconds of simulated time for a simulation (what /clock carries); None for a real robot."""
        return None

    def stats(self) -> dict[str, float]:
        """Backend-specific counters for diagnostics and summaries (names -> numbers)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""
