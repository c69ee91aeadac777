"""A scripted expert for the tabletop tasks: walk to the object, grasp it, lift, step to the basket, place.

It plays the teleoperator: ScriptedExpert.command(t) gives the same two commands a teleop rig
publishes, the upper-body targets (28, UPPER_BODY_JOINTS order: 14 arm + 14 hand) and the 8-D
lower-body command (LOWER_BODY_COMMAND_NAMES order), which psi0_ros.nodes.sim_expert publishes on
/psi0/upper_body_command and /psi0/lower_body_command. It is privileged: it reads the object and
pelvis poses straight from the G1Sim (as a motion-capture system would) and plans with inverse
kinematics on its own MjData of the same model. The base is driven closed loop (a P controller on
the pelvis position through vx/vy, never slower than the lower body's stand-in-place threshold,
heading held at target_yaw 0); the arm moves in joint space
between IK solutions with cosine blends, so the motion is smooth and the safety layer's rate
limits never bind.

Phases (sim time): raise both forearms (hands clear of the objects), step to a stance that puts
the object at GRASP_REACH in front of the chosen hand, lower the hand behind the object, slide it
in with the palm vertical and the object on the thumb side, close the hand, lift, step to a
stance beside the basket, move the object over the basket, open the hand, retract, settle.
The grasp is physical: finger friction holds the can (measured 20/20 layouts with the assist
off, docs/sim.md); the labelled grasp assist (psi0_ros.sim.grasp) is there for harder objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from psi0_ros import g1
from psi0_ros.control.amo import STAND_SPEED
from psi0_ros.control.lower_body import LOWER_BODY_INDEX
from psi0_ros.sim.demo import hand_closure
from psi0_ros.sim.grasp import PALM_BODY
from psi0_ros.sim.scene import BASKET_WALL, BASKET_WALL_HALF_HEIGHT, CAN_HALF_HEIGHT, CUBE_HALF, TABLE_HEIGHT
from psi0_ros.sim.simulator import G1Sim

_UPPER = {name: i for i, name in enumerate(g1.UPPER_BODY_JOINTS)}
ARM = {"left": g1.LEFT_ARM_JOINTS, "right": g1.RIGHT_ARM_JOINTS}
# Where an object is held, in the palm (wrist_yaw_link) frame [m]: between the fingers and the
# thumb, which lies on the palm's -y side for the left hand and +y for the right one.
GRASP_X = 0.115
GRASP_Y = 0.054
GRASP_REACH = (0.30, 0.12)  # m, object in the pelvis heading frame at the grasp stance (x ahead, y outward)
PLACE_REACH = (0.30, 0.10)  # m, basket centre in the heading frame at the place stance (y outward)
APPROACH = 0.11  # m, how far behind the object (along the fingers) the hand comes down
LIFT = 0.16  # m
PALM_CLEARANCE = 0.05  # m, lowest grasp point above the table top
CLOSURE = 0.85  # commanded hand closure while holding
BASE_GAIN = 1.8  # 1/s, P gain of the stance controller
BASE_SPEED = 0.3  # m/s, most the expert commands
# m/s: while it steps, the larger of |vx|, |vy| is at least this, just above the speed below which
# the lower body stands in place (STAND_SPEED, AMO's rule), so the base never stalls short of a stance
MIN_BASE_SPEED = STAND_SPEED + 0.01
BASE_TOLERANCE = 0.008  # m
_HALF_HEIGHT = {"can": CAN_HALF_HEIGHT, "cube": CUBE_HALF}
# Stance pushes (StancePush): how far the base is displaced once it has settled at the grasp stance,
# and over how long. A learned policy's failed grasps stood 2.5-5 cm off this stance (docs/main_job.md).
PUSH_DISTANCE_M = (0.02, 0.05)
PUSH_DURATION_S = 0.4


@dataclass(frozen=True)
class StancePush:
    """Push the base off the grasp stance once it has settled there, then let the expert step back:
    the demonstration shows how to recover from a stance the policy misjudged (DART's idea: the
    states a learner drifts into, labelled with the expert's correction). The recorded commands
    stay the expert's; the push is the sim's (G1Sim.push_base)."""

    distance_m: float  # m
    direction_rad: float  # world frame
    duration_s: float = PUSH_DURATION_S

    @classmethod
    def draw(cls, probability: float, seed: int) -> StancePush | None:
        """With this probability a push of random direction and a distance in PUSH_DISTANCE_M,
        the same for the same seed (the layout seed: a re-recorded demo is the same demo)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"stance push probability must be in [0, 1], got {probability!r}")
        rng = np.random.default_rng([seed, 0x5EED])
        if rng.uniform() >= probability:
            return None
        return cls(float(rng.uniform(*PUSH_DISTANCE_M)), float(rng.uniform(-math.pi, math.pi)))


