"""The G1 (29-DoF) with two Dex3-1 hands as MJCF, written from the joint table in psi0_ros.g1.

Link offsets and masses approximate Unitree's g1_29dof_with_hand_rev_1_0 description; shapes are
primitive capsules, boxes and spheres. Joint names, axes, ranges and effort limits come from the
joint table, so the simulator, the safety layer and the bridge cannot disagree.

Every joint is driven by a `general` actuator set up as a PD motor: force = kp*(ctrl - q) - kd*qdot
+ feed-forward (the bias's constant term: kd*dq_des + tau), clipped as a whole to the joint's effort
limit. kp/kd are rewritten from each JointCommand (G1Sim.apply), and
MuJoCo's implicitfast integrator treats the kd term implicitly, so stiff gains on light finger links
stay stable at a 2 ms step.

Two base modes: "physics" (the pelvis has a free joint; legs must keep the robot up) and
"kinematic" (the pelvis is a mocap body placed by the simulator; legs do not touch the floor).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from psi0_ros import g1
from psi0_ros.constants import FRAME_BASE

BASE_MODES = ("kinematic", "physics")
HEAD_CAMERA = "head_camera"
IMU_SITE = "imu_in_pelvis"
PELVIS_BODY = FRAME_BASE  # "pelvis"
STANDING_PELVIS_Z = 0.793  # m, pelvis height of Unitree's description at the zero pose

# Head camera (RealSense D435 on the G1 head): pose in torso_link from Unitree's URDF (d435_joint),
# pitched 0.8308 rad down. 640x480 with a 55 deg vertical field of view (the D435 colour sensor's
# 69 deg horizontal FOV cut to 4:3).
CAMERA_POS = (0.0576, 0.0175, 0.4299)
CAMERA_PITCH = 0.8308  # rad, downward
CAMERA_WIDTH = 640
CAMERA_HEIGHT = 480
CAMERA_FOVY_DEG = 55.0

# Collision bits: static world (floor, table) = 1, loose objects = 2, robot hands/feet = 4.
# A pair collides if (contype_a & conaffinity_b) or (contype_b & conaffinity_a).
STATIC_COLLISION = (1, 2 | 4)
OBJECT_COLLISION = (2, 1 | 2 | 4)
ROBOT_COLLISION = (4, 2)
NO_COLLISION = (0, 0)

_GREY = "0.7 0.7 0.72 1"
_DARK = "0.2 0.2 0.22 1"


@dataclass(frozen=True)
class Geom:
    type: str  # capsule | box | sphere
    size: tuple[float, ...]
    pos: tuple[float, float, float] | None = None
    fromto: tuple[float, ...] | None = None
    rgba: str = _GREY
    role: str = "visual"  # visual | hand | foot


@dataclass(frozen=True)
class Link:
    name: str
    parent: str
    pos: tuple[float, float, float]
    joint: str | None  # None: the pelvis (free joint or mocap)
    mass: float  # kg
    geoms: tuple[Geom, ...]
    quat: tuple[float, float, float, float] | None = None  # wxyz


def _leg(side: str) -> list[Link]:
    s = 1.0 if side == "left" else -1.0
    return [
        Link(
            f"{side}_hip_pitch_link",
            PELVIS_BODY,
            (0, s * 0.064452, -0.1027),
            f"{side}_hip_pitch_joint",
            1.35,
            (Geom("sphere", (0.05,), pos=(0, s * 0.03, -0.015), rgba=_DARK),),
        ),
        Link(
            f"{side}_hip_roll_link",
            f"{side}_hip_pitch_link",
            (0, s * 0.052, -0.030465),
            f"{side}_hip_roll_joint",
            1.52,
            (Geom("capsule", (0.045,), fromto=(0, 0, 0, 0.025, 0, -0.1)),),
            quat=(0.996179, 0, -0.0873386, 0),
        ),
        Link(
            f"{side}_hip_yaw_link",
            f"{side}_hip_roll_link",
            (0.025001, 0, -0.12412),
            f"{side}_hip_yaw_joint",
            1.702,
            (Geom("capsule", (0.05,), fromto=(0, 0, 0, -0.078, s * 0.002, -0.177)),),
        ),
        Link(
            f"{side}_knee_link",
            f"{side}_hip_yaw_link",
            (-0.078273, s * 0.0021489, -0.17734),
            f"{side}_knee_joint",
            1.932,
            (Geom("capsule", (0.04,), fromto=(0, 0, 0, 0, 0, -0.29)),),
            quat=(0.996179, 0, 0.0873386, 0),
        ),
        Link(
            f"{side}_ankle_pitch_link",
            f"{side}_knee_link",
            (0, -s * 9.4445e-05, -0.30001),
            f"{side}_ankle_pitch_joint",
            0.074,
            (Geom("sphere", (0.02,), pos=(0, 0, 0), rgba=_DARK),),
        ),
        Link(
            f"{side}_ankle_roll_link",
            f"{side}_ankle_pitch_link",
            (0, 0, -0.017558),
            f"{side}_ankle_roll_joint",
            0.608,
            (Geom("box", (0.09, 0.035, 0.013), pos=(0.035, 0, -0.022), rgba=_DARK, role="foot"),),
        ),
    ]


def _arm(side: str) -> list[Link]:
    s = 1.0 if side == "left" else -1.0
    return [
        Link(
            f"{side}_shoulder_pitch_link",
            "torso_link",
            (0.0039563, s * 0.10022, 0.24778),
            f"{side}_shoulder_pitch_joint",
            0.718,
            (Geom("sphere", (0.035,), pos=(0, s * 0.035, -0.01)),),
            quat=(0.990264, s * 0.139201, 0, 0),
        ),
        Link(
            f"{side}_shoulder_roll_link",
            f"{side}_shoulder_pitch_link",
            (0, s * 0.038, -0.013831),
            f"{side}_shoulder_roll_joint",
            0.643,
            (Geom("capsule", (0.034,), fromto=(0, 0, 0, 0, s * 0.006, -0.08)),),
            quat=(0.990268, -s * 0.139172, 0, 0),
        ),
        Link(
            f"{side}_shoulder_yaw_link",
            f"{side}_shoulder_roll_link",
            (0, s * 0.00624, -0.1032),
            f"{side}_shoulder_yaw_joint",
            0.734,
            (Geom("capsule", (0.032,), fromto=(0, 0, 0, 0.0158, 0, -0.075)),),
        ),
        Link(
            f"{side}_elbow_link",
            f"{side}_shoulder_yaw_link",
            (0.015783, 0, -0.080518),
            f"{side}_elbow_joint",
            0.6,
            (Geom("capsule", (0.03,), fromto=(0, 0, 0, 0.095, s * 0.0019, -0.01), role="hand"),),
        ),
        Link(
            f"{side}_wrist_roll_link",
            f"{side}_elbow_link",
            (0.1, s * 0.00188791, -0.01),
            f"{side}_wrist_roll_joint",
            0.085,
            (Geom("capsule", (0.028,), fromto=(0, 0, 0, 0.036, 0, 0)),),
        ),
        Link(
            f"{side}_wrist_pitch_link",
            f"{side}_wrist_roll_link",
            (0.038, 0, 0),
            f"{side}_wrist_pitch_joint",
            0.484,
            (Geom("sphere", (0.03,), pos=(0.02, 0, 0), rgba=_DARK),),
        ),
        Link(
            f"{side}_wrist_yaw_link",
            f"{side}_wrist_pitch_link",
            (0.046, 0, 0),
            f"{side}_wrist_yaw_joint",
            0.457,
            (Geom("box", (0.03, 0.016, 0.042), pos=(0.088, 0, 0), rgba=_DARK, role="hand"),),
        ),
    ]


def _hand(side: str) -> list[Link]:
    s = 1.0 if side == "left" else -1.0
    palm = f"{side}_wrist_yaw_link"
    finger = "0.35 0.35 0.38 1"

    def segment(end: tuple[float, float, float], radius: float) -> tuple[Geom, ...]:
        return (Geom("capsule", (radius,), fromto=(0, 0, 0, *end), rgba=finger, role="hand"),)

    links = [
        Link(
            f"{side}_hand_thumb_0_link",
            palm,
            (0.067, s * 0.003, 0),
            f"{side}_hand_thumb_0_joint",
            0.086,
            (Geom("sphere", (0.014,), pos=(0, -s * 0.008, 0), rgba=finger, role="hand"),),
        ),
        Link(
            f"{side}_hand_thumb_1_link",
            f"{side}_hand_thumb_0_link",
            (-0.0025, -s * 0.0193, 0),
            f"{side}_hand_thumb_1_joint",
            0.059,
            segment((0, -s * 0.0458, 0), 0.011),
        ),
        Link(
            f"{side}_hand_thumb_2_link",
            f"{side}_hand_thumb_1_link",
            (0, -s * 0.0458, 0),
            f"{side}_hand_thumb_2_joint",
            0.02,
            segment((0, -s * 0.035, 0), 0.01),
        ),
    ]
    for finger_name, z in (("middle", -0.0285), ("index", 0.0285)):
        links += [
            Link(
                f"{side}_hand_{finger_name}_0_link",
                palm,
                (0.1192, s * 0.0046, z),
                f"{side}_hand_{finger_name}_0_joint",
                0.059,
                segment((0.0458, 0, 0), 0.011),
            ),
            Link(
                f"{side}_hand_{finger_name}_1_link",
                f"{side}_hand_{finger_name}_0_link",
                (0.0458, 0, 0),
                f"{side}_hand_{finger_name}_1_joint",
                0.02,
                segment((0.035, 0, 0), 0.01),
            ),
        ]
    return links


def robot_links() -> list[Link]:
    """Every link below the pelvis, parents before children."""
    torso = [
        Link(
            "waist_yaw_link",
            PELVIS_BODY,
            (0, 0, 0),
            "waist_yaw_joint",
            0.214,
            (Geom("sphere", (0.03,), pos=(0, 0, 0.02), rgba=_DARK),),
        ),
        Link(
            "waist_roll_link",
            "waist_yaw_link",
            (-0.0039635, 0, 0.044),
            "waist_roll_joint",
            0.086,
            (Geom("sphere", (0.02,), pos=(0, 0, 0), rgba=_DARK),),
        ),
        Link(
            "torso_link",
            "waist_roll_link",
            (0, 0, 0),
            "waist_pitch_joint",
            7.818,
            (
                Geom("box", (0.065, 0.1, 0.12), pos=(0, 0, 0.17)),
                Geom("capsule", (0.03,), fromto=(0, 0, 0.29, 0, 0, 0.35), rgba=_DARK),
                Geom("sphere", (0.06,), pos=(-0.012, 0, 0.42), rgba=_DARK),
            ),
        ),
    ]
    return _leg("left") + _leg("right") + torso + _arm("left") + _hand("left") + _arm("right") + _hand("right")


def _fmt(values: tuple[float, ...] | list[float] | np.ndarray) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def camera_xyaxes() -> tuple[float, ...]:
    """Image x (right) and y (up) axes of the head camera in torso_link (MuJoCo cameras look along -z)."""
    forward = np.array([math.cos(CAMERA_PITCH), 0.0, -math.sin(CAMERA_PITCH)])
    right = np.array([0.0, -1.0, 0.0])
    up = np.cross(right, forward)  # right x forward = up for a right-handed camera frame
    return tuple(right) + tuple(up)


def _collision(role: str, base_mode: str) -> tuple[int, int]:
    if role == "hand":
        return ROBOT_COLLISION
    if role == "foot" and base_mode == "physics":
        return (4, 2)  # feet stand on the floor (static conaffinity has bit 4)
    return NO_COLLISION


def _add_geom(body: ET.Element, geom: Geom, mass: float | None, base_mode: str) -> None:
    contype, conaffinity = _collision(geom.role, base_mode)
    attrs = {"type": geom.type, "size": _fmt(geom.size), "rgba": geom.rgba}
    attrs["contype"], attrs["conaffinity"] = str(contype), str(conaffinity)
    if geom.fromto is not None:
        attrs["fromto"] = _fmt(geom.fromto)
    if geom.pos is not None:
        attrs["pos"] = _fmt(geom.pos)
    if mass is not None:
        attrs["mass"] = f"{mass:.6g}"
    else:
        attrs["mass"] = "0"
    if geom.role == "hand":
        attrs["condim"] = "4"
        attrs["friction"] = "1.2 0.02 0.001"
    ET.SubElement(body, "geom", attrs)


def add_robot(worldbody: ET.Element, actuator: ET.Element, base_mode: str) -> None:
    """Append the pelvis subtree to worldbody and one PD actuator per joint (ALL_JOINTS order)."""
    if base_mode not in BASE_MODES:
        raise ValueError(f"unknown base mode {base_mode!r}; expected one of {BASE_MODES}")
    pelvis_attrs = {"name": PELVIS_BODY, "pos": _fmt((0, 0, STANDING_PELVIS_Z))}
    if base_mode == "kinematic":
        pelvis_attrs["mocap"] = "true"
    pelvis = ET.SubElement(worldbody, "body", pelvis_attrs)
    if base_mode == "physics":
        ET.SubElement(pelvis, "freejoint", {"name": "floating_base_joint"})
        ET.SubElement(pelvis, "inertial", {"pos": "0 0 -0.076", "mass": "3.813", "diaginertia": "0.0105 0.0093 0.0079"})
    ET.SubElement(
        pelvis,
        "geom",
        {
            "type": "capsule",
            "size": "0.06",
            "fromto": "0 -0.07 -0.05 0 0.07 -0.05",
            "rgba": _DARK,
            "contype": "0",
            "conaffinity": "0",
            "mass": "0",
        },
    )
    ET.SubElement(pelvis, "site", {"name": IMU_SITE, "pos": "0.04525 0 -0.08339", "size": "0.01"})
    bodies = {PELVIS_BODY: pelvis}
    for link in robot_links():
        attrs = {"name": link.name, "pos": _fmt(link.pos)}
        if link.quat is not None:
            attrs["quat"] = _fmt(link.quat)
        body = ET.SubElement(bodies[link.parent], "body", attrs)
        bodies[link.name] = body
        spec = g1.JOINT_SPECS[link.joint]
        axis = {"x": "1 0 0", "y": "0 1 0", "z": "0 0 1"}[spec.axis]
        is_hand = link.joint in g1.HAND_JOINTS
        ET.SubElement(
            body,
            "joint",
            {
                "name": spec.name,
                "axis": axis,
                "range": _fmt((spec.lower, spec.upper)),
                # Rotor inertia, viscous and dry friction of the motors (Unitree's MJCF uses the body values).
                "armature": "0.002" if is_hand else "0.01",
                "damping": "0.01" if is_hand else "0.05",
                "frictionloss": "0.01" if is_hand else "0.2",
            },
        )
        for i, geom in enumerate(link.geoms):
            _add_geom(body, geom, link.mass if i == 0 else None, base_mode)
        if link.name == "torso_link":
            ET.SubElement(
                body,
                "camera",
                {
                    "name": HEAD_CAMERA,
                    "pos": _fmt(CAMERA_POS),
                    "xyaxes": _fmt(camera_xyaxes()),
                    "fovy": f"{CAMERA_FOVY_DEG:g}",
                },
            )
    for spec in g1.ALL:
        ET.SubElement(
            actuator,
            "general",
            {
                "name": spec.name,
                "joint": spec.name,
                "biastype": "affine",
                "gainprm": f"{spec.kp:g}",
                "biasprm": f"0 {-spec.kp:g} {-spec.kd:g}",
                "forcelimited": "true",
                "forcerange": _fmt((-spec.effort, spec.effort)),
            },
        )
