"""JointCommand / RobotState <-> unitree_hg messages (LowCmd_, LowState_, HandCmd_, HandState_).

Pure field mapping, no DDS: works on psi0_ros.robot.unitree_idl's types and on unitree_sdk2py's
(same field names). Body joints 0-28 are LowCmd_ motor slots 0-28 (psi0_ros.g1 order); slots
29-34 stay disabled. Each Dex3-1 hand gets its own HandCmd_ in Dex3 motor order (g1.DEX3_WIRE_ORDER,
the same for both hands; a per-hand override is passed as `slots`, see hand_slots). A disabled
command takes Unitree's Dex3 stop path (unitree_sdk2 example/g1/dex3/g1_dex3_example.cpp,
stopMotors): status 0x01, timeout 1, and q = dq = tau = kp = kd = 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from psi0_ros import g1
from psi0_ros.control.command import JointCommand
from psi0_ros.robot.crc import NUM_MOTOR_SLOTS, low_cmd_crc

MOTOR_ENABLE = 1  # LowCmd_ MotorCmd_.mode: 1 = enabled (servo), 0 = off
MODE_PR = 0  # LowCmd_.mode_pr: ankles and waist commanded as pitch/roll joints (the URDF joints)
HAND_SIDES = ("left", "right")
DEX3_STATUS_RUN = 0x01  # Unitree's examples send status 0x01 both when running and when stopping
HAND_WIRE_ORDER = {"left": g1.LEFT_HAND_WIRE_ORDER, "right": g1.RIGHT_HAND_WIRE_ORDER}


def hand_slots(side: str, fingers: tuple[str, ...] = g1.DEX3_WIRE_ORDER) -> np.ndarray:
    """Slot in ALL_JOINTS of each of one hand's motors 0-6 (`fingers`: that hand's wire order)."""
    return np.array([g1.JOINT_INDEX[name] for name in g1.dex3_wire_order(side, fingers)])


# Slot in ALL_JOINTS of each hand motor, in the default wire order.
HAND_SLOTS = {side: hand_slots(side) for side in HAND_SIDES}


def dex3_mode(motor_id: int, status: int = 0x01, timeout: bool = False) -> int:
    """Dex3-1 MotorCmd_.mode byte: motor id (bits 0-3) | status (bits 4-6) | timeout flag (bit 7)."""
    return (motor_id & 0x0F) | ((status & 0x07) << 4) | ((1 if timeout else 0) << 7)


def fill_low_cmd(msg: Any, command: JointCommand, mode_machine: int) -> Any:
    """Write the 29 body joints of `command` into a LowCmd_ (in place), with mode_machine and crc."""
    msg.mode_pr = MODE_PR
    msg.mode_machine = int(mode_machine)
    enabled = MOTOR_ENABLE if command.enabled else 0
    for slot in range(NUM_MOTOR_SLOTS):
        motor = msg.motor_cmd[slot]
        if slot < g1.NUM_BODY_MOTORS:
            motor.mode = enabled
            motor.q = float(command.q[slot])
            motor.dq = float(command.dq[slot])
            motor.tau = float(command.tau[slot])
            motor.kp = float(command.kp[slot])
            motor.kd = float(command.kd[slot])
        else:
            motor.mode, motor.q, motor.dq, motor.tau, motor.kp, motor.kd = 0, 0.0, 0.0, 0.0, 0.0, 0.0
    msg.crc = low_cmd_crc(msg)
    return msg


def fill_hand_cmd(msg: Any, command: JointCommand, side: str, slots: np.ndarray | None = None) -> Any:
    """Write one hand's 7 joints of `command` into a HandCmd_ (7 MotorCmd_) in wire order (`slots`,
    default HAND_SLOTS[side]). A disabled command is Unitree's stop: timeout bit set, all zero."""
    for motor_id, slot in enumerate(HAND_SLOTS[side] if slots is None else slots):
        motor = msg.motor_cmd[motor_id]
        if not command.enabled:
            motor.mode = dex3_mode(motor_id, status=DEX3_STATUS_RUN, timeout=True)
            motor.q, motor.dq, motor.tau, motor.kp, motor.kd = 0.0, 0.0, 0.0, 0.0, 0.0
            continue
        motor.mode = dex3_mode(motor_id)
        motor.q = float(command.q[slot])
        motor.dq = float(command.dq[slot])
        motor.tau = float(command.tau[slot])
        motor.kp = float(command.kp[slot])
        motor.kd = float(command.kd[slot])
    return msg


def body_state(low_state: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, dq, tau_est) of the 29 body motors from a LowState_."""
    motors = low_state.motor_state[: g1.NUM_BODY_MOTORS]
    return (
        np.array([m.q for m in motors], dtype=np.float64),
        np.array([m.dq for m in motors], dtype=np.float64),
        np.array([m.tau_est for m in motors], dtype=np.float64),
    )


def hand_state(
    msg: Any, side: str, slots: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(slots in ALL_JOINTS, q, dq, tau_est) of one hand from its HandState_ (wire order undone)."""
    motors = list(msg.motor_state)[:7]
    if len(motors) != 7:
        raise ValueError(f"{side} HandState_ has {len(motors)} motors, expected 7")
    return (
        HAND_SLOTS[side] if slots is None else slots,
        np.array([m.q for m in motors], dtype=np.float64),
        np.array([m.dq for m in motors], dtype=np.float64),
        np.array([m.tau_est for m in motors], dtype=np.float64),
    )


def imu_state(low_state: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pelvis IMU (quaternion wxyz, gyroscope rad/s, accelerometer m/s^2) from a LowState_."""
    imu = low_state.imu_state
    return (
        np.array(imu.quaternion, dtype=np.float64),
        np.array(imu.gyroscope, dtype=np.float64),
        np.array(imu.accelerometer, dtype=np.float64),
    )
