"""unitree_hg IDL types for the `cyclonedds` Python package (DDS names unitree_hg::msg::dds_::*).

Field lists, order, types and annotations follow Unitree's C++ IDL (unitree_sdk2
include/unitree/idl/hg/*.hpp): `mode`, `mode_pr`, `mode_machine` and `wireless_remote` are `octet`.
With type discovery a peer matches only on equal type information; these types announce the bytes
compiled into Unitree's headers under cyclonedds 11 and under the robot's cyclonedds 0.10.x alike
(test/test_unitree.py, test/test_unitree_peer.py), so a DataReader/DataWriter built with them talks
to the robot directly and never sends it a type it cannot resolve. They are the unitree backend's
default path (dds="cyclonedds") and the loopback tests' types. The default_* helpers build zeroed messages.

cyclonedds's generic encoder walks nested structs field by field (about 1 ms per LowCmd_ or
LowState_ here); at 500 Hz that is most of a core. LowCmd_, HandCmd_, LowState_ and HandState_ therefore
encode/decode plain XCDR1 little-endian (what a DataWriter uses for these final types) with one
precompiled struct each, falling back to the generic code for anything else. The fast and
generic encodings are checked byte for byte in test/test_unitree.py.
"""

# No `from __future__ import annotations` here: cyclonedds reads these annotations at run time
# and cannot resolve them from strings.
import struct
from dataclasses import dataclass, field

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types
from cyclonedds.idl import Endianness

from psi0_ros.robot.crc import NUM_MOTOR_SLOTS, low_cmd_values, low_state_values

# IDL `octet`. cyclonedds 11 spells it types.byte (its types.uint8 is announced as TK_UINT8, which a
# 0.10.x peer cannot resolve); cyclonedds 0.10.x has no types.byte and announces its types.uint8 as
# TK_BYTE, i.e. octet. Either way the type information equals Unitree's (test/test_unitree_peer.py).
octet = types.byte if hasattr(types, "byte") else types.uint8

_XCDR1_LE = b"\x00\x01\x00\x00"  # encapsulation header: plain CDR, little-endian
# XCDR1 bodies (offsets from the end of the header). Unlike the C struct, CDR does not align a
# nested struct as a whole, only each primitive: the first motor's mode byte follows directly.
_LOW_CMD_CDR = struct.Struct("<2B" + "Bx5fI" + "B3x5fI" * (NUM_MOTOR_SLOTS - 1) + "5I")
_LOW_STATE_CDR = struct.Struct("<2I2B2xI13fh" + "Bx4f2hf7I" + "B3x4f2hf7I" * (NUM_MOTOR_SLOTS - 1) + "40B5I")
_HAND_MOTOR_CDR = struct.Struct("<B3x5fI")
_U32 = struct.Struct("<I")
_MOTOR_STATE_CDR = struct.Struct("<B3x4f2hf7I")  # at a 4-aligned offset
_PRESS_CDR = struct.Struct("<24f2I")
_HAND_TAIL_CDR = struct.Struct("<13fh2x4f4I")  # IMUState_ (4-aligned start), power/system/device, error, reserve


def _fast(buffer: object, endianness: object, use_version_2: object) -> bool:
    return buffer is None and endianness in (None, Endianness.Little) and not use_version_2


@dataclass
@annotate.final
@annotate.autoid("sequential")
class MotorCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.MotorCmd_"):
    mode: octet = 0  # body: 1 = enable, 0 = off; Dex3: id | status << 4 | timeout << 7
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
    mode: octet = 0
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
    mode_pr: octet = 0  # 0 = PR (ankle/waist pitch-roll joints), 1 = AB (raw actuators)
    mode_machine: octet = 0  # must echo LowState_.mode_machine
    motor_cmd: types.array[MotorCmd_, NUM_MOTOR_SLOTS] = field(
        default_factory=lambda: [MotorCmd_() for _ in range(NUM_MOTOR_SLOTS)]
    )
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)
    crc: types.uint32 = 0

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        if _fast(buffer, endianness, use_version_2):
            return _XCDR1_LE + _LOW_CMD_CDR.pack(*low_cmd_values(self))
        return super().serialize(buffer, endianness, use_version_2)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class LowState_(idl.IdlStruct, typename="unitree_hg.msg.dds_.LowState_"):
    version: types.array[types.uint32, 2] = field(default_factory=lambda: [0, 0])
    mode_pr: octet = 0
    mode_machine: octet = 0
    tick: types.uint32 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: types.array[MotorState_, NUM_MOTOR_SLOTS] = field(
        default_factory=lambda: [MotorState_() for _ in range(NUM_MOTOR_SLOTS)]
    )
    wireless_remote: types.array[octet, 40] = field(default_factory=lambda: [0] * 40)
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)
    crc: types.uint32 = 0

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        if _fast(buffer, endianness, use_version_2):
            return _XCDR1_LE + _LOW_STATE_CDR.pack(*low_state_values(self))
        return super().serialize(buffer, endianness, use_version_2)

    @classmethod
    def deserialize(cls, data, has_header=True, use_version_2=None):
        if has_header and not use_version_2 and bytes(data[:4]) == _XCDR1_LE and len(data) >= 4 + _LOW_STATE_CDR.size:
            return low_state_from_values(_LOW_STATE_CDR.unpack_from(data, 4))
        return super().deserialize(data, has_header=has_header, use_version_2=use_version_2)


