"""Unitree's CRC32 for unitree_hg LowCmd_ / LowState_ (the G1 ignores a LowCmd_ whose crc is wrong).

The message is packed as the C struct the robot sees (little-endian, 4-byte aligned), read as
32-bit little-endian words without the final crc word, and each word is fed most significant bit
first into CRC-32 with polynomial 0x04C11DB7, initial value 0xFFFFFFFF and no final xor: that is
CRC-32/MPEG-2 over the words written big-endian. CRC-32/MPEG-2 is the bit-mirror of zlib's CRC-32
(same polynomial, reflected), so crc32_mpeg2() runs zlib on bit-reversed bytes: microseconds per
message instead of a Python loop, which matters at 500 Hz. Struct layouts follow unitree_sdk2py's
IDL (unitree_hg::msg::dds_); the functions work on any object with those field names
(psi0_ros.robot.unitree_idl's types or unitree_sdk2py's).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

NUM_MOTOR_SLOTS = 35
# LowCmd_: mode_pr, mode_machine (+2 pad) | 35 x MotorCmd_ (mode +3 pad, q dq tau kp kd, reserve) |
# reserve[4], crc. 1004 bytes.
LOW_CMD_FORMAT = "<2B2x" + "B3x5fI" * NUM_MOTOR_SLOTS + "5I"
# LowState_: version[2], mode_pr, mode_machine (+2 pad), tick | IMUState_ (quaternion[4], gyroscope[3],
# accelerometer[3], rpy[3], temperature int16 +2 pad) | 35 x MotorState_ (mode +3 pad, q dq ddq tau_est,
# temperature int16[2], vol, sensor[2], motorstate, reserve[4]) | wireless_remote[40], reserve[4], crc.
# 2092 bytes.
LOW_STATE_FORMAT = "<2I2B2xI" + "13fh2x" + "B3x4f2hf7I" * NUM_MOTOR_SLOTS + "40B5I"
_LOW_CMD = struct.Struct(LOW_CMD_FORMAT)
_LOW_STATE = struct.Struct(LOW_STATE_FORMAT)
_REVERSED_BITS = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of a byte string (check value: b"123456789" -> 0x0376E6E7)."""
    mirrored = zlib.crc32(bytes(data).translate(_REVERSED_BITS)) ^ 0xFFFFFFFF
    return int(f"{mirrored:032b}"[::-1], 2)


def crc32_words(words: Sequence[int]) -> int:
    """Unitree's crc32_core over 32-bit words (each word most significant bit first)."""
    return crc32_mpeg2(struct.pack(f">{len(words)}I", *words))


def crc_of_packed(packed: bytes) -> int:
    """CRC of a packed little-endian struct whose last 4 bytes are its crc field."""
    return crc32_mpeg2(np.frombuffer(packed, dtype="<u4")[:-1].astype(">u4").tobytes())


def low_cmd_values(cmd: Any) -> list[Any]:
    """The fields of a LowCmd_ in declaration order, flattened (what the C struct and CDR hold)."""
    values: list[Any] = [cmd.mode_pr, cmd.mode_machine]
    for motor in cmd.motor_cmd:
        values += [motor.mode, motor.q, motor.dq, motor.tau, motor.kp, motor.kd, motor.reserve]
    values += list(cmd.reserve)
    values.append(cmd.crc)
    return values


def low_state_values(state: Any) -> list[Any]:
    """The fields of a LowState_ in declaration order, flattened."""
    imu = state.imu_state
    values: list[Any] = list(state.version) + [state.mode_pr, state.mode_machine, state.tick]
    values += list(imu.quaternion) + list(imu.gyroscope) + list(imu.accelerometer) + list(imu.rpy)
    values.append(imu.temperature)
    for motor in state.motor_state:
        values += [motor.mode, motor.q, motor.dq, motor.ddq, motor.tau_est, *motor.temperature, motor.vol]
        values += [*motor.sensor, motor.motorstate, *motor.reserve]
    values += list(state.wireless_remote) + list(state.reserve)
    values.append(state.crc)
    return values


def pack_low_cmd(cmd: Any) -> bytes:
    return _LOW_CMD.pack(*low_cmd_values(cmd))


def pack_low_state(state: Any) -> bytes:
    return _LOW_STATE.pack(*low_state_values(state))


def low_cmd_crc(cmd: Any) -> int:
    """The crc field a LowCmd_ must carry."""
    return crc_of_packed(pack_low_cmd(cmd))


def low_state_crc(state: Any) -> int:
    """The crc field a LowState_ carries when intact."""
    return crc_of_packed(pack_low_state(state))


assert _LOW_CMD.size == 1004 and _LOW_STATE.size == 2092
