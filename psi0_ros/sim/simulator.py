"""G1Sim: the MuJoCo world stepped like the real robot's motors.

apply(JointCommand) sets every joint's PD motor (q, dq, kp, kd, tau, clipped to the effort limit,
evaluated at each 2 ms physics step as Unitree's motor drivers do); step() advances physics;
joint_state() and imu() read back what the robot's LowState_ would report. In kinematic base
mode the pelvis is placed with set_base() (psi0_ros.sim.kinematic computes where), and the IMU
reports that commanded motion. Not thread-safe: one thread owns a G1Sim (the camera renders from
snapshots on its own copy, psi0_ros.sim.camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from psi0_ros import g1
from psi0_ros.control.command import JointCommand
from psi0_ros.sim.collisions import CollisionMonitor
from psi0_ros.sim.grasp import GraspAssist
from psi0_ros.sim.model import BASE_MODES, IMU_SITE, PELVIS_BODY, STANDING_PELVIS_Z
from psi0_ros.sim.scene import LAYOUTS, SCENES, SceneLayout, build_mjcf, sample_layout

GRAVITY = 9.81  # m/s^2
HARNESS_STIFFNESS = 10000.0  # N/m: hanging the whole 35 kg robot on it sags 3.4 cm
HARNESS_DAMPING = 1000.0  # N·s/m (damping ratio ~0.85)
HARNESS_TILT_STIFFNESS = 500.0  # N·m/rad
HARNESS_TILT_DAMPING = 50.0  # N·m·s/rad


@dataclass(frozen=True)
class SimConfig:
    base_mode: str = "kinematic"  # "kinematic" | "physics"
    scene: str = "tabletop"  # "tabletop" | "empty"
    seed: int = 0  # object layout
    layout: str = "full"  # ranges the layout is drawn from (scene.LAYOUTS): "full" | "lab"
    timestep: float = 0.002  # s, physics step
    # physics mode: a virtual gantry (a rope that only pulls up to the standing height, plus a
    # gimbal spring toward upright) so the robot does not fall without a balancing controller.
    # x, y and yaw stay free. Switch it off when lower_body_node (AMO) balances the robot.
    harness: bool = False
    # A labelled simulation aid (psi0_ros.sim.grasp): weld an object to a hand whose fingers close on it.
    grasp_assist: bool = False

    def __post_init__(self) -> None:
        if self.base_mode not in BASE_MODES:
            raise ValueError(f"unknown base_mode {self.base_mode!r}; expected one of {BASE_MODES}")
        if self.scene not in SCENES:
            raise ValueError(f"unknown scene {self.scene!r}; expected one of {SCENES}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        if not 0.0005 <= self.timestep <= 0.01:
            raise ValueError(f"timestep must be in [0.0005, 0.01] s, got {self.timestep}")


@dataclass(frozen=True)
class Snapshot:
    """Enough of the world to draw it: positions only (copied, safe to hand to another thread)."""

    time: float
    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray


def yaw_quat(yaw: float) -> np.ndarray:
    """wxyz quaternion of a rotation by yaw [rad] about +z."""
    return np.array([math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)])


class G1Sim:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.layout: SceneLayout = sample_layout(self.config.scene, self.config.seed, self.config.layout)
        self.mjcf = build_mjcf(self.config.base_mode, self.layout, self.config.timestep)
        self.model = mujoco.MjModel.from_xml_string(self.mjcf)
        self.data = mujoco.MjData(self.model)
        self.kinematic = self.config.base_mode == "kinematic"
        joint_ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in g1.ALL_JOINTS]
        self.qpos_adr = np.array([self.model.jnt_qposadr[j] for j in joint_ids], dtype=np.int64)
        self.dof_adr = np.array([self.model.jnt_dofadr[j] for j in joint_ids], dtype=np.int64)
        actuator_ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in g1.ALL_JOINTS]
        if actuator_ids != list(range(len(g1.ALL_JOINTS))):
            raise RuntimeError("actuators are not in ALL_JOINTS order")  # model.py writes them in order
        self.effort = g1.table("effort")
        self.pelvis_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, PELVIS_BODY)
        self.imu_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, IMU_SITE)
        self._base_velocity = np.zeros(3)  # kinematic mode: commanded world-frame linear velocity
        self._push_velocity = np.zeros(3)  # kinematic mode: a push (push_base) on top of it, until _push_until
        self._push_until = 0.0
        self._base_yaw_rate = 0.0
        self._base_yaw = 0.0
        objects = tuple(obj.name for obj in self.layout.objects)
        self.grasp = GraspAssist(self.model, objects) if self.config.grasp_assist else None
        self.collisions = CollisionMonitor(self.model, objects)  # counted on every physics step
        self.reset()

    # --- set-up ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Default standing pose, feet on the floor, objects at their layout poses, time 0."""
        mujoco.mj_resetData(self.model, self.data)  # also switches every grasp weld off
        self._push_until = 0.0
        self.collisions.reset()
        self.data.qpos[self.qpos_adr] = g1.table("default")
        for obj in self.layout.objects:
            joint = self.model.joint(f"{obj.name}_joint")
            adr = joint.qposadr[0]
            self.data.qpos[adr : adr + 3] = (obj.x, obj.y, obj.z)
            self.data.qpos[adr + 3 : adr + 7] = obj.quat()
        height = self.standing_height(g1.table("default", g1.LOWER_BODY_JOINTS))
        self._harness_height = height
        self.set_base(0.0, 0.0, height, 0.0)
        self.apply(JointCommand.position(g1.table("default"), g1.table("kp"), g1.table("kd")))
        mujoco.mj_forward(self.model, self.data)

    def standing_height(self, lower_body_q: np.ndarray) -> float:
        """Pelvis height [m] at which the lower soles touch the floor for these 15 leg/waist angles."""
        scratch = mujoco.MjData(self.model)
        scratch.qpos[:] = self.data.qpos
        lower_adr = self.qpos_adr[: len(g1.LOWER_BODY_JOINTS)]
        scratch.qpos[lower_adr] = lower_body_q
        if self.kinematic:
            scratch.mocap_pos[0] = (0.0, 0.0, STANDING_PELVIS_Z)
            scratch.mocap_quat[0] = (1.0, 0.0, 0.0, 0.0)
        else:
            scratch.qpos[0:7] = (0.0, 0.0, STANDING_PELVIS_Z, 1.0, 0.0, 0.0, 0.0)
        mujoco.mj_kinematics(self.model, scratch)
        lowest = math.inf
        for side in ("left", "right"):
            body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"{side}_ankle_roll_link")
            for geom in np.flatnonzero(self.model.geom_bodyid == body):
                half = self.model.geom_size[geom]
                rot = scratch.geom_xmat[geom].reshape(3, 3)
                lowest = min(lowest, scratch.geom_xpos[geom][2] - float(np.abs(rot[2]) @ half))
        return STANDING_PELVIS_Z - lowest

    # --- the motors -----------------------------------------------------------------------------
    def apply(self, command: JointCommand) -> None:
        """Set every joint's PD motor from a (43-joint, ALL_JOINTS order) command."""
        if len(command) != len(g1.ALL_JOINTS):
            raise ValueError(f"command has {len(command)} joints, expected {len(g1.ALL_JOINTS)}")
        if not command.is_finite():
            raise ValueError("non-finite joint command reached the simulator")  # the safety layer prevents this
        kp = command.kp if command.enabled else np.zeros_like(command.kp)
        kd = command.kd if command.enabled else np.zeros_like(command.kd)
        # One motor torque, clipped once to the effort limit as a motor driver does:
        # kp (q_des - q) + kd (dq_des - dq) + tau = gain*ctrl + bias, with the feed-forward
        # kd dq_des + tau in the bias's constant term. (Clipping the PD term and the feed-forward
        # separately let the two cancel: a light wrist ran on at 1.8x its cap with zero net torque.)
        feed_forward = (command.tau + kd * command.dq) if command.enabled else np.zeros_like(command.tau)
        self.model.actuator_gainprm[:, 0] = kp
        self.model.actuator_biasprm[:, 0] = feed_forward
        self.model.actuator_biasprm[:, 1] = -kp
        self.model.actuator_biasprm[:, 2] = -kd
        self.data.ctrl[:] = command.q

    def step(self, n: int = 1) -> None:
        """Advance physics by n steps (n * timestep seconds); the kinematic base moves at its velocity."""
        for _ in range(n):
            if self.config.harness and not self.kinematic:
                self._apply_harness()
            if self.kinematic:
                dt = self.model.opt.timestep
                velocity = self._base_velocity
                if self.data.time < self._push_until:
                    velocity = velocity + self._push_velocity
                pos = self.data.mocap_pos[0] + velocity * dt
                self._base_yaw += self._base_yaw_rate * dt
                self.data.mocap_pos[0] = pos
                self.data.mocap_quat[0] = yaw_quat(self._base_yaw)
            mujoco.mj_step(self.model, self.data)
            if self.grasp is not None:
                self.grasp.update(self.data)
            self.collisions.update(self.data)

    def _apply_harness(self) -> None:
        """Gantry forces on the pelvis (world frame): rope up to the standing height, upright gimbal."""
        z = self.data.qpos[2]
        vz = self.data.qvel[2]
        lift = max(0.0, HARNESS_STIFFNESS * (self._harness_height - z) - HARNESS_DAMPING * vz)
        rot = self.data.xmat[self.pelvis_id].reshape(3, 3)
        tilt = np.cross(rot[:, 2], np.array([0.0, 0.0, 1.0]))  # rotation (axis * sin angle) back to upright
        omega = rot @ self.data.qvel[3:6]  # free-joint angular velocity is in the body frame
        torque = HARNESS_TILT_STIFFNESS * tilt - HARNESS_TILT_DAMPING * omega
        torque[2] = 0.0  # yaw stays free
        self.data.xfrc_applied[self.pelvis_id] = (0.0, 0.0, lift, *torque)

    def set_base(self, x: float, y: float, z: float, yaw: float, velocity=(0.0, 0.0, 0.0), yaw_rate=0.0) -> None:
        """Place the pelvis (m, rad) and set the velocity it moves with between calls (world frame)."""
        if self.kinematic:
            self.data.mocap_pos[0] = (x, y, z)
            self.data.mocap_quat[0] = yaw_quat(yaw)
            self._base_velocity = np.asarray(velocity, dtype=np.float64)
            self._base_yaw_rate = float(yaw_rate)
            self._base_yaw = float(yaw)
        else:
            self.data.qpos[0:3] = (x, y, z)
            self.data.qpos[3:7] = yaw_quat(yaw)
            self.data.qvel[0:6] = 0.0

    def push_base(self, displacement_xy: tuple[float, float], duration_s: float) -> None:
        """Kinematic mode: move the pelvis by displacement_xy (m, world frame) over the next
        duration_s of sim time on top of whatever it is commanded: a disturbance the commands do not
        contain (a misstep, a shove), for demonstrations that show the way back (docs/sim.md)."""
        if not self.kinematic:
            raise ValueError("push_base moves the kinematic base; the physics base is pushed with xfrc_applied")
        if not duration_s > 0.0:
            raise ValueError(f"push duration must be > 0 s, got {duration_s!r}")
        self._push_velocity = np.array([displacement_xy[0], displacement_xy[1], 0.0]) / float(duration_s)
        self._push_until = self.data.time + float(duration_s)

    # --- read-back ------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return float(self.data.time)

    def joint_state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q [rad], dq [rad/s], tau [N·m]) of the 43 joints in ALL_JOINTS order (copies)."""
        q = self.data.qpos[self.qpos_adr].copy()
        dq = self.data.qvel[self.dof_adr].copy()
        tau = self.data.actuator_force.copy()  # the whole motor torque (PD + feed-forward), clipped
        return q, dq, tau

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Pelvis position (3,) [m] and orientation (4,) wxyz in the world."""
        return self.data.xpos[self.pelvis_id].copy(), self.data.xquat[self.pelvis_id].copy()

    def imu(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pelvis IMU: orientation wxyz (4,), angular velocity (3,) [rad/s] and specific force (3,)
        [m/s^2] in the IMU frame, as the G1's LowState_.imu_state reports them."""
        _, quat = self.base_pose()
        rot = self.data.site_xmat[self.imu_site].reshape(3, 3)
        if self.kinematic:
            gyro = rot.T @ np.array([0.0, 0.0, self._base_yaw_rate])
            accel = rot.T @ np.array([0.0, 0.0, GRAVITY])  # commanded velocity is constant between ticks
            return quat, gyro, accel
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self.imu_site, vel, 1)
        acc = np.zeros(6)
        mujoco.mj_rnePostConstraint(self.model, self.data)
        mujoco.mj_objectAcceleration(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self.imu_site, acc, 1)
        return quat, vel[:3].copy(), acc[3:].copy()

    def body_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and wxyz orientation (4,) of a body (e.g. "can")."""
        body = self.model.body(name)
        return self.data.xpos[body.id].copy(), self.data.xquat[body.id].copy()

    def snapshot(self) -> Snapshot:
        return Snapshot(self.time, self.data.qpos.copy(), self.data.mocap_pos.copy(), self.data.mocap_quat.copy())
