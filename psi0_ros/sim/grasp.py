"""Grasp assist (a labelled simulation aid): weld an object to a hand once the fingers close on it.

Primitive-geom Dex3 fingers at kp 1.5 N·m/rad do not hold a can reliably in MuJoCo (soft
contacts creep and the light finger links bounce), so the simulated world may help: every
GRASP_CHECK_PERIOD physics steps, for each hand and each loose graspable object (can, cube),
the weld between them switches ON when the hand is commanded closed (mean finger closure of the
PD targets >= CLOSE_ON) AND the object touches at least two different links of that hand (fingers
around it), and OFF when the hand is commanded open again (closure <= CLOSE_OFF). The weld keeps the object where it was relative to the
palm at that moment, so nothing jumps. It never moves an object the hand is not touching, and
the task checks in psi0_ros.sim.tasks read only object poses, so a policy still has to bring the
hand to the object, close it, carry it and open it over the target. SimConfig.grasp_assist turns
it on (config/sim.yaml: sim.grasp_assist); G1Sim.grasp_events counts welds made.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from psi0_ros import g1

GRASPABLE = ("can", "cube")
HANDS = ("left", "right")
CLOSE_ON = 0.35  # mean finger closure (0 open .. 1 at the joint stops) that counts as a closed hand
CLOSE_OFF = 0.2  # closure under which the weld lets go
GRASP_CHECK_PERIOD = 5  # physics steps between checks (10 ms at the 2 ms step)
PALM_BODY = "{side}_wrist_yaw_link"


def weld_name(side: str, obj: str) -> str:
    return f"grasp_{side}_{obj}"


def add_grasp_welds(root: ET.Element, objects: tuple[str, ...]) -> None:
    """Inactive weld equalities (one per hand and graspable object) on the MJCF root."""
    names = [obj for obj in objects if obj in GRASPABLE]
    if not names:
        return
    equality = ET.SubElement(root, "equality")
    for side in HANDS:
        for obj in names:
            ET.SubElement(
                equality,
                "weld",
                {"name": weld_name(side, obj), "body1": PALM_BODY.format(side=side), "body2": obj, "active": "false"},
            )


def _closing_joints(side: str) -> list[tuple[str, float]]:
    """(joint, value at full closure) of the joints that curl fingers and thumb (thumb_0 rotates only)."""
    joints = g1.LEFT_HAND_JOINTS if side == "left" else g1.RIGHT_HAND_JOINTS
    out = []
    for name in joints:
        if "thumb_0" in name:
            continue
        spec = g1.JOINT_SPECS[name]
        out.append((name, spec.lower if abs(spec.lower) > abs(spec.upper) else spec.upper))
    return out


class GraspAssist:
    """Switches the grasp welds of a model built with add_grasp_welds() (see the module docstring)."""

    def __init__(self, model: mujoco.MjModel, objects: tuple[str, ...]) -> None:
        self.model = model
        self.objects = [obj for obj in objects if obj in GRASPABLE]
        self.welds: dict[tuple[str, str], int] = {}
        self.hand_bodies: dict[str, set[int]] = {}
        self.closure_ctrl: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.object_body: dict[str, int] = {obj: model.body(obj).id for obj in self.objects}
        self.palm_body: dict[str, int] = {}
        for side in HANDS:
            palm = model.body(PALM_BODY.format(side=side)).id
            self.palm_body[side] = palm
            self.hand_bodies[side] = {palm} | {
                b for b in range(model.nbody) if model.body(b).name.startswith(f"{side}_hand_")
            }
            pairs = _closing_joints(side)
            actuators = np.array([model.actuator(name).id for name, _ in pairs], dtype=np.int64)
            self.closure_ctrl[side] = (actuators, np.array([full for _, full in pairs]))
            for obj in self.objects:
                self.welds[(side, obj)] = model.equality(weld_name(side, obj)).id
        self.events = 0  # welds switched on
        self._count = 0

    def closure(self, data: mujoco.MjData, side: str) -> float:
        """Commanded closure of one hand in [0, 1]: mean PD target / angle at the joint stop."""
        actuators, full = self.closure_ctrl[side]
        return float(np.mean(np.clip(data.ctrl[actuators] / full, 0.0, 1.0)))

    def held(self, data: mujoco.MjData, side: str) -> str | None:
        for obj in self.objects:
            if data.eq_active[self.welds[(side, obj)]]:
                return obj
        return None

    def _touching(self, data: mujoco.MjData, side: str, obj: str) -> int:
        """How many different links of the hand touch the object."""
        body = self.object_body[obj]
        hand = self.hand_bodies[side]
        links = set()
        for i in range(data.ncon):
            contact = data.contact[i]
            b1, b2 = self.model.geom_bodyid[contact.geom1], self.model.geom_bodyid[contact.geom2]
            if b1 == body and b2 in hand:
                links.add(b2)
            elif b2 == body and b1 in hand:
                links.add(b1)
        return len(links)

    def update(self, data: mujoco.MjData) -> None:
        """Call after each physics step; checks every GRASP_CHECK_PERIOD calls."""
        self._count += 1
        if self._count % GRASP_CHECK_PERIOD:
            return
        for side in HANDS:
            closure = self.closure(data, side)
            held = self.held(data, side)
            if held is not None:
                if closure <= CLOSE_OFF:
                    data.eq_active[self.welds[(side, held)]] = 0
                continue
            if closure < CLOSE_ON:
                continue
            for obj in self.objects:
                if any(data.eq_active[self.welds[(other, obj)]] for other in HANDS):
                    continue
                if self._touching(data, side, obj) >= 2:
                    self._attach(data, side, obj)
                    break

    def _attach(self, data: mujoco.MjData, side: str, obj: str) -> None:
        """Weld obj to the palm at their current relative pose (eq_data: anchor, relpos, relquat)."""
        palm, body = self.palm_body[side], self.object_body[obj]
        palm_rot = data.xmat[palm].reshape(3, 3)
        relpos = palm_rot.T @ (data.xpos[body] - data.xpos[palm])
        relquat = np.zeros(4)
        palm_inv = np.zeros(4)
        mujoco.mju_negQuat(palm_inv, data.xquat[palm])
        mujoco.mju_mulQuat(relquat, palm_inv, data.xquat[body])
        weld = self.welds[(side, obj)]
        self.model.eq_data[weld, 0:3] = 0.0
        self.model.eq_data[weld, 3:6] = relpos
        self.model.eq_data[weld, 6:10] = relquat
        self.model.eq_data[weld, 10] = 1.0  # torquescale
        data.eq_active[weld] = 1
        self.events += 1

    def release_all(self, data: mujoco.MjData) -> None:
        for weld in self.welds.values():
            data.eq_active[weld] = 0
