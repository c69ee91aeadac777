"""unitree_hg IDL types for the `cyclonedds` Python package (DDS names unitree_hg::msg::dds_::*).

Field lists, order and annotations follow unitree_sdk2py's unitree_hg IDL, so these types match
the G1's own on the wire: a DataReader/DataWriter built with them talks to the robot (or to
unitree_sdk2py) directly. Used by the unitree backend when unitree_sdk2py is not installed
(dds="cyclonedds") and by the loopback tests. The default_* helpers build zeroed messages.
"""

# No `from __future__ import annotations` here: cyclonedds reads these annotations at run time
# and cannot resolve them from strings.
from dataclasses import dataclass, field

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types

from psi0_ros.robot.crc import NUM_MOTOR_SLOTS


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: types.uint8 = 0  # body: 1 = enable, 0 = off; Dex3: id | status << 4 | timeout << 7
    q: types.float32 = 0.0  # rad
    dq: types.float32 = 0.0  # rad/s
    tau: types.float32 = 0.0  # N·m feed-forward
    kp: types.float32 = 0.0
    kd: types.float32 = 0.0
    reserve: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorState_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    ddq: types.float32 = 0.0
    tau_est: types.float32 = 0.0
    temperature: types.array[types.int16, 2] = field(default_factory=lambda: [0, 0])
    vol: types.float32 = 0.0
    sensor: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    motorstate: types.uint32 = 0
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class IMUState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.IMUState_"):
    quaternion: types.array[types.float32, 4] = field(default_factory=lambda: [1.0, 0.0, 0.0, 0.0])  # w x y z
    gyroscope: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)  # rad/s
    accelerometer: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)  # m/s^2
    rpy: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)  # rad
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
    mode_pr: types.uint8 = 0  # 0 = PR (ankle/waist pitch-roll joints), 1 = AB (raw actuators)
    mode_machine: types.uint8 = 0  # must echo LowState_.mode_machine
    motor_cmd: types.array[MotorCmd_, NUM_MOTOR_SLOTS] = field(
        default_factory=lambda: [MotorCmd_() for _ in range(NUM_MOTOR_SLOTS)]
    )
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)
    crc: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    mode_pr: types.uint8 = 0
    mode_machine: types.uint8 = 0
    tick: types.uint32 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: types.array[MotorState_, NUM_MOTOR_SLOTS] = field(
        default_factory=lambda: [MotorState_() for _ in range(NUM_MOTOR_SLOTS)]
    )
    wireless_remote: types.array[types.uint8, 40] = field(default_factory=lambda: [0] * 40)
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)
    crc: types.uint32 = 0


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HandCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.HandCmd_"):
    motor_cmd: types.sequence[MotorCmd_] = field(default_factory=list)
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)


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


def default_low_cmd() -> LowCmd_:
    return LowCmd_()


def default_hand_cmd(motors: int = 7) -> HandCmd_:
    return HandCmd_(motor_cmd=[MotorCmd_() for _ in range(motors)])


def default_hand_state(motors: int = 7) -> HandState_:
    return HandState_(motor_state=[MotorState_() for _ in range(motors)])