def _task_objects(task: str) -> tuple[str, str | None]:
    """(object to carry, where to put it or None) for a task name of psi0_ros.sim.tasks."""
    table = {"can_to_basket": ("can", "basket"), "cube_to_basket": ("cube", "basket"), "lift_can": ("can", None)}
    if task not in table:
        raise ValueError(f"the scripted expert has no plan for task {task!r}; it knows {sorted(table)}")
    return table[task]


def grasp_stance(task: str, obj: np.ndarray, target: np.ndarray | None) -> tuple[str, np.ndarray]:
    """(hand, pelvis x, y [m]) the expert grasps the task's object from: the hand on the object's
    outer side relative to where it goes (keeps the other objects clear), the object GRASP_REACH
    ahead of and outward from the pelvis."""
    _task_objects(task)  # a task the expert has no plan for is an error here too
    reference = target if target is not None else np.zeros(3)
    side = "right" if obj[1] <= reference[1] else "left"
    sign = 1.0 if side == "left" else -1.0
    return side, np.asarray(obj[:2], dtype=float) - np.array([GRASP_REACH[0], sign * GRASP_REACH[1]])


def _blend(a: np.ndarray, b: np.ndarray, u: float) -> np.ndarray:
    """Cosine blend from a (u <= 0) to b (u >= 1)."""
    w = 0.5 - 0.5 * math.cos(math.pi * min(1.0, max(0.0, u)))
    return a + (b - a) * w


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class ArmIK:
    """Damped least-squares IK of one arm (7 joints) for a point and orientation of the palm."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.qpos_adr = {s: np.array([model.joint(n).qposadr[0] for n in ARM[s]]) for s in ARM}
        self.dof_adr = {s: np.array([model.joint(n).dofadr[0] for n in ARM[s]]) for s in ARM}
        self.lower = {s: g1.table("lower", ARM[s]) + 0.05 for s in ARM}
        self.upper = {s: g1.table("upper", ARM[s]) - 0.05 for s in ARM}

    def palm_point(self, side: str) -> np.ndarray:
        sign = 1.0 if side == "left" else -1.0
        return np.array([GRASP_X, -sign * GRASP_Y, 0.0])

    def solve(
        self,
        side: str,
        qpos: np.ndarray,
        base: tuple[np.ndarray, float],
        target: np.ndarray,
        rotation: np.ndarray,
        iterations: int = 150,
    ) -> tuple[np.ndarray, float]:
        """Arm angles (7,) [rad] putting the grasp point at target (3,) [m] with the palm frame at
        rotation (3, 3), from the whole-model pose qpos and the pelvis (position, yaw); and the
        remaining position error [m]."""
        m, d = self.model, self.data
        d.qpos[:] = qpos
        d.mocap_pos[0] = base[0]
        d.mocap_quat[0] = (math.cos(base[1] / 2.0), 0.0, 0.0, math.sin(base[1] / 2.0))
        body = m.body(PALM_BODY.format(side=side)).id
        point = self.palm_point(side)
        adr, dof = self.qpos_adr[side], self.dof_adr[side]
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        error = np.inf
        for _ in range(iterations):
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            rot = d.xmat[body].reshape(3, 3)
            world_point = d.xpos[body] + rot @ point
            e_pos = target - world_point
            e_rot = 0.5 * sum(np.cross(rot[:, i], rotation[:, i]) for i in range(3))
            error = float(np.linalg.norm(e_pos))
            if error < 1e-4 and np.linalg.norm(e_rot) < 1e-3:
                break
            mujoco.mj_jac(m, d, jacp, jacr, world_point, body)
            jac = np.vstack([jacp[:, dof], 0.3 * jacr[:, dof]])
            err = np.concatenate([e_pos, 0.3 * e_rot])
            step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(6), err)
            d.qpos[adr] = np.clip(d.qpos[adr] + np.clip(step, -0.2, 0.2), self.lower[side], self.upper[side])
        return d.qpos[adr].copy(), error


@dataclass
class _Segment:
    name: str
    duration: float  # s of sim time (a base move may end earlier or later: it waits for the stance)
    arm: np.ndarray | None = None  # arm targets (7,) at the end of the segment; None = keep
    closure: float | None = None  # hand closure at the end; None = keep
    stance: np.ndarray | None = None  # pelvis (x, y) goal [m]; None = stand


class ScriptedExpert:
    """Closed-loop scripted demonstration of one task on one G1Sim (kinematic base mode)."""

    def __init__(
        self,
        sim: G1Sim,
        task: str = "can_to_basket",
        plan_offset: tuple[float, float] = (0.0, 0.0),
        push: StancePush | None = None,
    ) -> None:
        """plan_offset (m, world x, y): plan for the object displaced by this much, as a policy that
        sees the object only roughly would (how far off a grasp may be: `psi0 sim demos --measure
        --plan-offset`); the demonstrations use (0, 0). push: displace the base once it has settled
        at the grasp stance (StancePush), then step back to it."""
        if not sim.kinematic:
            raise ValueError("the scripted expert drives the kinematic base mode (8-D lower-body command)")
        self.sim = sim
        self.task = task
        self.object, self.target = _task_objects(task)
        self.plan_offset = np.array([plan_offset[0], plan_offset[1], 0.0])
        self.push = push
        self.pushed_at: float | None = None  # sim time of the stance push, once done
        self.ik = ArmIK(sim.model)
        self.default_upper = g1.table("default", g1.UPPER_BODY_JOINTS)
        self.ready_arm = {side: self._ready(side) for side in ARM}
        self.reach_error = 0.0  # m, worst IK position error of the plan
        self.segments: list[_Segment] = []
        self.side = "right"
        self._start: float | None = None
        self._index = 0
        self._segment_start = 0.0
        self._upper_from = self.default_upper.copy()
        self._upper = self.default_upper.copy()
        self._height = float(sim.base_pose()[0][2])
        self.done = False

    @property
    def phase(self) -> str:
        return "done" if self.done else (self.segments[self._index].name if self.segments else "start")

    def _ready(self, side: str) -> np.ndarray:
        """Forearm raised, hand high and close to the chest: clears everything on the table."""
        q = g1.table("default", ARM[side]).copy()
        names = list(ARM[side])
        q[names.index(f"{side}_shoulder_pitch_joint")] = 0.2
        q[names.index(f"{side}_elbow_joint")] = -1.0
        return q

    # --- planning ---------------------------------------------------------------------------------
    def _palm_rotation(self, side: str, toward: np.ndarray, stance: np.ndarray) -> np.ndarray:
        """Palm frame with the fingers level, pointing from the shoulder's side toward `toward`, palm vertical."""
        sign = 1.0 if side == "left" else -1.0
        shoulder = stance + np.array([0.0, sign * 0.15])
        direction = toward[:2] - shoulder
        yaw = math.atan2(direction[1], direction[0])
        return _rot_z(yaw)

    def _plan(self) -> None:
        sim = self.sim
        obj = sim.body_pose(self.object)[0] + self.plan_offset
        target = sim.body_pose(self.target)[0] if self.target else None
        self.side, stance = grasp_stance(self.task, obj, target)
        sign = 1.0 if self.side == "left" else -1.0
        qpos = sim.data.qpos.copy()
        arm_adr = self.ik.qpos_adr[self.side]
        z_base = self._height
        grasp = obj.copy()
        # Just above the object's centre, but the palm (4.2 cm below the grasp point) clear of the table.
        grasp[2] = max(TABLE_HEIGHT + _HALF_HEIGHT[self.object] + 0.005, TABLE_HEIGHT + PALM_CLEARANCE)
        rot = self._palm_rotation(self.side, obj, stance)
        fingers = rot[:, 0]
        base = (np.array([stance[0], stance[1], z_base]), 0.0)
        errors = []

        def solve(point: np.ndarray, seed: np.ndarray) -> np.ndarray:
            """IK from `seed` (the previous waypoint: small joint motions); other starts if it gets stuck."""
            best = None
            for start in (seed, self.ready_arm[self.side], g1.table("default", ARM[self.side])):
                qpos[arm_adr] = start
                q, err = self.ik.solve(self.side, qpos, base, point, rot)
                if best is None or err < best[1] - 1e-4:
                    best = (q, err)
                if best[1] < 0.002:
                    break
            errors.append(best[1])
            return best[0]

        above = solve(grasp - APPROACH * fingers + np.array([0.0, 0.0, 0.07]), self.ready_arm[self.side])
        behind = solve(grasp - APPROACH * fingers, above)
        at = solve(grasp, behind)
        lifted = solve(grasp + np.array([0.0, 0.0, LIFT]), at)
        segments = [
            _Segment("raise", 1.2, arm=self.ready_arm[self.side]),
            _Segment("step_to_object", 4.0, stance=stance),
            _Segment("above", 1.2, arm=above),
            _Segment("behind", 1.0, arm=behind),
            _Segment("approach", 1.2, arm=at),
            _Segment("close", 1.0, closure=CLOSURE),
            _Segment("lift", 1.2, arm=lifted),
        ]
        if target is not None:
            place_stance = target[:2] - np.array([PLACE_REACH[0], sign * PLACE_REACH[1]])
            base = (np.array([place_stance[0], place_stance[1], z_base]), 0.0)
            rim = TABLE_HEIGHT + 2.0 * BASKET_WALL + 2.0 * BASKET_WALL_HALF_HEIGHT
            over = target.copy()
            over[2] = rim + _HALF_HEIGHT[self.object] + 0.04
            rot = self._palm_rotation(self.side, target, place_stance)
            place = solve(over, lifted)
            segments += [
                _Segment("step_to_basket", 4.0, stance=place_stance),
                _Segment("over_basket", 1.5, arm=place),
                _Segment("open", 0.8, closure=0.0),
                _Segment("retract", 1.2, arm=self.ready_arm[self.side]),
                _Segment("settle", 1.0),
            ]
        else:
            segments.append(_Segment("hold", 1.5))
        self.segments = segments
        self.reach_error = max(errors)

    # --- running ----------------------------------------------------------------------------------
    def command(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(upper-body targets (28,) [rad], lower-body command (8,)) at sim time t [s]."""
        if self._start is None:
            self._start = t
            self._segment_start = t
            self._plan()
            self._upper_from = self._upper.copy()
        lower = np.zeros(8)
        lower[LOWER_BODY_INDEX["torso_height"]] = self._height
        if self.done:
            return self._upper.copy(), lower
        segment = self.segments[self._index]
        u = (t - self._segment_start) / segment.duration
        goal = self._segment_goal(segment)
        self._upper = _blend(self._upper_from, goal, u)
        finished = u >= 1.0
        if segment.stance is not None:
            position, _ = self.sim.base_pose()
            error = segment.stance - position[:2]
            velocity = np.clip(BASE_GAIN * error, -BASE_SPEED, BASE_SPEED)
            largest = float(np.abs(velocity).max())
            if 0.0 < largest < MIN_BASE_SPEED:
                velocity *= MIN_BASE_SPEED / largest
            lower[LOWER_BODY_INDEX["vx"]], lower[LOWER_BODY_INDEX["vy"]] = velocity
            settled = float(np.linalg.norm(error)) < BASE_TOLERANCE
            if settled and segment.name == "step_to_object" and self.push is not None and self.pushed_at is None:
                push = self.push
                direction = np.array([math.cos(push.direction_rad), math.sin(push.direction_rad)])
                self.sim.push_base(tuple(push.distance_m * direction), push.duration_s)
                self.pushed_at = t
            pushing = self.pushed_at is not None and t < self.pushed_at + self.push.duration_s
            # While pushed the expert stands (it steps back from where the push left it); the way
            # back is part of this move.
            settled = settled and not pushing
            finished = settled or u >= 3.0  # a base that cannot get there ends the move anyway
            if settled or pushing:
                lower[LOWER_BODY_INDEX["vx"]] = lower[LOWER_BODY_INDEX["vy"]] = 0.0
        if finished:
            self._upper = goal
            self._upper_from = goal.copy()
            self._index += 1
            self._segment_start = t
            if self._index >= len(self.segments):
                self.done = True
        return self._upper.copy(), lower

    def _segment_goal(self, segment: _Segment) -> np.ndarray:
        goal = self._upper_from.copy()
        if segment.name == "raise":
            for side in ARM:
                for i, name in enumerate(ARM[side]):
                    goal[_UPPER[name]] = self.ready_arm[side][i]
        elif segment.arm is not None:
            for i, name in enumerate(ARM[self.side]):
                goal[_UPPER[name]] = segment.arm[i]
        if segment.closure is not None:
            for name in g1.LEFT_HAND_JOINTS if self.side == "left" else g1.RIGHT_HAND_JOINTS:
                if "thumb_0" not in name:
                    goal[_UPPER[name]] = 0.0
            for name, value in hand_closure(self.side, segment.closure / 0.7).items():
                goal[_UPPER[name]] = value
        return goal
