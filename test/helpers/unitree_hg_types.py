"""The unitree_hg types as Unitree's C++ IDL declares them, written here for the peer side of tests.

Declared from unitree_sdk2's IDL (include/unitree/idl/hg/*.hpp, generated from unitree_hg's .idl):
`mode`, `mode_pr`, `mode_machine` and `wireless_remote` are `octet`, everything else as there.
Deliberately independent of psi0_ros.robot.unitree_idl (plain cyclonedds generic encoding, no fast
paths), so a fake robot built on these types is a Unitree-typed peer: with type discovery on, it
matches the project's readers and writers only if the project's type information is Unitree's.
test_unitree.py checks that the type information of these classes equals the bytes compiled into
Unitree's C++ headers (test/data/unitree_hg_type_info.json).
"""

# No `from __future__ import annotations`: cyclonedds reads these annotations at run time.
from dataclasses import dataclass, field

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types

SLOTS = 35  # LowCmd_/LowState_ motor arrays


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: types.byte = 0  # IDL: octet
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    tau: types.float32 = 0.0
    kp: types.float32 = 0.0
    kd: types.float32 = 0.0
    reserve: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    mode: types.byte = 0  # IDL: octet
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    ddq: types.float32 = 0.0
    tau_est: types.float32 = 0.0
    temperature: types.array[types.int16, 2] = field(default_factory=lambda: [0, 0])
    vol: types.float32 = 0.0
    sensor: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    motorstate: types.uint32 = 0
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass
@annotate.final
@annotate.autoid("sequential")
class IMUState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    quaternion: types.array[types.float32, 4] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0])
    gyroscope: types.array[types.float32, 3] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    accelerometer: types.array[types.float32, 3] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    rpy: types.array[types.float32, 3] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    temperature: types.int16 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class PressSensorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.PressSensorState_"):
    pressure: types.array[types.float32, 12] = field(default_factory=lambda: [0.0] * 12)
    temperature: types.array[types.float32, 12] = field(default_factory=lambda: [0.0] * 12)
    lost: types.uint32 = 0
    reserve: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowCmd_"):
    mode_pr: types.byte = 0  # IDL: octet
    mode_machine: types.byte = 0  # IDL: octet
    motor_cmd: types.array[MotorCmd_, SLOTS] = field(default_factory=lambda: [MotorCmd_() for _ in range(SLOTS)])
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])
    crc: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    mode_pr: types.byte = 0  # IDL: octet
    mode_machine: types.byte = 0  # IDL: octet
    tick: types.uint32 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: types.array[MotorState_, SLOTS] = field(default_factory=lambda: [MotorState_() for _ in range(SLOTS)])
    wireless_remote: types.array[types.byte, 40] = field(default_factory=lambda: [0] * 40)  # IDL: octet[40]
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])
    crc: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HandCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.HandCmd_"):
    motor_cmd: types.sequence[MotorCmd_] = field(default_factory=list)
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HandState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.HandState_"):
    motor_state: types.sequence[MotorState_] = field(default_factory=list)
    press_sensor_state: types.sequence[PressSensorState_] = field(default_factory=list)
    imu_state: IMUState_ = field(default_factory=IMUState_)
    power_v: types.float32 = 0.0
    power_a: types.float32 = 0.0
    system_v: types.float32 = 0.0
    device_v: types.float32 = 0.0
    error: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    reserve: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
