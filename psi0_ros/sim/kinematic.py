"""Kinematic lower body: the base follows the 8-D lower-body command without a walking controller.

vx/vy (heading frame) and the heading move the pelvis; `torso_height` sets the pelvis height, and
the legs bend so the soles stay on the floor (a crouch family measured on the model itself);
torso roll/pitch/yaw become the three waist joint targets. While the base moves, the legs swing
in a gait rhythm so motion is visible, but nothing balances: this mode is for manipulation
without AMO weights. Heading: with heading="target_yaw" (default, as AMO tracks it) the yaw rate
is vyaw + heading_gain * wrap(target_yaw - yaw); with heading="vyaw" only vyaw turns the base.
As AMO on the robot, the base stands in place while |vx|, |vy| and |vyaw| are all below
STAND_SPEED (AMO's in-place-stand flag, psi0_ros.control.amo): a walking controller does not
creep at a few cm/s, so neither does this base, and a policy's small velocity noise around
"stand still" moves nothing (stand_speed=0 turns it off). Unlike AMO it keeps turning to
target_yaw while standing, so a held heading never drifts. Velocities, height and torso angles
ramp at bounded rates so nothing jumps. No command (None: the
safety layer withholds it unless ACTIVE, i.e. under STARTING, WAITING, HOLD, DAMP and ESTOP) freezes
the base where it is at once: no velocity, no turning, no height or torso change, no leg swing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from psi0_ros import g1
from psi0_ros.control.amo import STAND_SPEED
from psi0_ros.control.lower_body import LOWER_BODY_INDEX
from psi0_ros.sim.simulator import G1Sim

HEADING_MODES = ("target_yaw", "vyaw")
_LOWER = {name: i for i, name in enumerate(g1.LOWER_BODY_JOINTS)}


@dataclass(frozen=True)
class KinematicConfig:
    heading: str = "target_yaw"
    heading_gain: float = 2.0  # 1/s, yaw-error feedback when heading == "target_yaw"
    max_yaw_rate: float = 1.5  # rad/s
    max_accel: float = 1.0  # m/s^2, base linear acceleration
    max_yaw_accel: float = 3.0  # rad/s^2
    height_rate: float = 0.15  # m/s, pelvis height change
    torso_rate: float = 1.0  # rad/s, waist joints following torso roll/pitch/yaw
    gait_frequency: float = 1.2  # Hz, leg swing while moving (joint speeds stay under the 3 rad/s cap)
    gait_speed: float = 0.5  # m/s at which the swing reaches full amplitude
    stand_speed: float = STAND_SPEED  # |vx|, |vy| (m/s), |vyaw| (rad/s) all below: stand in place (0: off)

    def __post_init__(self) -> None:
        if self.heading not in HEADING_MODES:
            raise ValueError(f"unknown heading mode {self.heading!r}; expected one of {HEADING_MODES}")
        for name in (
            "heading_gain",
            "max_yaw_rate",
            "max_accel",
            "max_yaw_accel",
            "height_rate",
            "torso_rate",
            "gait_speed",
        ):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"kinematic {name} must be > 0, got {getattr(self, name)}")
        if not self.stand_speed >= 0.0:
            raise ValueError(f"kinematic stand_speed must be >= 0, got {self.stand_speed}")


def wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def stands(vx: float, vy: float, vyaw: float, stand_speed: float) -> bool:
    """AMO's in-place stand: every velocity component below stand_speed (0: never)."""
    return max(abs(vx), abs(vy), abs(vyaw)) < stand_speed


def ramped_velocity(velocity: np.ndarray, want: np.ndarray, max_accel: float, dt: float) -> np.ndarray:
    """The planar velocity one step of dt after `velocity`, moving towards `want` at max_accel."""
    change = want - velocity
    norm = math.hypot(change[0], change[1])
    if norm > max_accel * dt:
        change *= max_accel * dt / norm
    return velocity + change


def _clamp(value: float, bound: float) -> float:
    """value limited to [-bound, bound]."""
    return min(max(float(value), -bound), bound)


def crouch_pose(knee: float) -> np.ndarray:
    """15 leg+waist angles (LOWER_BODY_JOINTS order) bending both knees by `knee` rad, soles flat.

    The default pose (hip -0.1, knee 0.3, ankle -0.2) is the member knee = 0.3 of this family.
    """
    q = g1.table("default", g1.LOWER_BODY_JOINTS).copy()
    for side in ("left", "right"):
        q[_LOWER[f"{side}_hip_pitch_joint"]] = -knee / 3.0
        q[_LOWER[f"{side}_knee_joint"]] = knee
        q[_LOWER[f"{side}_ankle_pitch_joint"]] = -2.0 * knee / 3.0
    return q


