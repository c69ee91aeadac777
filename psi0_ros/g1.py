"""The Unitree G1 (29-DoF) with two Dex3-1 hands: every joint table in one place.

Names, motor-slot order, joint axes, position/velocity/effort limits, the default standing pose
and the PD gains used by the robot bridge, the safety layer and the simulator. Limits and axes follow
Unitree's g1_29dof_rev_1_0 / g1_29dof_with_hand_rev_1_0 URDF (unitreerobotics/unitree_ros); where
that URDF and Unitree's MJCF disagree (ankle and waist roll/pitch effort 35 vs 50 N·m, velocity 30
vs 37 rad/s; Dex3 thumb_1 lower limit -0.611 vs -0.724 rad) the narrower URDF value is kept, since
the safety layer clamps to these numbers.

Gains (kp N·m/rad, kd N·m·s/rad). The JointSpec columns are the REAL-ROBOT default, the gains Psi0
deploys on the G1 (physical-superintelligence-lab/Psi0 @ 15d7d3a, real/teleop/robot_control/
robot_body.py, _setup_motor_params: legs 165/165/165/330/160/40 kd 2/2/2/4/2/1, waist 440 kd 15,
shoulders + elbow 50 kd 7.5, wrists 30 kd 6) and, for the Dex3-1, xr_teleoperate's
Dex3_1_Controller (unitreerobotics/xr_teleoperate, teleop/robot_control/robot_hand_unitree.py:
kp 1.5, kd 0.2). GAIN_SETS["amo_sim"] is AMO's simulation table (OpenTeleVision/AMO @ 6a2be3f,
play_amo.py: legs 150/150/150/300/80/20 kd 2/2/2/4/2/1, waist 400 kd 15, shoulder pitch/roll/yaw +
elbow 80/80/40/60 kd 2/2/1/1); AMO's 23-DoF G1 has no wrists, so wrists and hands keep the values
above. BACKEND_GAINS names the default set per robot backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointSpec:
    name: str
    lower: float  # rad
    upper: float  # rad
    velocity: float  # rad/s, magnitude limit
    effort: float  # N·m, magnitude limit
    kp: float  # N·m/rad
    kd: float  # N·m·s/rad
    default: float  # rad, standing pose
    axis: str  # "x" | "y" | "z": rotation axis in the joint's own link frame (Unitree's URDF)


def _leg(side: str, roll: tuple[float, float]) -> list[JointSpec]:
    # kp/kd: Psi0 robot_body.py (see the module docstring)
    return [
        JointSpec(f"{side}_hip_pitch_joint", -2.5307, 2.8798, 32.0, 88.0, 165.0, 2.0, -0.1, "y"),
        JointSpec(f"{side}_hip_roll_joint", roll[0], roll[1], 20.0, 139.0, 165.0, 2.0, 0.0, "x"),
        JointSpec(f"{side}_hip_yaw_joint", -2.7576, 2.7576, 32.0, 88.0, 165.0, 2.0, 0.0, "z"),
        JointSpec(f"{side}_knee_joint", -0.087267, 2.8798, 20.0, 139.0, 330.0, 4.0, 0.3, "y"),
        JointSpec(f"{side}_ankle_pitch_joint", -0.87267, 0.5236, 30.0, 35.0, 160.0, 2.0, -0.2, "y"),
        JointSpec(f"{side}_ankle_roll_joint", -0.2618, 0.2618, 30.0, 35.0, 40.0, 1.0, 0.0, "x"),
    ]


def _arm(side: str, roll: tuple[float, float]) -> list[JointSpec]:
    # kp/kd: Psi0 robot_body.py (see the module docstring)
    return [
        JointSpec(f"{side}_shoulder_pitch_joint", -3.0892, 2.6704, 37.0, 25.0, 50.0, 7.5, 0.0, "y"),
        JointSpec(f"{side}_shoulder_roll_joint", roll[0], roll[1], 37.0, 25.0, 50.0, 7.5, 0.0, "x"),
        JointSpec(f"{side}_shoulder_yaw_joint", -2.618, 2.618, 37.0, 25.0, 50.0, 7.5, 0.0, "z"),
        JointSpec(f"{side}_elbow_joint", -1.0472, 2.0944, 37.0, 25.0, 50.0, 7.5, 0.3, "y"),
        JointSpec(f"{side}_wrist_roll_joint", -1.97222, 1.97222, 37.0, 25.0, 30.0, 6.0, 0.0, "x"),
        JointSpec(f"{side}_wrist_pitch_joint", -1.61443, 1.61443, 22.0, 5.0, 30.0, 6.0, 0.0, "y"),
        JointSpec(f"{side}_wrist_yaw_joint", -1.61443, 1.61443, 22.0, 5.0, 30.0, 6.0, 0.0, "z"),
    ]


# Dex3-1 motor (wire) order of HandCmd_/HandState_, the SAME for both hands: thumb 0-2, middle 0-1,
# index 0-1. Source: Unitree's "Sort by message structure" (support.unitree.com G1 dexterous hand),
# as xr_teleoperate (teleop/robot_control/hand_retargeting.py, *_dex3_api_joint_names) and Psi0's
# teleop (real/teleop/robot_control/hand_retargeting.py) command it. Psi0's data and checkpoints store
# each hand's 7 joints in this order, so the 36-D action/state layout uses it too.
DEX3_WIRE_ORDER: tuple[str, ...] = ("thumb_0", "thumb_1", "thumb_2", "middle_0", "middle_1", "index_0", "index_1")


def _hand(side: str) -> list[JointSpec]:
    # The two hands are mirror images: the right hand's thumb_1/2 and finger ranges flip sign.
    s = 1.0 if side == "left" else -1.0

    def rng(lo: float, hi: float) -> tuple[float, float]:
        return (lo, hi) if s > 0 else (-hi, -lo)

    def spec(joint: str, lim: tuple[float, float], velocity: float, effort: float, axis: str) -> JointSpec:
        # kp 1.5, kd 0.2: xr_teleoperate's Dex3_1_Controller (teleop/robot_control/robot_hand_unitree.py).
        return JointSpec(f"{side}_hand_{joint}_joint", lim[0], lim[1], velocity, effort, 1.5, 0.2, 0.0, axis)

    fingers = {
        "thumb_0": spec("thumb_0", (-1.0472, 1.0472), 3.14, 2.45, "y"),
        "thumb_1": spec("thumb_1", rng(-0.610865, 1.0472), 12.0, 1.4, "z"),
        "thumb_2": spec("thumb_2", rng(0.0, 1.74533), 12.0, 1.4, "z"),
        "index_0": spec("index_0", rng(-1.5708, 0.0), 12.0, 1.4, "z"),
        "index_1": spec("index_1", rng(-1.74533, 0.0), 12.0, 1.4, "z"),
        "middle_0": spec("middle_0", rng(-1.5708, 0.0), 12.0, 1.4, "z"),
        "middle_1": spec("middle_1", rng(-1.74533, 0.0), 12.0, 1.4, "z"),
    }
    return [fingers[finger] for finger in DEX3_WIRE_ORDER]


WAIST: list[JointSpec] = [  # kp/kd: Psi0 robot_body.py (see the module docstring)
    JointSpec("waist_yaw_joint", -2.618, 2.618, 32.0, 88.0, 440.0, 15.0, 0.0, "z"),
    JointSpec("waist_roll_joint", -0.52, 0.52, 30.0, 35.0, 440.0, 15.0, 0.0, "x"),
    JointSpec("waist_pitch_joint", -0.52, 0.52, 30.0, 35.0, 440.0, 15.0, 0.0, "y"),
]

# Motor slots 0-28 of LowCmd_/LowState_ (slots 29-34 exist on the wire and stay unused).
BODY: tuple[JointSpec, ...] = tuple(
    _leg("left", (-0.5236, 2.9671))
    + _leg("right", (-2.9671, 0.5236))
    + WAIST
    + _arm("left", (-1.5882, 2.2515))
    + _arm("right", (-2.2515, 1.5882))
)
LEFT_HAND: tuple[JointSpec, ...] = tuple(_hand("left"))
RIGHT_HAND: tuple[JointSpec, ...] = tuple(_hand("right"))
HANDS: tuple[JointSpec, ...] = LEFT_HAND + RIGHT_HAND
# /joint_states order: 29 body joints in motor-slot order, then left hand, then right hand.
ALL: tuple[JointSpec, ...] = BODY + HANDS

NUM_BODY_MOTORS = len(BODY)  # 29
NUM_LOWCMD_SLOTS = 35  # unitree_hg LowCmd_.motor_cmd has 35 entries

BODY_JOINTS: tuple[str, ...] = tuple(j.name for j in BODY)
LEG_JOINTS: tuple[str, ...] = BODY_JOINTS[0:12]
WAIST_JOINTS: tuple[str, ...] = BODY_JOINTS[12:15]
LOWER_BODY_JOINTS: tuple[str, ...] = BODY_JOINTS[0:15]  # what the lower-body controller drives
LEFT_ARM_JOINTS: tuple[str, ...] = BODY_JOINTS[15:22]
RIGHT_ARM_JOINTS: tuple[str, ...] = BODY_JOINTS[22:29]
ARM_JOINTS: tuple[str, ...] = LEFT_ARM_JOINTS + RIGHT_ARM_JOINTS
LEFT_HAND_JOINTS: tuple[str, ...] = tuple(j.name for j in LEFT_HAND)
RIGHT_HAND_JOINTS: tuple[str, ...] = tuple(j.name for j in RIGHT_HAND)
HAND_JOINTS: tuple[str, ...] = LEFT_HAND_JOINTS + RIGHT_HAND_JOINTS
ALL_JOINTS: tuple[str, ...] = tuple(j.name for j in ALL)  # 43
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(ALL_JOINTS)}
JOINT_SPECS: dict[str, JointSpec] = {j.name: j for j in ALL}
# What /psi0/upper_body_command drives (DESIGN §2): 14 arm joints, then 14 hand joints.
UPPER_BODY_JOINTS: tuple[str, ...] = ARM_JOINTS + HAND_JOINTS


def dex3_wire_order(side: str, fingers: tuple[str, ...] = DEX3_WIRE_ORDER) -> tuple[str, ...]:
    """Joint names of one hand in motor order 0-6. `fingers` overrides DEX3_WIRE_ORDER for one hand
    (a permutation of its finger names, e.g. from the unitree backend's per-hand parameter)."""
    if side not in ("left", "right"):
        raise ValueError(f"hand side must be 'left' or 'right', got {side!r}")
    fingers = tuple(fingers)
    if sorted(fingers) != sorted(DEX3_WIRE_ORDER):
        raise ValueError(f"{side} hand wire order must be a permutation of {DEX3_WIRE_ORDER}, got {fingers}")
    return tuple(f"{side}_hand_{finger}_joint" for finger in fingers)


LEFT_HAND_WIRE_ORDER: tuple[str, ...] = dex3_wire_order("left")  # == LEFT_HAND_JOINTS
RIGHT_HAND_WIRE_ORDER: tuple[str, ...] = dex3_wire_order("right")  # == RIGHT_HAND_JOINTS


def _amo_sim_gains() -> dict[str, tuple[float, float]]:
    """AMO's simulation gains (module docstring) for the joints AMO drives: {joint: (kp, kd)}."""
    leg = ((150.0, 2.0), (150.0, 2.0), (150.0, 2.0), (300.0, 4.0), (80.0, 2.0), (20.0, 1.0))
    arm = ((80.0, 2.0), (80.0, 2.0), (40.0, 1.0), (60.0, 1.0))  # shoulder pitch, roll, yaw; elbow
    gains = dict(zip(BODY_JOINTS[0:6], leg, strict=True)) | dict(zip(BODY_JOINTS[6:12], leg, strict=True))
    gains |= {name: (400.0, 15.0) for name in WAIST_JOINTS}
    gains |= dict(zip(LEFT_ARM_JOINTS[:4], arm, strict=True))
    return gains | dict(zip(RIGHT_ARM_JOINTS[:4], arm, strict=True))


# Named gain tables {joint: (kp, kd)} over ALL_JOINTS; "psi0_real" is the JointSpec columns.
GAIN_SETS: dict[str, dict[str, tuple[float, float]]] = {
    "psi0_real": {j.name: (j.kp, j.kd) for j in ALL},
    "amo_sim": {j.name: (j.kp, j.kd) for j in ALL} | _amo_sim_gains(),
}
BACKEND_GAINS: dict[str, str] = {"unitree": "psi0_real", "sim": "amo_sim"}  # default gain set per backend


def gains(name: str, joints: tuple[str, ...] = ALL_JOINTS) -> tuple[np.ndarray, np.ndarray]:
    """(kp, kd) float64 (N,) of a named gain set for the named joints."""
    if name not in GAIN_SETS:
        raise KeyError(f"unknown gain set {name!r}; known: {sorted(GAIN_SETS)}")
    table_ = GAIN_SETS[name]
    try:
        return np.array([table_[j][0] for j in joints]), np.array([table_[j][1] for j in joints])
    except KeyError as err:
        raise KeyError(f"unknown G1 joint: {err}") from None


def table(field: str, joints: tuple[str, ...] = ALL_JOINTS) -> np.ndarray:
    """One column of the joint table (e.g. "lower", "kp") for the named joints, float64 (N,)."""
    try:
        return np.array([getattr(JOINT_SPECS[name], field) for name in joints], dtype=np.float64)
    except KeyError as err:
        raise KeyError(f"unknown G1 joint or field: {err}") from None


assert NUM_BODY_MOTORS == 29 and len(ALL_JOINTS) == 43
assert LEFT_HAND_JOINTS == LEFT_HAND_WIRE_ORDER and RIGHT_HAND_JOINTS == RIGHT_HAND_WIRE_ORDER