@dataclass
@annotate.final
@annotate.autoid("sequential")
class HandCmd_(idl.IdlStruct, typename="unitree_hg.msg.dds_.HandCmd_"):
    motor_cmd: types.sequence[MotorCmd_] = field(default_factory=list)
    reserve: types.array[types.uint32, 4] = field(default_factory=lambda: [0] * 4)

    def serialize(self, buffer=None, endianness=None, use_version_2=None) -> bytes:
        if _fast(buffer, endianness, use_version_2):
            parts = [_XCDR1_LE, struct.pack("<I", len(self.motor_cmd))]  # sequence length, then the motors
            for m in self.motor_cmd:  # each motor starts 4-aligned: mode, 3 pad, 5 floats, reserve
                parts.append(_HAND_MOTOR_CDR.pack(m.mode, m.q, m.dq, m.tau, m.kp, m.kd, m.reserve))
            parts.append(struct.pack("<4I", *self.reserve))
            return b"".join(parts)
        return super().serialize(buffer, endianness, use_version_2)


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

    @classmethod
    def deserialize(cls, data, has_header=True, use_version_2=None):
        if has_header and not use_version_2 and bytes(data[:4]) == _XCDR1_LE:
            try:
                return _hand_state_from_cdr(memoryview(data)[4:])
            except struct.error:
                pass  # malformed: let the generic decoder report it
        return super().deserialize(data, has_header=has_header, use_version_2=use_version_2)


def default_low_cmd() -> LowCmd_:
    return LowCmd_()


def default_hand_cmd(motors: int = 7) -> HandCmd_:
    return HandCmd_(motor_cmd=[MotorCmd_() for _ in range(motors)])


def default_hand_state(motors: int = 7) -> HandState_:
    return HandState_(motor_state=[MotorState_() for _ in range(motors)])


def low_state_from_values(values: tuple) -> LowState_:
    """A LowState_ from its flattened fields (crc.low_state_values order)."""
    # 0-1 version, 2 mode_pr, 3 mode_machine, 4 tick, 5-18 IMU, then 15 values per motor.
    imu = IMUState_(list(values[5:9]), list(values[9:12]), list(values[12:15]), list(values[15:18]), values[18])
    motors = []
    at = 19
    for _ in range(NUM_MOTOR_SLOTS):
        v = values[at : at + 15]
        motors.append(MotorState_(v[0], v[1], v[2], v[3], v[4], [v[5], v[6]], v[7], [v[8], v[9]], v[10], list(v[11:])))
        at += 15
    return LowState_(
        version=[values[0], values[1]],
        mode_pr=values[2],
        mode_machine=values[3],
        tick=values[4],
        imu_state=imu,
        motor_state=motors,
        wireless_remote=bytes(values[at : at + 40]),  # as cyclonedds decodes uint8 arrays
        reserve=list(values[at + 40 : at + 44]),
        crc=values[at + 44],
    )


def _motor_state(v: tuple) -> MotorState_:
    return MotorState_(v[0], v[1], v[2], v[3], v[4], [v[5], v[6]], v[7], [v[8], v[9]], v[10], list(v[11:15]))


def _hand_state_from_cdr(body: memoryview) -> HandState_:
    """HandState_ from an XCDR1 little-endian body: every element here starts 4-aligned."""
    (count,) = _U32.unpack_from(body, 0)
    at = 4
    motors = []
    for _ in range(count):
        motors.append(_motor_state(_MOTOR_STATE_CDR.unpack_from(body, at)))
        at += _MOTOR_STATE_CDR.size
    (count,) = _U32.unpack_from(body, at)
    at += 4
    press = []
    for _ in range(count):
        v = _PRESS_CDR.unpack_from(body, at)
        press.append(PressSensorState_(list(v[0:12]), list(v[12:24]), v[24], v[25]))
        at += _PRESS_CDR.size
    v = _HAND_TAIL_CDR.unpack_from(body, at)
    imu = IMUState_(list(v[0:4]), list(v[4:7]), list(v[7:10]), list(v[10:13]), v[13])
    return HandState_(motors, press, imu, v[14], v[15], v[16], v[17], [v[18], v[19]], [v[20], v[21]])