class KinematicLowerBody:
    """Moves G1Sim's mocap pelvis and returns leg/waist targets (15,) each control tick."""

    def __init__(self, sim: G1Sim, config: KinematicConfig | None = None) -> None:
        if not sim.kinematic:
            raise ValueError("KinematicLowerBody needs a G1Sim in kinematic base mode")
        self.sim = sim
        self.config = config or KinematicConfig()
        knees = np.linspace(0.05, 1.2, 24)  # ankle pitch = -2/3 knee stays inside its -0.87 rad stop
        heights = np.array([sim.standing_height(crouch_pose(k)) for k in knees])
        order = np.argsort(heights)  # heights fall as the knees bend
        self._heights, self._knees = heights[order], knees[order]
        self._lower_limit = g1.table("lower", g1.LOWER_BODY_JOINTS)
        self._upper_limit = g1.table("upper", g1.LOWER_BODY_JOINTS)
        self._knee_cache = (math.nan, 0.0)
        self.reset()

    @property
    def height_range(self) -> tuple[float, float]:
        """Pelvis heights [m] the crouch family reaches."""
        return float(self._heights[0]), float(self._heights[-1])

    def knee_for_height(self, height: float) -> float:
        if height != self._knee_cache[0]:  # the height rarely changes: one interpolation per change
            self._knee_cache = (height, float(np.interp(height, self._heights, self._knees)))
        return self._knee_cache[1]

    def reset(self) -> None:
        position, quat = self.sim.base_pose()
        self.x, self.y = float(position[0]), float(position[1])
        self.yaw = 2.0 * math.atan2(float(quat[3]), float(quat[0]))
        self.height = float(np.interp(0.3, self._knees[::-1], self._heights[::-1]))
        self.velocity = np.zeros(2)  # heading frame (vx, vy) m/s
        self.yaw_rate = 0.0
        self.phase = 0.0
        self.swing = 0.0  # gait amplitude in [0, 1]
        self.torso = np.zeros(3)  # waist yaw, roll, pitch targets [rad]

    def step(self, command: np.ndarray | None, dt: float) -> np.ndarray:
        """Advance the base by dt under `command` (8,) (LOWER_BODY_COMMAND_NAMES order, already
        bounded by the safety layer; None = freeze where it is) and return the 15 leg/waist targets."""
        cfg = self.config
        if command is None:
            return self._freeze()
        c = {name: float(command[i]) for name, i in LOWER_BODY_INDEX.items()}
        want_v = np.array([c["vx"], c["vy"]])
        want_rate = c["vyaw"]
        if stands(c["vx"], c["vy"], c["vyaw"], cfg.stand_speed):
            want_v[:] = 0.0  # AMO's in-place stand: no stepping (the heading is still held, below)
            want_rate = 0.0
        if cfg.heading == "target_yaw":
            want_rate += cfg.heading_gain * wrap_angle(c["target_yaw"] - self.yaw)
        want_height = c["torso_height"]
        torso = np.array([c["torso_yaw"], c["torso_roll"], c["torso_pitch"]])  # waist joint order
        # scalar clamps with math, not numpy: this runs every control tick (250-500 Hz) on the loop thread
        want_rate = _clamp(want_rate, cfg.max_yaw_rate)
        self.velocity = ramped_velocity(self.velocity, want_v, cfg.max_accel, dt)
        self.yaw_rate += _clamp(want_rate - self.yaw_rate, cfg.max_yaw_accel * dt)
        low, high = self.height_range
        want_height = min(max(want_height, low), high)
        self.height += _clamp(want_height - self.height, cfg.height_rate * dt)
        self.torso += np.clip(torso - self.torso, -cfg.torso_rate * dt, cfg.torso_rate * dt)

        cos, sin = math.cos(self.yaw), math.sin(self.yaw)
        world_v = np.array(
            [cos * self.velocity[0] - sin * self.velocity[1], sin * self.velocity[0] + cos * self.velocity[1]]
        )
        self.sim.set_base(self.x, self.y, self.height, self.yaw, (world_v[0], world_v[1], 0.0), self.yaw_rate)
        self.x += float(world_v[0]) * dt
        self.y += float(world_v[1]) * dt
        self.yaw = wrap_angle(self.yaw + self.yaw_rate * dt)

        speed = math.hypot(self.velocity[0], self.velocity[1]) + 0.25 * abs(self.yaw_rate)
        target_swing = min(1.0, speed / cfg.gait_speed) if speed > 0.02 else 0.0
        self.swing += _clamp(target_swing - self.swing, 2.0 * dt)
        if self.swing > 0.0:
            self.phase = (self.phase + 2.0 * math.pi * cfg.gait_frequency * dt) % (2.0 * math.pi)
        return self._leg_targets()

    def _freeze(self) -> np.ndarray:
        """Stop the base dead where it is (a placed body, not a walking robot: no braking distance)."""
        self.velocity = np.zeros(2)
        self.yaw_rate = 0.0
        self.sim.set_base(self.x, self.y, self.height, self.yaw)
        return self._leg_targets()

    def _leg_targets(self) -> np.ndarray:
        q = crouch_pose(self.knee_for_height(self.height))
        for side, sign in (("left", 1.0), ("right", -1.0)):
            s = sign * math.sin(self.phase)
            d_hip = -0.25 * self.swing * s
            d_knee = 0.35 * self.swing * max(0.0, s)
            q[_LOWER[f"{side}_hip_pitch_joint"]] += d_hip
            q[_LOWER[f"{side}_knee_joint"]] += d_knee
            q[_LOWER[f"{side}_ankle_pitch_joint"]] -= d_hip + d_knee
        q[_LOWER["waist_yaw_joint"]], q[_LOWER["waist_roll_joint"]], q[_LOWER["waist_pitch_joint"]] = self.torso
        return np.clip(q, self._lower_limit, self._upper_limit)
