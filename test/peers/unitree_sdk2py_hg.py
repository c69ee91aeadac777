"""unitree_hg types as unitree_sdk2_python declares them, for a peer that runs on the robot's DDS.

Read from unitreerobotics/unitree_sdk2_python (unitree_sdk2py/idl/unitree_hg/msg/dds_/*.py): the same
DDS type names, fields, order and annotations, `types.uint8` where Unitree's C++ IDL says `octet`,
and no field defaults (unitree_sdk2py builds zeroed messages in idl/default.py; zeroed_* below do the
same). Under the cyclonedds 0.10.x that unitree_sdk2py pins, uint8 is announced as octet, so these
are the robot side's types. Written for the peer's interpreter only (cyclonedds 0.10.x); psi0_ros's
own types are psi0_ros/robot/unitree_idl.py and are not used here.
"""

# No `from __future__ import annotations`: cyclonedds reads these annotations at run time.
from dataclasses import dataclass

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types

SLOTS = 35  # motor slots of LowCmd_ / LowState_


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: types.uint8
    q: types.float32
    dq: types.float32
    tau: types.float32
    kp: types.float32
    kd: types.float32
    reserve: types.uint32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    mode: types.uint8
    q: types.float32
    dq: types.float32
    ddq: types.float32
    tau_est: types.float32
    temperature: types.array[types.int16, 2]
    vol: types.float32
    sensor: types.array[types.uint32, 2]
    motorstate: types.uint32
    reserve: types.array[types.uint32, 4]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class IMUState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    quaternion: types.array[types.float32, 4]
    gyroscope: types.array[types.float32, 3]
    accelerometer: types.array[types.float32, 3]
    rpy: types.array[types.float32, 3]
    temperature: types.int16


@dataclass
@annotate.final
@annotate.autoid("sequential")
class PressSensorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.PressSensorState_"):
    pressure: types.array[types.float32, 12]
    temperature: types.array[types.float32, 12]
    lost: types.uint32
    reserve: types.uint32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowCmd_"):
    mode_pr: types.uint8
    mode_machine: types.uint8
    motor_cmd: types.array[MotorCmd_, SLOTS]
    reserve: types.array[types.uint32, 4]
    crc: types.uint32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: types.array[types.uint32, 2]
    mode_pr: types.uint8
    mode_machine: types.uint8
    tick: types.uint32
    imu_state: IMUState_
    motor_state: types.array[MotorState_, SLOTS]
    wireless_remote: types.array[types.uint8, 40]
    reserve: types.array[types.uint32, 4]
    crc: types.uint32


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HandCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.HandCmd_"):
    motor_cmd: types.sequence[MotorCmd_]
    reserve: types.array[types.uint32, 4]


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HandState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.HandState_"):
    motor_state: types.sequence[MotorState_]
    press_sensor_state: types.sequence[PressSensorState_]
    imu_state: IMUState_
    power_v: types.float32
    power_a: types.float32
    system_v: types.float32
    device_v: types.float32
    error: types.array[types.uint32, 2]
    reserve: types.array[types.uint32, 2]


def zeroed_motor_state() -> MotorState_:
    return MotorState_(0, 0.0, 0.0, 0.0, 0.0, [0, 0], 0.0, [0, 0], 0, [0, 0, 0, 0])


def zeroed_imu_state() -> IMUState_:
    return IMUState_([0.0] * 4, [0.0] * 3, [0.0] * 3, [0.0] * 3, 0)


def zeroed_low_state() -> LowState_:
    motors = [zeroed_motor_state() for _ in range(SLOTS)]
    return LowState_([0, 0], 0, 0, 0, zeroed_imu_state(), motors, [0] * 40, [0] * 4, 0)


def zeroed_hand_state(motors: int = 7) -> HandState_:
    return HandState_(
        [zeroed_motor_state() for _ in range(motors)], [], zeroed_imu_state(), 0.0, 0.0, 0.0, 0.0, [0, 0], [0, 0]
    )
