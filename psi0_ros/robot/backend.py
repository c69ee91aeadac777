"""One interface for every robot the bridge can drive (DESIGN §2: sim and unitree)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from psi0_ros.control.command import JointCommand

BACKENDS = ("sim", "unitree")


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

    def stats(self) -> dict[str, float]:
        """Backend-specific counters for diagnostics and summaries (names -> numbers)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""
